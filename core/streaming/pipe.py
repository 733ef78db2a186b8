"""A bounded in-memory byte pipe: the transport feeds it, the runtime reads it."""

from __future__ import annotations

import asyncio

HIGH_WATER = 1 << 20


class Pipe:
    """``InputStream`` fed by a connection's reader; :meth:`feed` waits while the reader lags."""

    def __init__(self, high_water: int = HIGH_WATER) -> None:
        self._buf = bytearray()
        self._eof = False
        self._high_water = high_water
        self._readable = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._buf

    def feed_nowait(self, data: bytes) -> None:
        """Buffer ``data`` without waiting (the caller applies backpressure with
        :meth:`wait_space`)."""
        if self._eof or not data:
            return
        self._buf += data
        self._readable.set()
        if len(self._buf) >= self._high_water:
            self._space.clear()

    async def wait_space(self) -> None:
        """Until the reader has drained the buffer below the high-water mark (or EOF)."""
        await self._space.wait()

    async def feed(self, data: bytes) -> None:
        self.feed_nowait(data)
        if not self._space.is_set():
            await self._space.wait()

    def feed_eof(self) -> None:
        self._eof = True
        self._readable.set()
        self._space.set()

    async def read(self, n: int = -1) -> bytes:
        while not self._buf and not self._eof:
            self._readable.clear()
            await self._readable.wait()
        if n < 0 or n >= len(self._buf):
            out = bytes(self._buf)
            self._buf.clear()
        else:
            out = bytes(self._buf[:n])
            del self._buf[:n]
        if len(self._buf) < self._high_water:
            self._space.set()
        return out
