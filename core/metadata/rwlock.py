"""A small asyncio readers-writer lock: many operations on a namespaced content store or
snapshotter proceed together (readers), while its backend cleanup after garbage collection
(the writer) runs alone, so cleanup never sees a backend object whose record is not yet
written."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import attrs


@attrs.define(eq=False)
class RWLock:
    _readers: int = 0
    _writer: bool = False
    _waiting_writers: int = 0
    _cond: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[None]:
        cond = self._condition()
        async with cond:
            await cond.wait_for(lambda: not self._writer and not self._waiting_writers)
            self._readers += 1
        try:
            yield
        finally:
            async with cond:
                self._readers -= 1
                cond.notify_all()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[None]:
        cond = self._condition()
        async with cond:
            self._waiting_writers += 1
            try:
                await cond.wait_for(lambda: not self._writer and not self._readers)
            finally:
                self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            async with cond:
                self._writer = False
                cond.notify_all()
