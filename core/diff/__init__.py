"""The diff contract: applying layer content onto mounts, and computing layers from mounts.

As containerd's ``core/diff``: an :class:`Applier` unpacks the blob a descriptor names onto
the filesystem that ``mounts`` describe and returns the descriptor of what it applied (the
uncompressed layer: its digest is the diff ID); a :class:`Comparer` computes the changes from
``lower`` to ``upper`` mounts, stores them as a blob and returns its descriptor. Both are
async; implementations (``plugins/diff``) do the blocking archive work of
:mod:`pycontainerd.core.archive` in a thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, runtime_checkable

import attrs

from pycontainerd.core.images import mediatypes as mt

if TYPE_CHECKING:
    from pycontainerd.core.content.descriptor import Descriptor
    from pycontainerd.core.mount import Mount

#: Media types a differ reads and writes (the names of :mod:`pycontainerd.core.images.mediatypes`).
MEDIA_TYPE_LAYER = mt.OCI_LAYER
MEDIA_TYPE_LAYER_GZIP = mt.OCI_LAYER_GZIP
MEDIA_TYPE_LAYER_ZSTD = mt.OCI_LAYER_ZSTD
MEDIA_TYPE_DOCKER_LAYER = mt.DOCKER_LAYER
MEDIA_TYPE_DOCKER_LAYER_GZIP = mt.DOCKER_LAYER_GZIP

#: The label a differ sets on the content it writes, naming the uncompressed digest.
LABEL_UNCOMPRESSED = "containerd.io/uncompressed"

_LAYER_COMPRESSION = {
    mt.OCI_LAYER: "uncompressed",
    mt.OCI_LAYER_GZIP: "gzip",
    mt.OCI_LAYER_ZSTD: "zstd",
    mt.OCI_LAYER_NONDISTRIBUTABLE: "uncompressed",
    mt.OCI_LAYER_NONDISTRIBUTABLE_GZIP: "gzip",
    mt.OCI_LAYER_NONDISTRIBUTABLE_ZSTD: "zstd",
    mt.DOCKER_LAYER: "uncompressed",
    mt.DOCKER_LAYER_GZIP: "gzip",
    mt.DOCKER_LAYER_ZSTD: "zstd",
    mt.DOCKER_LAYER_FOREIGN: "uncompressed",
    mt.DOCKER_LAYER_FOREIGN_GZIP: "gzip",
}


def layer_compression(media_type: str) -> str | None:
    """The compression (a :class:`~pycontainerd.core.archive.compression.Compression` value:
    "uncompressed", "gzip", "zstd") of a layer media type, or None when it is not a layer
    type a walking differ can apply."""
    return _LAYER_COMPRESSION.get(media_type)


#: ``compressor(dest, media_type)`` returns a writer that compresses into ``dest``.
Compressor = Callable[[BinaryIO, str], BinaryIO]


def _labels(value: Mapping[str, str] | None) -> dict[str, str]:
    return dict(value or {})


@attrs.frozen(kw_only=True)
class DiffConfig:
    """Options of :meth:`Comparer.compare` (containerd's ``diff.Config``)."""

    #: media type of the diff to produce; "" lets the differ choose (gzip'd OCI layer)
    media_type: str = ""
    #: content ingest reference; "" lets the differ choose a random one
    reference: str = ""
    #: labels of the content written
    labels: dict[str, str] = attrs.field(factory=dict, converter=_labels)
    #: compresses the tar instead of the differ's default for ``media_type``
    compressor: Compressor | None = None
    #: caps the modification times written (SOURCE_DATE_EPOCH, seconds)
    source_date_epoch: int | None = None


@attrs.frozen(kw_only=True)
class ApplyConfig:
    """Options of :meth:`Applier.apply` (containerd's ``diff.ApplyConfig``)."""

    #: payloads for stream processors, by processor id
    processor_payloads: dict[str, Any] = attrs.field(factory=dict, converter=dict)
    #: fsync the applied files before returning
    sync_fs: bool = False
    #: called with the number of bytes applied so far
    progress: Callable[[int], None] | None = None


@runtime_checkable
class Applier(Protocol):
    """Applies the layer a descriptor names onto mounts."""

    async def apply(
        self,
        desc: Descriptor,
        mounts: Sequence[Mount],
        config: ApplyConfig | None = None,
    ) -> Descriptor:
        """Apply the content of ``desc`` onto the filesystem ``mounts`` make and return the
        descriptor of the uncompressed layer applied (media type without compression, digest =
        diff ID, size = uncompressed size). Unsupported media types raise NotImplemented_,
        an unsafe or corrupt layer InvalidArgument."""
        ...


@runtime_checkable
class Comparer(Protocol):
    """Computes a layer from two mounts."""

    async def compare(
        self,
        lower: Sequence[Mount],
        upper: Sequence[Mount],
        config: DiffConfig | None = None,
    ) -> Descriptor:
        """Write the changes from ``lower`` (empty: an empty tree) to ``upper`` as a layer
        into the content store and return its descriptor."""
        ...


@runtime_checkable
class Differ(Applier, Comparer, Protocol):
    """Both halves, which is what a differ plugin provides."""


__all__ = [
    "Applier",
    "ApplyConfig",
    "Comparer",
    "Compressor",
    "DiffConfig",
    "Differ",
    "LABEL_UNCOMPRESSED",
    "MEDIA_TYPE_DOCKER_LAYER",
    "MEDIA_TYPE_DOCKER_LAYER_GZIP",
    "MEDIA_TYPE_LAYER",
    "MEDIA_TYPE_LAYER_GZIP",
    "MEDIA_TYPE_LAYER_ZSTD",
    "layer_compression",
]
