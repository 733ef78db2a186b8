"""A bounded per-stream receive buffer, shared by the client and the server.

The connection's reader task puts frames in; one consumer takes them out. When the buffer is
full the reader waits a short while (stalling the connection, as ttrpc does) and then gives
up on that stream rather than on the whole connection.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Generic, TypeVar

T = TypeVar("T")

#: Messages buffered per stream (ttrpc's ``streamRecvBufferSize``).
DEFAULT_LIMIT = 64
#: How long a full buffer may stall the reader before the stream is failed.
FULL_WAIT = 1.0


class Closed(Exception):
    """The inbox is closed and empty."""


class Inbox(Generic[T]):
    __slots__ = ("_items", "_limit", "_closed", "_error", "_readable", "_writable")

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._items: collections.deque[T] = collections.deque()
        self._limit = limit
        self._closed = False
        self._error: BaseException | None = None
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, item: T, wait: float = FULL_WAIT) -> bool:
        """Append ``item``; False when the buffer stayed full for ``wait`` seconds or the inbox
        is closed."""
        if self._closed:
            return False
        if len(self._items) >= self._limit:
            try:
                async with asyncio.timeout(wait):
                    while len(self._items) >= self._limit and not self._closed:
                        self._writable.clear()
                        await self._writable.wait()
            except TimeoutError:
                return False
            if self._closed:
                return False
        self._items.append(item)
        self._readable.set()
        return True

    def close(self, error: BaseException | None = None) -> None:
        """No more items will come. With ``error``, :meth:`get` raises it once drained."""
        if self._closed:
            return
        self._closed = True
        self._error = error
        self._readable.set()
        self._writable.set()

    def fail(self, error: BaseException) -> None:
        """Close and drop what is buffered: :meth:`get` raises ``error`` at once."""
        self._items.clear()
        if self._closed:
            self._error = error
            return
        self.close(error)

    async def get(self) -> T:
        """The next item; raises the close error, or :class:`Closed`, at the end."""
        while not self._items:
            if self._closed:
                if self._error is not None:
                    raise self._error
                raise Closed()
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        self._writable.set()
        return item
