"""The in-process layer applier: reads a layer blob from a content store and applies it onto
snapshot mounts with :func:`pycontainerd.core.archive.apply.apply_layer`, in a worker thread.

As containerd's walking differ on Linux, two mount shapes skip mounting altogether:

- one ``overlay`` mount with an ``upperdir``: the layer goes straight into the upper directory
  with overlay whiteouts (0:0 character devices, ``trusted.overlay.opaque``) and the lower
  directories as the parents of missing directories;
- one writable ``bind`` mount: the layer goes straight into its source directory.

Anything else is mounted on a temporary directory first. Layers are applied without the
validate-first pass: the target is always a fresh extraction snapshot that the unpacker
removes on failure, so a rejected layer leaves nothing behind either way. Symbolic links in
parent paths resolve inside the root (containerd's semantics), never outside it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.archive.apply import ApplyResult, WhiteoutMode, apply_layer
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.content.types import Provider
from pycontainerd.core.diff import ApplyConfig, layer_compression
from pycontainerd.core.images import mediatypes
from pycontainerd.core.images.blobio import blob_file
from pycontainerd.core.mount import Mount, with_temp_mount

log = logging.getLogger(__name__)


def uncompressed_media_type(media_type: str) -> str:
    """The media type of a layer's uncompressed form."""
    if media_type.startswith("application/vnd.docker."):
        return mediatypes.DOCKER_LAYER
    return mediatypes.OCI_LAYER


def _option(options: Sequence[str], key: str) -> str | None:
    for o in options:
        for part in o.split(","):
            k, sep, v = part.partition("=")
            if sep and k == key:
                return v
    return None


def direct_target(mounts: Sequence[Mount]) -> tuple[str, WhiteoutMode, tuple[str, ...]] | None:
    """Where a layer can be applied without mounting: (directory, whiteout mode, parents)."""
    if len(mounts) != 1:
        return None
    m = mounts[0]
    typ = m.type.rsplit("/", 1)[-1]
    if m.target:
        return None
    if typ == "overlay":
        upper = _option(m.options, "upperdir")
        if not upper:
            return None
        lower = _option(m.options, "lowerdir") or ""
        return upper, "overlay", tuple(p for p in lower.split(":") if p)
    if typ == "bind" and not m.readonly:
        return m.source, "oci", ()
    return None


def _apply(
    root: str,
    ra: Any,
    loop: asyncio.AbstractEventLoop,
    mode: WhiteoutMode,
    parents: tuple[str, ...],
    progress: Callable[[int], None] | None,
) -> ApplyResult:
    with blob_file(ra, loop) as f:
        return apply_layer(
            root,
            f,
            convert_whiteouts=mode,
            validate_first=False,
            strict_symlinks=False,
            parents=parents,
            progress=progress,
        )


@attrs.define(eq=False)
class LocalApplier:
    """An :class:`~pycontainerd.core.diff.Applier` over a content store, in process."""

    _content: Provider

    async def apply(
        self,
        desc: Descriptor,
        mounts: Sequence[Mount],
        config: ApplyConfig | None = None,
    ) -> Descriptor:
        if layer_compression(desc.media_type) is None:
            raise errdefs.NotImplemented_(
                f"unsupported layer media type {desc.media_type!r} for {desc.digest}"
            )
        cfg = config or ApplyConfig()
        loop = asyncio.get_running_loop()
        progress = None
        if cfg.progress is not None:
            cb = cfg.progress

            def progress(n: int) -> None:
                loop.call_soon_threadsafe(cb, n)

        ra = await self._content.reader_at(desc)
        try:
            target = direct_target(mounts)
            if target is not None:
                root, mode, parents = target
                result = await _in_thread(_apply, root, ra, loop, mode, parents, progress)
            else:
                async with with_temp_mount(mounts) as root:
                    result = await _in_thread(_apply, root, ra, loop, "oci", (), progress)
        finally:
            await ra.close()
        log.debug(
            "applied layer %s (diff %s, %d bytes, %d entries)",
            desc.digest,
            result.diff_id,
            result.uncompressed_size,
            result.entries,
        )
        return Descriptor(
            media_type=uncompressed_media_type(desc.media_type),
            digest=result.diff_id,
            size=result.uncompressed_size,
        )


async def _in_thread(fn: Callable[..., ApplyResult], *args: Any) -> ApplyResult:
    """Run ``fn`` in a thread; if cancelled, wait for the thread before re-raising, so that
    nobody removes or unmounts the target while it is still being written."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            await task
        except BaseException:  # noqa: BLE001 - the cancellation is what matters
            pass
        raise
