"""The CRI image index (containerd's ``internal/cri/store/image``): image ID -> references,
derived from the image records in namespace ``k8s.io``.

Every image record (a tag ``name:tag``, a digest ref ``name@sha256:...`` or the ID record
``sha256:<config digest>``) is one reference; the records of one image share the config
digest, which is the CRI image ID. :meth:`ImageIndex.update` re-reads one record and moves its
reference; the records stay the source of truth, the index only answers lookups fast.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from pycontainerd.core import errdefs, namespaces, platforms
from pycontainerd.core.images import image as image_
from pycontainerd.core.metadata.images import Image as ImageRecord
from pycontainerd.plugins.cri import constants
from pycontainerd.plugins.cri.images import refs

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class Image:
    """One CRI image: its ID, every reference to it, and what the CRI reports about it."""

    id: str
    references: tuple[str, ...] = ()
    chain_id: str = ""
    #: compressed size of everything the host platform needs (manifest, config, layers)
    size: int = 0
    #: the image config (OCI image spec JSON object)
    spec: dict[str, Any] = attrs.field(factory=dict, eq=False)
    pinned: bool = False

    @property
    def user(self) -> str:
        cfg = self.spec.get("config") or {}
        return str(cfg.get("User") or "") if isinstance(cfg, dict) else ""


async def image_from_record(
    provider: Any, record: ImageRecord, matcher: platforms.MatchComparer
) -> Image:
    """Read what the index keeps of one image record from the content store."""
    config_desc = await image_.config(provider, record.target, matcher)
    spec = await image_.read_json(provider, config_desc)
    diff_ids = await image_.rootfs(provider, config_desc)
    size = await image_.size(provider, record.target, matcher)
    return Image(
        id=config_desc.digest,
        references=(record.name,),
        chain_id=image_.chain_id(diff_ids) if diff_ids else "",
        size=size,
        spec=spec,
        pinned=record.labels.get(constants.PINNED_IMAGE_LABEL_KEY)
        == constants.PINNED_IMAGE_LABEL_VALUE,
    )


def _split(value: str) -> tuple[str, str]:
    alg, sep, hex_ = value.partition(":")
    return (alg, hex_) if sep else ("", value)


@attrs.define(eq=False)
class _IDs:
    """Image IDs with lookup by full digest, by ``sha256:<prefix>`` or by a bare hex prefix
    (the digest set docker and containerd use for truncated IDs)."""

    _entries: list[tuple[str, str]] = attrs.Factory(list)  # (hex, alg), sorted

    def add(self, digest: str) -> None:
        alg, hex_ = _split(digest)
        entry = (hex_, alg)
        i = bisect.bisect_left(self._entries, entry)
        if i == len(self._entries) or self._entries[i] != entry:
            self._entries.insert(i, entry)

    def remove(self, digest: str) -> None:
        alg, hex_ = _split(digest)
        try:
            self._entries.remove((hex_, alg))
        except ValueError:
            pass

    def lookup(self, value: str) -> str:
        alg, hex_ = _split(value)
        if not hex_:
            raise errdefs.NotFound(f"image {value!r}: not found")
        i = bisect.bisect_left(self._entries, (hex_, ""))
        found: list[tuple[str, str]] = []
        for entry_hex, entry_alg in self._entries[i:]:
            if not entry_hex.startswith(hex_):
                break
            if alg and entry_alg != alg:
                continue
            if entry_hex == hex_:
                return f"{entry_alg}:{entry_hex}"
            found.append((entry_hex, entry_alg))
        if not found:
            raise errdefs.NotFound(f"image {value!r}: not found")
        if len(found) > 1:
            raise errdefs.InvalidArgument(f"image id {value!r} is ambiguous")
        return f"{found[0][1]}:{found[0][0]}"


#: ``get(name)`` of the image records (the client's ``get_image``).
RecordGetter = Callable[[str], Awaitable[ImageRecord]]


@attrs.define(eq=False)
class ImageIndex:
    """``ref -> ID`` and ``ID -> Image``. ``getter`` reads a record in ``k8s.io``;
    ``provider`` is the content store; ``matcher`` the platform images are shown for;
    ``namespace`` the one the records live in."""

    _getter: RecordGetter
    _provider: Any
    _matcher: platforms.MatchComparer = attrs.Factory(platforms.default)
    _namespace: str = constants.K8S_NAMESPACE
    _ref_cache: dict[str, str] = attrs.Factory(dict)
    _images: dict[str, Image] = attrs.Factory(dict)
    _pinned_refs: dict[str, set[str]] = attrs.Factory(dict)
    _ids: _IDs = attrs.Factory(_IDs)
    _lock: asyncio.Lock = attrs.Factory(asyncio.Lock)

    async def update(self, ref: str) -> None:
        """Re-read record ``ref``: add, move or (when it is gone) drop the reference."""
        async with self._lock:
            with namespaces.use(self._namespace):
                try:
                    record = await self._getter(ref)
                except errdefs.NotFound:
                    self.apply(ref, None)
                    return
                image = await image_from_record(self._provider, record, self._matcher)
            self.apply(ref, image)

    def apply(self, ref: str, image: Image | None) -> None:
        """Record that ``ref`` now names ``image`` (None: the record no longer exists)."""
        old_id = self._ref_cache.get(ref)
        if image is None:
            if old_id is not None:
                self._delete(old_id, ref)
                del self._ref_cache[ref]
            return
        if old_id is not None:
            if old_id == image.id:
                self._set_pinned(image.id, ref, image.pinned)
                return
            self._delete(old_id, ref)
        self._ref_cache[ref] = image.id
        self._add(image)

    def resolve(self, ref: str) -> str:
        """The ID a reference (exactly as recorded) names."""
        try:
            return self._ref_cache[ref]
        except KeyError:
            raise errdefs.NotFound(f"image {ref!r}: not found") from None

    def get(self, id_: str) -> Image:
        """The image of a full or truncated ID (``sha256:abc...``, ``abc...``)."""
        full = self._ids.lookup(id_)
        try:
            return self._images[full]
        except KeyError:
            raise errdefs.NotFound(f"image {id_!r}: not found") from None

    def list(self) -> list[Image]:
        return [self._images[k] for k in sorted(self._images)]

    def __len__(self) -> int:
        return len(self._images)

    # --- internals ---------------------------------------------------------------------

    def _add(self, image: Image) -> None:
        self._ids.add(image.id)
        if image.pinned:
            self._pinned_refs.setdefault(image.id, set()).update(image.references)
        current = self._images.get(image.id)
        if current is None:
            self._images[image.id] = attrs.evolve(
                image, references=tuple(refs.sort_references(image.references))
            )
            return
        self._images[image.id] = attrs.evolve(
            current,
            references=tuple(refs.sort_references((*current.references, *image.references))),
            pinned=current.pinned or image.pinned,
        )

    def _set_pinned(self, id_: str, ref: str, pinned: bool) -> None:
        image = self._images.get(id_)
        if image is None:
            return
        pins = self._pinned_refs.setdefault(id_, set())
        if pinned:
            pins.add(ref)
        else:
            pins.discard(ref)
        if not pins:
            del self._pinned_refs[id_]
        self._images[id_] = attrs.evolve(image, pinned=bool(pins))

    def _delete(self, id_: str, ref: str) -> None:
        image = self._images.get(id_)
        if image is None:
            return
        remaining = tuple(r for r in image.references if r.lower() != ref.lower())
        if remaining:
            pins = self._pinned_refs.get(id_)
            pinned = image.pinned
            if pins is not None:
                pins.discard(ref)
                if not pins:
                    del self._pinned_refs[id_]
                    pinned = False
            self._images[id_] = attrs.evolve(image, references=remaining, pinned=pinned)
            return
        self._ids.remove(id_)
        del self._images[id_]
        self._pinned_refs.pop(id_, None)
