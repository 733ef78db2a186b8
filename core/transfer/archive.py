"""Archive streams as transfer sources and destinations (containerd's
``core/transfer/archive``): an OCI or Docker archive carried as ``containerd.types.transfer.Data``
messages on a stream registered with the streaming service, with window flow control.

- :class:`ImageImportStream` (``containerd.types.transfer.ImageImportStream``) is a source:
  the archive the client sends is read by :func:`pycontainerd.core.images.archive.import_index`
  as it arrives (no spooling; a ``media_type`` of "" means the tar may be gzip or zstd
  compressed, detected from its first bytes, as containerd does).
- :class:`ImageExportStream` (``containerd.types.transfer.ImageExportStream``) is a
  destination: :func:`pycontainerd.core.images.archive.export` writes the OCI archive straight
  onto the stream, never more than the client's granted window ahead.

The archive code is blocking and runs in a worker thread; :class:`_ThreadReader` and
:class:`_ThreadWriter` join it to the stream on the event loop. Only whole Data payloads cross
between them, so a 100 MB archive costs a few thousand queue operations, not a thread hop per
``read``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.transfer.streaming import (
    Stream,
    pack,
    receive_stream,
    send_stream,
    type_name,
    unpack_as,
)

if TYPE_CHECKING:
    from pycontainerd.core.content.descriptor import Descriptor
    from pycontainerd.core.plugin.context import Platform

log = logging.getLogger(__name__)

IMPORT_STREAM_TYPE = "containerd.types.transfer.ImageImportStream"
EXPORT_STREAM_TYPE = "containerd.types.transfer.ImageExportStream"

#: Data payloads buffered between the stream and the archive thread (each at most
#: ``streaming.MAX_READ`` bytes when they come from containerd's client).
_QUEUE_CHUNKS = 256
_EOF = object()


def _pb() -> Any:
    from pycontainerd.api.containerd.types.transfer import importexport_pb2

    return importexport_pb2


# --- import --------------------------------------------------------------------------------


@attrs.define(eq=False, kw_only=True)
class ImageImportStream:
    """A transfer source: the archive arriving on ``stream``."""

    stream: Stream
    stream_id: str = ""
    media_type: str = ""
    force_compress: bool = False

    def __str__(self) -> str:
        return f"Image Import Stream ({self.stream_id or 'in process'})"

    async def import_into(self, content: Any) -> Descriptor:
        """Store the archive's blobs in ``content``; the descriptor of its index."""
        from pycontainerd.core.archive.compression import decompress_stream
        from pycontainerd.core.images import archive

        reader = _ThreadReader(self.stream)
        reader.start()
        try:
            src: Any = reader
            if not self.media_type:
                src = await asyncio.to_thread(decompress_stream, reader)
            return await archive.import_index(content, src)
        finally:
            await reader.close()

    def to_proto(self) -> Any:
        return _pb().ImageImportStream(
            stream=self.stream_id, media_type=self.media_type, force_compress=self.force_compress
        )


class _ThreadReader:
    """A blocking binary reader (for a worker thread) of the bytes of a transfer stream. A
    task on the loop moves each Data payload into a bounded thread-safe queue; the receiver
    grants the sender more window only as payloads are taken, so a slow import slows the
    client down instead of buffering the archive."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._q: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._closed = threading.Event()
        self._buf = memoryview(b"")
        self._eof = False
        self._pump: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._pump = asyncio.get_running_loop().create_task(self._run(), name="import stream")

    async def _run(self) -> None:
        item: Any = _EOF
        try:
            async for data in receive_stream(self._stream):
                await self._put(data)
        except asyncio.CancelledError:
            item = errdefs.Canceled("import stream: cancelled")
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the reading thread
            item = exc
        finally:
            if not self._closed.is_set():
                await self._put(item)

    async def _put(self, item: Any) -> None:
        try:
            self._q.put_nowait(item)
        except queue.Full:
            await asyncio.to_thread(self._put_blocking, item)

    def _put_blocking(self, item: Any) -> None:
        while not self._closed.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    # called in the worker thread
    def read(self, n: int = -1) -> bytes:
        if n < 0:
            out = bytearray()
            while chunk := self.read(1 << 20):
                out += chunk
            return bytes(out)
        while not self._buf:
            if self._eof or n == 0:
                return b""
            item = self._q.get()
            if item is _EOF:
                self._eof = True
                return b""
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            self._buf = memoryview(item)
        out_b = bytes(self._buf[:n])
        self._buf = self._buf[n:]
        return out_b

    def readable(self) -> bool:
        return True

    async def close(self) -> None:
        self._closed.set()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        # a thread still waiting for bytes (the import was cancelled) gets the end instead
        with contextlib.suppress(queue.Empty):
            while True:
                self._q.get_nowait()
        with contextlib.suppress(queue.Full):
            self._q.put_nowait(_EOF)


# --- export --------------------------------------------------------------------------------


@attrs.define(eq=False, kw_only=True)
class ImageExportStream:
    """A transfer destination: the OCI archive of the images is sent on ``stream``."""

    stream: Stream
    stream_id: str = ""
    media_type: str = ""
    #: platforms to export (empty: this host's)
    platforms: Sequence[Platform] = ()
    all_platforms: bool = False
    #: no Docker ``manifest.json`` beside the OCI index
    skip_compatibility_manifest: bool = False
    skip_non_distributable: bool = False

    def __str__(self) -> str:
        return f"Image Export Stream ({self.stream_id or 'in process'})"

    async def export(self, content: Any, images: Sequence[Any]) -> None:
        from pycontainerd.core import platforms as platforms_
        from pycontainerd.core.images import archive

        if self.skip_non_distributable:
            log.info("%s: non-distributable layers are exported like the others", self)
        matcher = platforms_.ordered(*self.platforms) if self.platforms else platforms_.default()
        writer = _ThreadWriter(self.stream)
        writer.start()
        ok = False
        try:
            await archive.export(
                content,
                writer,  # type: ignore[arg-type]
                list(images),
                platform=matcher,
                all_platforms=self.all_platforms,
                skip_manifest_json=self.skip_compatibility_manifest,
            )
            ok = True
        finally:
            await writer.close(ok)

    def to_proto(self) -> Any:
        from pycontainerd.core.transfer import proto as tproto

        return _pb().ImageExportStream(
            stream=self.stream_id,
            media_type=self.media_type,
            platforms=[tproto.platform_to_proto(p) for p in self.platforms],
            all_platforms=self.all_platforms,
            skip_compatibility_manifest=self.skip_compatibility_manifest,
            skip_non_distributable=self.skip_non_distributable,
        )


class _ThreadWriter:
    """A blocking binary writer (for a worker thread) whose bytes are sent on a transfer
    stream by :func:`send_stream` on the loop. ``write`` returns once the bytes are queued;
    the queue is short, so the thread runs no further ahead of the client's window."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._loop = asyncio.get_running_loop()
        self._q: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=4)
        self._buf = memoryview(b"")
        self._sender: asyncio.Task[int] | None = None

    def start(self) -> None:
        self._sender = self._loop.create_task(
            send_stream(self._read, self._stream), name="export stream"
        )

    async def _read(self, n: int) -> bytes:
        if not self._buf:
            item = await self._q.get()
            if item is None:
                return b""
            self._buf = memoryview(item)
        out = bytes(self._buf[:n])
        self._buf = self._buf[n:]
        return out

    async def _put(self, item: bytes | None) -> None:
        assert self._sender is not None
        put = asyncio.ensure_future(self._q.put(item))
        await asyncio.wait({put, self._sender}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
            exc = None if self._sender.cancelled() else self._sender.exception()
            raise errdefs.Unavailable(f"export stream: the receiver went away: {exc}")

    # called in the worker thread
    def write(self, data: bytes | bytearray | memoryview) -> int:
        if not data:
            return 0
        asyncio.run_coroutine_threadsafe(self._put(bytes(data)), self._loop).result()
        return len(data)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    async def close(self, ok: bool) -> None:
        """End the stream: after everything was sent when ``ok``, at once otherwise (the
        client then sees the archive end early and fails)."""
        assert self._sender is not None
        if ok:
            try:
                await self._put(None)
                await self._sender
                return
            except (EOFError, errdefs.Unavailable) as exc:
                raise errdefs.Unavailable(f"export stream: {exc}") from None
        self._sender.cancel()
        await asyncio.gather(self._sender, return_exceptions=True)


# --- Any <-> objects -----------------------------------------------------------------------


def from_any(a: Any, get_stream: Any) -> Any | None:
    """The transfer object an archive-stream ``Any`` stands for (its stream looked up with
    ``get_stream(id)``), or None for other types."""
    name = type_name(a)
    if name == IMPORT_STREAM_TYPE:
        m = unpack_as(a, _pb().ImageImportStream)
        if m.force_compress:
            raise errdefs.NotImplemented_("image import: force_compress is not supported")
        return ImageImportStream(
            stream=get_stream(m.stream),
            stream_id=m.stream,
            media_type=m.media_type,
            force_compress=m.force_compress,
        )
    if name == EXPORT_STREAM_TYPE:
        from pycontainerd.core.transfer import proto as tproto

        e = unpack_as(a, _pb().ImageExportStream)
        return ImageExportStream(
            stream=get_stream(e.stream),
            stream_id=e.stream,
            media_type=e.media_type,
            platforms=[tproto.platform_from_proto(p) for p in e.platforms],
            all_platforms=e.all_platforms,
            skip_compatibility_manifest=e.skip_compatibility_manifest,
            skip_non_distributable=e.skip_non_distributable,
        )
    return None


def to_any(obj: ImageImportStream | ImageExportStream) -> Any:
    return pack(obj.to_proto())


__all__ = ["ImageExportStream", "ImageImportStream", "from_any", "to_any"]
