"""Images in the metadata database (containerd's ``images.Store``).

An image is a name pointing at a target descriptor (usually an index or manifest) plus labels.
Non-expired images are garbage collection roots; with a lease in the context, an image carrying
``containerd.io/gc.expire`` is also added to that lease.
"""

from __future__ import annotations

import builtins
import datetime
from collections.abc import Mapping, Sequence

import attrs

from pycontainerd.core import errdefs, filters, namespaces
from pycontainerd.core import leases as leases_
from pycontainerd.core.content import digests
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.metadata import events
from pycontainerd.core.metadata.db import (
    DB,
    Tx,
    labels_from_db,
    labels_to_db,
    now,
    ts_from_db,
    ts_to_db,
)
from pycontainerd.core.metadata.leases import add_to_lease, remove_from_lease
from pycontainerd.core.metadata.validation import validate_labels


def _labels(value: Mapping[str, str] | None) -> dict[str, str]:
    return dict(value or {})


@attrs.frozen(kw_only=True)
class Image:
    name: str
    labels: dict[str, str] = attrs.field(factory=dict, converter=_labels)
    target: Descriptor
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None


def validate_image(image: Image) -> None:
    if not image.name:
        raise errdefs.InvalidArgument("image name must not be empty")
    validate_labels(image.labels, "image.labels")
    t = image.target
    try:
        digests.validate(t.digest)
    except errdefs.ContainerdError as exc:
        raise errdefs.InvalidArgument(f"target.digest {t.digest!r} invalid: {exc}") from None
    if t.size <= 0:
        raise errdefs.InvalidArgument("target.size must be greater than zero")
    if not t.media_type:
        raise errdefs.InvalidArgument("target.media_type must be set")


def _read(r: object) -> Image:
    return Image(
        name=r["name"],  # type: ignore[index]
        labels=labels_from_db(r["labels"]),  # type: ignore[index]
        target=Descriptor(
            media_type=r["media_type"],  # type: ignore[index]
            digest=r["digest"],  # type: ignore[index]
            size=r["size"],  # type: ignore[index]
            annotations=labels_from_db(r["annotations"]),  # type: ignore[index]
        ),
        created_at=ts_from_db(r["created_at"]),  # type: ignore[index]
        updated_at=ts_from_db(r["updated_at"]),  # type: ignore[index]
    )


def _write(tx: Tx, namespace: str, image: Image) -> None:
    tx.execute(
        "INSERT OR REPLACE INTO images(namespace, name, media_type, digest, size, annotations, "
        "labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            namespace,
            image.name,
            image.target.media_type,
            image.target.digest,
            image.target.size,
            labels_to_db(image.target.annotations),
            labels_to_db(image.labels),
            ts_to_db(image.created_at or now()),
            ts_to_db(image.updated_at or now()),
        ),
    )


def _add_image_lease(tx: Tx, namespace: str, lease: str | None, image: Image) -> None:
    if lease and leases_.LABEL_GC_EXPIRE in image.labels:
        add_to_lease(tx, namespace, lease, leases_.RESOURCE_IMAGES, image.name)


def adapt_image(image: Image) -> filters.FieldFn:
    def field(fieldpath: list[str]) -> tuple[str, bool]:
        if not fieldpath:
            return "", False
        head = fieldpath[0]
        if head == "name":
            return image.name, bool(image.name)
        if head == "target":
            if len(fieldpath) < 2:
                return "", False
            if fieldpath[1] == "digest":
                return image.target.digest, bool(image.target.digest)
            if fieldpath[1] == "mediatype":
                return image.target.media_type, bool(image.target.media_type)
            return "", False
        if head == "labels":
            return filters.adapt_labels(fieldpath[1:], image.labels)
        if head == "annotations":
            return filters.adapt_labels(fieldpath[1:], image.target.annotations)
        return "", False

    return field


def _set_key(m: dict[str, str], key: str, source: Mapping[str, str]) -> None:
    value = source.get(key, "")
    if value:
        m[key] = value
    else:
        m.pop(key, None)


@attrs.define(eq=False)
class ImageStore:
    _db: DB

    async def get(self, name: str) -> Image:
        namespace = namespaces.required()

        def fn(tx: Tx) -> Image:
            row = tx.one("SELECT * FROM images WHERE namespace = ? AND name = ?", (namespace, name))
            if row is None:
                raise errdefs.NotFound(f"image {name!r}: not found")
            return _read(row)

        return await self._db.view(fn)

    async def list(self, filters_: Sequence[str] = ()) -> builtins.list[Image]:
        namespace = namespaces.required()
        flt = filters.parse_all(list(filters_))
        rows = await self._db.view(
            lambda tx: tx.all(
                "SELECT * FROM images WHERE namespace = ? ORDER BY name", (namespace,)
            )
        )
        return [i for i in map(_read, rows) if flt.match(adapt_image(i))]

    async def create(self, image: Image) -> Image:
        namespace = namespaces.required()
        lease = leases_.get()
        validate_image(image)
        t = now()
        created = attrs.evolve(image, created_at=t, updated_at=t)

        def fn(tx: Tx) -> None:
            tx.ensure_namespace(namespace)
            _add_image_lease(tx, namespace, lease, created)
            if tx.one(
                "SELECT 1 FROM images WHERE namespace = ? AND name = ?", (namespace, image.name)
            ):
                raise errdefs.AlreadyExists(f"image {image.name!r}: already exists")
            _write(tx, namespace, created)

        await self._db.update(fn)
        await self._db.publish(
            namespace,
            events.TOPIC_IMAGE_CREATE,
            events.ImageCreate(name=created.name, labels=dict(created.labels)),
        )
        return created

    async def update(self, image: Image, fieldpaths: Sequence[str] = ()) -> Image:
        """Update ``labels``, ``labels.<k>``, ``target``, ``annotations``, ``annotations.<k>``;
        replace everything but the name and creation time when ``fieldpaths`` is empty."""
        if not image.name:
            raise errdefs.InvalidArgument("image name is required for update")
        namespace = namespaces.required()
        lease = leases_.get()

        def fn(tx: Tx) -> Image:
            row = tx.one(
                "SELECT * FROM images WHERE namespace = ? AND name = ?", (namespace, image.name)
            )
            if row is None:
                raise errdefs.NotFound(f"image {image.name!r}: not found")
            current = _read(row)
            if fieldpaths:
                labels = dict(current.labels)
                target = current.target
                annotations = dict(target.annotations)
                for path in fieldpaths:
                    if path.startswith("labels."):
                        _set_key(labels, path[len("labels.") :], image.labels)
                    elif path.startswith("annotations."):
                        _set_key(annotations, path[len("annotations.") :], image.target.annotations)
                    elif path == "labels":
                        labels = dict(image.labels)
                    elif path == "target":
                        target = image.target
                        annotations = dict(target.annotations)
                    elif path == "annotations":
                        annotations = dict(image.target.annotations)
                    else:
                        raise errdefs.InvalidArgument(
                            f"cannot update {path!r} field on image {image.name!r}"
                        )
                updated = attrs.evolve(
                    current,
                    labels=labels,
                    target=attrs.evolve(target, annotations=annotations),
                )
            else:
                updated = attrs.evolve(image, created_at=current.created_at)
            updated = attrs.evolve(updated, updated_at=now())
            validate_image(updated)
            _add_image_lease(tx, namespace, lease, updated)
            _write(tx, namespace, updated)
            return updated

        updated = await self._db.update(fn)
        await self._db.publish(
            namespace,
            events.TOPIC_IMAGE_UPDATE,
            events.ImageUpdate(name=updated.name, labels=dict(updated.labels)),
        )
        return updated

    async def delete(self, name: str, *, target: str = "") -> None:
        """Delete an image; with ``target`` (a digest) only if the image still points there
        (NotFound otherwise). Synchronous garbage collection (``sync``) is the caller's: the
        images service schedules it."""
        namespace = namespaces.required()
        lease = leases_.get()

        def fn(tx: Tx) -> None:
            row = tx.one(
                "SELECT digest FROM images WHERE namespace = ? AND name = ?", (namespace, name)
            )
            if row is None:
                raise errdefs.NotFound(f"image {name!r}: not found")
            remove_from_lease(tx, namespace, lease, leases_.RESOURCE_IMAGES, name)
            if target and row["digest"] != target:
                raise errdefs.NotFound(f"image {name!r} has target {row['digest']}, not {target}")
            tx.execute("DELETE FROM images WHERE namespace = ? AND name = ?", (namespace, name))
            tx.mark_dirty()

        await self._db.update(fn)
        await self._db.publish(namespace, events.TOPIC_IMAGE_DELETE, events.ImageDelete(name=name))
