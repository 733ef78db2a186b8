"""A blocking, seekable file over an async content reader, for the archive code that runs in
worker threads (tar writing, layer apply) while the content store lives on the event loop.

Reads hop to the loop with ``run_coroutine_threadsafe``; an :class:`io.BufferedReader` in front
keeps those hops to one per ``buffer_size`` bytes. Never use it on the loop's own thread.
"""

from __future__ import annotations

import asyncio
import io
from typing import BinaryIO

from pycontainerd.core.content.types import ReaderAt

#: Bytes fetched from the store per hop to the event loop.
BUFFER_SIZE = 4 << 20


class _RawBlob(io.RawIOBase):
    def __init__(self, ra: ReaderAt, loop: asyncio.AbstractEventLoop) -> None:
        self._ra = ra
        self._loop = loop
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._ra.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = len(b)
        if n == 0 or self._pos >= self._ra.size:
            return 0
        fut = asyncio.run_coroutine_threadsafe(self._ra.read_at(self._pos, n), self._loop)
        data = fut.result()
        got = len(data)
        memoryview(b)[:got] = data
        self._pos += got
        return got


def blob_file(
    ra: ReaderAt, loop: asyncio.AbstractEventLoop, buffer_size: int = BUFFER_SIZE
) -> BinaryIO:
    """A buffered, seekable, blocking reader of ``ra`` for use in a worker thread; ``loop`` is
    the loop ``ra`` belongs to. Closing it does not close ``ra``."""
    return io.BufferedReader(_RawBlob(ra, loop), buffer_size=buffer_size)  # type: ignore[return-value]
