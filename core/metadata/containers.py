"""Containers in the metadata database (containerd's ``containers.Store``)."""

from __future__ import annotations

import builtins
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs, filters, namespaces
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
from pycontainerd.core.metadata.validation import validate_identifier, validate_labels

#: A protobuf ``Any`` as stored: (type_url, serialized value).
TypedValue = tuple[str, bytes]


def _typed(value: Any) -> TypedValue | None:
    if value is None:
        return None
    return (str(value[0]), bytes(value[1]))


def _extensions(value: Mapping[str, TypedValue] | None) -> dict[str, TypedValue]:
    return {k: _typed(v) for k, v in (value or {}).items()}  # type: ignore[misc]


def _labels(value: Mapping[str, str] | None) -> dict[str, str]:
    return dict(value or {})


@attrs.frozen(kw_only=True)
class Runtime:
    name: str = ""
    options: TypedValue | None = attrs.field(default=None, converter=_typed)


@attrs.frozen(kw_only=True)
class Container:
    id: str
    labels: dict[str, str] = attrs.field(factory=dict, converter=_labels)
    image: str = ""
    runtime: Runtime = attrs.field(factory=Runtime)
    spec: TypedValue | None = attrs.field(default=None, converter=_typed)
    snapshotter: str = ""
    snapshot_key: str = ""
    extensions: dict[str, TypedValue] = attrs.field(factory=dict, converter=_extensions)
    sandbox: str = ""
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None


def validate_container(c: Container) -> None:
    try:
        validate_identifier(c.id)
    except errdefs.InvalidArgument as exc:
        raise errdefs.InvalidArgument(f"container.id: {exc}") from None
    for k in c.extensions:
        if not k:
            raise errdefs.InvalidArgument("container.extensions keys must not be zero-length")
    validate_labels(c.labels, "container.labels")
    if not c.runtime.name:
        raise errdefs.InvalidArgument("container.runtime.name must be set")
    if c.spec is None:
        raise errdefs.InvalidArgument("container.spec must be set")
    if c.snapshot_key and not c.snapshotter:
        raise errdefs.InvalidArgument(
            "container.snapshotter must be set if container.snapshot_key is set"
        )


# --- rows: shared with sandboxes ----------------------------------------------------------


def read_extensions(tx: Tx, namespace: str, kind: str, owner: str) -> dict[str, TypedValue]:
    rows = tx.all(
        "SELECT name, type_url, value FROM extensions "
        "WHERE namespace = ? AND owner_kind = ? AND owner = ? ORDER BY name",
        (namespace, kind, owner),
    )
    return {r["name"]: (r["type_url"], bytes(r["value"])) for r in rows}


def write_extensions(
    tx: Tx, namespace: str, kind: str, owner: str, extensions: Mapping[str, TypedValue | None]
) -> None:
    tx.execute(
        "DELETE FROM extensions WHERE namespace = ? AND owner_kind = ? AND owner = ?",
        (namespace, kind, owner),
    )
    for name, value in extensions.items():
        if value is None:
            continue
        tx.execute(
            "INSERT INTO extensions(namespace, owner_kind, owner, name, type_url, value) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (namespace, kind, owner, name, value[0], value[1]),
        )


def typed_from_row(type_url: str | None, value: bytes | None) -> TypedValue | None:
    if type_url is None:
        return None
    return (type_url, bytes(value or b""))


def _read(tx: Tx, namespace: str, row: object) -> Container:
    r = row  # sqlite3.Row
    return Container(
        id=r["id"],  # type: ignore[index]
        labels=labels_from_db(r["labels"]),  # type: ignore[index]
        image=r["image"],  # type: ignore[index]
        runtime=Runtime(
            name=r["runtime_name"],  # type: ignore[index]
            options=typed_from_row(r["runtime_options_type"], r["runtime_options"]),  # type: ignore[index]
        ),
        spec=typed_from_row(r["spec_type"], r["spec"]),  # type: ignore[index]
        snapshotter=r["snapshotter"],  # type: ignore[index]
        snapshot_key=r["snapshot_key"],  # type: ignore[index]
        sandbox=r["sandbox"],  # type: ignore[index]
        extensions=read_extensions(tx, namespace, "container", r["id"]),  # type: ignore[index]
        created_at=ts_from_db(r["created_at"]),  # type: ignore[index]
        updated_at=ts_from_db(r["updated_at"]),  # type: ignore[index]
    )


def _write(tx: Tx, namespace: str, c: Container, *, insert: bool) -> None:
    opts = c.runtime.options
    params = (
        labels_to_db(c.labels),
        c.image,
        c.runtime.name,
        opts[0] if opts else None,
        opts[1] if opts else None,
        c.spec[0] if c.spec else None,
        c.spec[1] if c.spec else None,
        c.snapshotter,
        c.snapshot_key,
        c.sandbox,
        ts_to_db(c.created_at or now()),
        ts_to_db(c.updated_at or now()),
        namespace,
        c.id,
    )
    if insert:
        tx.execute(
            "INSERT INTO containers(labels, image, runtime_name, runtime_options_type, "
            "runtime_options, spec_type, spec, snapshotter, snapshot_key, sandbox, created_at, "
            "updated_at, namespace, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params,
        )
    else:
        tx.execute(
            "UPDATE containers SET labels = ?, image = ?, runtime_name = ?, "
            "runtime_options_type = ?, runtime_options = ?, spec_type = ?, spec = ?, "
            "snapshotter = ?, snapshot_key = ?, sandbox = ?, created_at = ?, updated_at = ? "
            "WHERE namespace = ? AND id = ?",
            params,
        )
    write_extensions(tx, namespace, "container", c.id, c.extensions)


def adapt_container(c: Container) -> filters.FieldFn:
    def field(fieldpath: list[str]) -> tuple[str, bool]:
        if not fieldpath:
            return "", False
        head = fieldpath[0]
        if head == "id":
            return c.id, bool(c.id)
        if head == "runtime":
            if len(fieldpath) > 1 and fieldpath[1] == "name":
                return c.runtime.name, bool(c.runtime.name)
            return "", False
        if head == "image":
            return c.image, bool(c.image)
        if head == "labels":
            return filters.adapt_labels(fieldpath[1:], c.labels)
        return "", False

    return field


def _set_key(m: dict[str, object], key: str, source: Mapping[str, object]) -> None:
    """Field-path update of one map entry: copy it, or delete it when absent/empty."""
    value = source.get(key)
    if value:
        m[key] = value
    else:
        m.pop(key, None)


@attrs.define(eq=False)
class ContainerStore:
    _db: DB

    async def get(self, id: str) -> Container:  # noqa: A002
        namespace = namespaces.required()

        def fn(tx: Tx) -> Container:
            row = tx.one("SELECT * FROM containers WHERE namespace = ? AND id = ?", (namespace, id))
            if row is None:
                raise errdefs.NotFound(f"container {id!r} in namespace {namespace!r}: not found")
            return _read(tx, namespace, row)

        return await self._db.view(fn)

    async def list(self, filters_: Sequence[str] = ()) -> builtins.list[Container]:
        namespace = namespaces.required()
        flt = filters.parse_all(list(filters_))

        def fn(tx: Tx) -> builtins.list[Container]:
            rows = tx.all("SELECT * FROM containers WHERE namespace = ? ORDER BY id", (namespace,))
            return [_read(tx, namespace, r) for r in rows]

        return [c for c in await self._db.view(fn) if flt.match(adapt_container(c))]

    async def create(self, container: Container) -> Container:
        namespace = namespaces.required()
        validate_container(container)
        t = now()
        created = attrs.evolve(container, created_at=t, updated_at=t)

        def fn(tx: Tx) -> None:
            tx.ensure_namespace(namespace)
            if tx.one(
                "SELECT 1 FROM containers WHERE namespace = ? AND id = ?", (namespace, container.id)
            ):
                raise errdefs.AlreadyExists(f"container {container.id!r}: already exists")
            _write(tx, namespace, created, insert=True)

        await self._db.update(fn)
        await self._db.publish(
            namespace,
            events.TOPIC_CONTAINER_CREATE,
            events.ContainerCreate(
                id=created.id,
                image=created.image,
                runtime=events.ContainerRuntime(
                    name=created.runtime.name, options=created.runtime.options
                ),
            ),
        )
        return created

    async def update(self, container: Container, fieldpaths: Sequence[str] = ()) -> Container:
        """Update ``labels``, ``labels.<k>``, ``spec``, ``image``, ``snapshotkey``,
        ``extensions``, ``extensions.<k>``; all of them when ``fieldpaths`` is empty (then the
        snapshotter and runtime name must be unchanged: they are immutable)."""
        if not container.id:
            raise errdefs.InvalidArgument("must specify a container id")
        namespace = namespaces.required()

        def fn(tx: Tx) -> Container:
            row = tx.one(
                "SELECT * FROM containers WHERE namespace = ? AND id = ?",
                (namespace, container.id),
            )
            if row is None:
                raise errdefs.NotFound(f"container {container.id!r}: not found")
            current = _read(tx, namespace, row)
            paths = list(fieldpaths)
            if not paths:
                paths = ["labels", "spec", "extensions", "image", "snapshotkey"]
                if current.snapshotter != container.snapshotter:
                    raise errdefs.InvalidArgument("container.snapshotter field is immutable")
                if current.runtime.name != container.runtime.name:
                    raise errdefs.InvalidArgument("container.runtime.name field is immutable")
            labels = dict(current.labels)
            extensions = dict(current.extensions)
            changes: dict[str, Any] = {}
            for path in paths:
                if path.startswith("labels."):
                    _set_key(labels, path[len("labels.") :], container.labels)  # type: ignore[arg-type]
                elif path.startswith("extensions."):
                    _set_key(extensions, path[len("extensions.") :], container.extensions)  # type: ignore[arg-type]
                elif path == "labels":
                    labels = dict(container.labels)
                elif path == "extensions":
                    extensions = dict(container.extensions)
                elif path == "spec":
                    changes["spec"] = container.spec
                elif path == "image":
                    changes["image"] = container.image
                elif path == "snapshotkey":
                    changes["snapshot_key"] = container.snapshot_key
                else:
                    raise errdefs.InvalidArgument(
                        f"cannot update {path!r} field on {container.id!r}"
                    )
            updated = attrs.evolve(
                current, labels=labels, extensions=extensions, updated_at=now(), **changes
            )
            try:
                validate_container(updated)
            except errdefs.InvalidArgument as exc:
                raise errdefs.InvalidArgument(f"update failed validation: {exc}") from None
            _write(tx, namespace, updated, insert=False)
            return updated

        updated = await self._db.update(fn)
        await self._db.publish(
            namespace,
            events.TOPIC_CONTAINER_UPDATE,
            events.ContainerUpdate(
                id=updated.id,
                image=updated.image,
                labels=dict(updated.labels),
                snapshot_key=updated.snapshot_key,
            ),
        )
        return updated

    async def delete(self, id: str) -> None:  # noqa: A002
        namespace = namespaces.required()

        def fn(tx: Tx) -> None:
            cur = tx.execute(
                "DELETE FROM containers WHERE namespace = ? AND id = ?", (namespace, id)
            )
            if cur.rowcount == 0:
                raise errdefs.NotFound(f"container {id!r} in namespace {namespace!r}: not found")
            write_extensions(tx, namespace, "container", id, {})
            tx.mark_dirty()

        await self._db.update(fn)
        await self._db.publish(
            namespace, events.TOPIC_CONTAINER_DELETE, events.ContainerDelete(id=id)
        )
