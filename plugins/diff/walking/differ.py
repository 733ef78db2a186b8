"""The walking differ: :class:`pycontainerd.core.diff.Differ` over a content store.

Apply reads the layer blob from the content store and unpacks it with
:func:`pycontainerd.core.archive.apply.apply_layer` in a worker thread, onto the mounts mounted
on a temporary directory (or, for a single overlay mount, straight into its upper directory
with overlay whiteouts, as containerd does on Linux). The uncompressed digest computed on the
way is the diff ID; when the descriptor's annotations or the blob's labels name one
(``containerd.io/uncompressed``) it must match.

The layer is read and decompressed once, as it streams (``validate_first=False``): every entry
is still checked before it is written, so nothing outside the mounts is ever touched, and a
rejected entry stops the apply with an error naming it. What the layer wrote before that entry
stays in the snapshot being applied to, which is an active snapshot its caller removes on
failure (the unpacker's ``extract-*`` snapshot; containerd's clients do the same), exactly as
with containerd's differ.

Compare mounts ``lower`` and ``upper`` read-only, walks both with
:func:`pycontainerd.core.archive.diff.write_diff` in a worker thread, compresses (gzip unless
the media type says otherwise) into a content writer and commits; compressed blobs get the
``containerd.io/uncompressed`` label.

The archive code is synchronous and the content store is async: the worker thread reads and
writes through small bridges that run the store's coroutines on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.archive.apply import apply_layer
from pycontainerd.core.archive.compression import Compression, compress_stream
from pycontainerd.core.archive.diff import write_diff
from pycontainerd.core.content import Descriptor, Info, ReaderAt, Store, Writer
from pycontainerd.core.diff import (
    LABEL_UNCOMPRESSED,
    MEDIA_TYPE_LAYER,
    MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_LAYER_ZSTD,
    ApplyConfig,
    DiffConfig,
    layer_compression,
)
from pycontainerd.core.mount import Mount, with_temp_mount

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Bytes moved per call between the worker thread and the content store.
BRIDGE_CHUNK = 1 << 20

_COMPARE_COMPRESSION = {
    MEDIA_TYPE_LAYER: Compression.UNCOMPRESSED,
    MEDIA_TYPE_LAYER_GZIP: Compression.GZIP,
    MEDIA_TYPE_LAYER_ZSTD: Compression.ZSTD,
}


def _on_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on ``loop`` from a worker thread and wait for its result."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


class _BlobReader:
    """A blocking, sequential file-like reader over an async :class:`ReaderAt`: one hop to the
    loop per :data:`BRIDGE_CHUNK`, then reads are served from that chunk without copying it
    again."""

    def __init__(self, ra: ReaderAt, loop: asyncio.AbstractEventLoop) -> None:
        self._ra = ra
        self._loop = loop
        self._offset = 0
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        if self._offset >= self._ra.size:
            return
        n = min(BRIDGE_CHUNK, self._ra.size - self._offset)
        data = _on_loop(self._loop, self._ra.read_at(self._offset, n))
        if not data:
            raise errdefs.DataLoss(f"short read at offset {self._offset} of {self._ra.size}")
        self._offset += len(data)
        self._buf = memoryview(data)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [bytes(self._buf)]
            self._buf = memoryview(b"")
            while self._offset < self._ra.size:
                self._fill()
                parts.append(bytes(self._buf))
                self._buf = memoryview(b"")
            return b"".join(parts)
        if not self._buf:
            self._fill()
        out = bytes(self._buf[:n])
        self._buf = self._buf[n:]
        return out

    def readinto(self, b: Any) -> int:
        if not self._buf:
            self._fill()
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class _BlobWriter:
    """A blocking file-like writer over an async content :class:`Writer`, buffered."""

    def __init__(self, w: Writer, loop: asyncio.AbstractEventLoop) -> None:
        self._w = w
        self._loop = loop
        self._buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._buf += data
        if len(self._buf) >= BRIDGE_CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            _on_loop(self._loop, self._w.write(data))


class _HashingTee:
    """Writes to ``dest`` and hashes what passes (the uncompressed digest of a diff)."""

    def __init__(self, dest: Any) -> None:
        self._dest = dest
        self.hash = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.hash.update(data)
        return int(self._dest.write(data))

    def flush(self) -> None:
        self._dest.flush()


def unique_ref() -> str:
    """A fresh ingest reference for a diff nobody named."""
    return f"{time.time_ns()}-{base64.urlsafe_b64encode(os.urandom(3)).decode()}"


def _overlay_upper(mounts: Sequence[Mount]) -> tuple[str, list[str]] | None:
    """(upperdir, lowerdirs topmost first) of a single writable overlay mount."""
    if len(mounts) != 1 or mounts[0].type != "overlay":
        return None
    upper = ""
    lowers: list[str] = []
    for o in ",".join(mounts[0].options).split(","):
        if o.startswith("upperdir="):
            upper = o[len("upperdir=") :]
        elif o.startswith("lowerdir="):
            lowers = [x for x in o[len("lowerdir=") :].split(":") if x]
    if not upper:
        return None
    return upper, lowers


def _sync_fs() -> None:
    os.sync()


@attrs.define(eq=False)
class WalkingDiff:
    """Applier and Comparer over ``store`` (the namespaced content store)."""

    store: Store

    # ------------------------------------------------------------------------------ apply

    async def apply(
        self,
        desc: Descriptor,
        mounts: Sequence[Mount],
        config: ApplyConfig | None = None,
    ) -> Descriptor:
        config = config or ApplyConfig()
        if layer_compression(desc.media_type) is None:
            raise errdefs.NotImplemented_(f"unsupported diff media type: {desc.media_type}")
        t0 = time.monotonic()
        expected = desc.annotations.get(LABEL_UNCOMPRESSED, "")
        if not expected:
            try:
                info = await self.store.info(desc.digest)
            except errdefs.NotFound as e:
                raise errdefs.NotFound(f"failed to get reader from content store: {e}") from e
            expected = info.labels.get(LABEL_UNCOMPRESSED, "")
        loop = asyncio.get_running_loop()
        ra = await self.store.reader_at(desc)
        try:
            overlay = _overlay_upper(mounts)

            def run(root: str, whiteouts: str, parents: Sequence[str]) -> Any:
                result = apply_layer(
                    root,
                    _BlobReader(ra, loop),  # type: ignore[arg-type]
                    convert_whiteouts=whiteouts,  # type: ignore[arg-type]
                    validate_first=False,
                    parents=parents,
                    progress=config.progress,
                )
                if config.sync_fs:
                    _sync_fs()
                return result

            if overlay is not None and os.geteuid() == 0:
                upper, lowers = overlay
                result = await asyncio.to_thread(run, upper, "overlay", lowers)
            else:
                async with with_temp_mount(mounts) as root:
                    result = await asyncio.to_thread(run, root, "oci", ())
        finally:
            await ra.close()
        if expected and result.diff_id != expected:
            raise errdefs.InvalidArgument(
                f"failed to apply layer {desc.digest}: diff id {result.diff_id} "
                f"does not match expected {expected}"
            )
        log.debug(
            "diff applied digest=%s media=%s size=%d seconds=%.3f",
            desc.digest,
            desc.media_type,
            result.uncompressed_size,
            time.monotonic() - t0,
        )
        return Descriptor(
            media_type=MEDIA_TYPE_LAYER, digest=result.diff_id, size=result.uncompressed_size
        )

    # ------------------------------------------------------------------------------ compare

    async def compare(
        self,
        lower: Sequence[Mount],
        upper: Sequence[Mount],
        config: DiffConfig | None = None,
    ) -> Descriptor:
        config = config or DiffConfig()
        media_type = config.media_type
        if config.compressor is not None:
            if not media_type:
                raise errdefs.InvalidArgument(
                    "media type must be explicitly specified when using custom compressor"
                )
            compression: Compression | None = None
        else:
            media_type = media_type or MEDIA_TYPE_LAYER_GZIP
            compression = _COMPARE_COMPRESSION.get(media_type)
            if compression is None:
                raise errdefs.NotImplemented_(f"unsupported diff media type: {media_type}")
        labels = dict(config.labels)
        new_ref = not config.reference
        ref = config.reference or unique_ref()
        loop = asyncio.get_running_loop()

        async with (
            with_temp_mount(lower, readonly=True) as lower_root,
            with_temp_mount(upper, readonly=True) as upper_root,
        ):
            try:
                cw = await self.store.writer(ref)
            except errdefs.ContainerdError as e:
                raise type(e)(f"failed to open writer: {e}") from e
            committed = False
            try:
                if not new_ref:
                    await cw.truncate(0)

                def run() -> str:
                    sink = _BlobWriter(cw, loop)
                    if config.compressor is not None:
                        out: Any = config.compressor(sink, media_type)  # type: ignore[arg-type]
                    else:
                        assert compression is not None
                        out = compress_stream(sink, compression)  # type: ignore[arg-type]
                    tee = _HashingTee(out)
                    write_diff(
                        lower_root,
                        upper_root,
                        tee,  # type: ignore[arg-type]
                        source_date_epoch=config.source_date_epoch,
                    )
                    out.close()
                    sink.flush()
                    return "sha256:" + tee.hash.hexdigest()

                uncompressed = await asyncio.to_thread(run)
                if compression is not Compression.UNCOMPRESSED:
                    labels[LABEL_UNCOMPRESSED] = uncompressed
                dgst = cw.digest()
                try:
                    await cw.commit(0, dgst, labels)
                except errdefs.AlreadyExists:
                    pass
                committed = True
            finally:
                if not committed:
                    await cw.close()
                    if new_ref:
                        try:
                            await self.store.abort(ref)
                        except errdefs.ContainerdError as e:
                            log.warning("failed to delete diff upload ref=%s: %s", ref, e)

        info = await self.store.info(dgst)
        if LABEL_UNCOMPRESSED in labels and LABEL_UNCOMPRESSED not in info.labels:
            info = await self.store.update(
                Info(digest=dgst, labels={LABEL_UNCOMPRESSED: labels[LABEL_UNCOMPRESSED]}),
                [f"labels.{LABEL_UNCOMPRESSED}"],
            )
        return Descriptor(media_type=media_type, digest=info.digest, size=info.size)
