"""The transfer contract (containerd's ``core/transfer``): moving images between a source and a
destination, with progress.

A :class:`Transferrer` takes a source and a destination object and does what their kinds
allow: registry -> image store is a pull, image store -> registry a push, image store -> image
store a tag, import stream -> image store an import, image store -> export stream an export.
The kinds are the small protocols below; the concrete objects are
:class:`~pycontainerd.core.transfer.registry.OCIRegistry`,
:class:`~pycontainerd.core.transfer.imagestore.ImageStore` and the archive streams in
:mod:`~pycontainerd.core.transfer.archive`. The local implementation is
:class:`~pycontainerd.core.transfer.local.LocalTransferService`.

Progress is a stream of :class:`Progress` values handed to a callback: a free-text ``event``
for the steps ("Resolving from ...", "saved"), and per blob ``waiting``, ``downloading``
(or ``uploading``), ``complete``, ``already exists``, ``extracting``, ``extracted``, with the
blob's ref key as ``name``, bytes so far and total.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    from pycontainerd.core.content.descriptor import Descriptor
    from pycontainerd.core.plugin.context import Platform


@attrs.frozen(kw_only=True)
class Progress:
    """One progress event (containerd's ``transfer.Progress``)."""

    event: str
    name: str = ""
    parents: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    progress: int = 0
    total: int = 0
    desc: Descriptor | None = None


ProgressFunc = Callable[[Progress], None]


@attrs.frozen(kw_only=True)
class UnpackConfiguration:
    """Unpack into ``snapshotter`` ("" = the service's default) for ``platform``."""

    platform: Platform | None = None
    snapshotter: str = ""


@runtime_checkable
class Transferrer(Protocol):
    async def transfer(
        self, source: Any, destination: Any, *, progress: ProgressFunc | None = None
    ) -> None:
        """Move ``source`` to ``destination``; NotImplemented_ when this transferrer does not
        handle the pair."""
        ...


@runtime_checkable
class ImageFetcher(Protocol):
    """A source to pull from (a registry)."""

    async def resolve(self) -> tuple[str, Descriptor]: ...

    async def fetcher(self, ref: str) -> Any: ...


@runtime_checkable
class ImagePusher(Protocol):
    """A destination to push to (a registry)."""

    async def pusher(self, desc: Descriptor) -> Any: ...


@runtime_checkable
class ImageStorer(Protocol):
    """A destination that records images (the image store)."""

    async def store(self, desc: Descriptor, images: Any) -> list[Any]: ...


@runtime_checkable
class ImageGetter(Protocol):
    """A source that is an image in the image store."""

    async def get(self, images: Any) -> Any: ...


@runtime_checkable
class ImageImporter(Protocol):
    """A source of images to import into the content store (an archive stream)."""

    async def import_into(self, content: Any) -> Descriptor: ...


@runtime_checkable
class ImageExporter(Protocol):
    """A destination that writes images out (an archive stream)."""

    async def export(self, content: Any, images: Sequence[Any]) -> None: ...


__all__ = [
    "ImageExporter",
    "ImageFetcher",
    "ImageGetter",
    "ImageImporter",
    "ImagePusher",
    "ImageStorer",
    "Progress",
    "ProgressFunc",
    "Transferrer",
    "UnpackConfiguration",
]
