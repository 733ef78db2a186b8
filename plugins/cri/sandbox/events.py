"""CRI container events (``GetContainerEvents``): a broadcaster that every subscriber gets
every event from. Sandboxes publish CREATED/STARTED/STOPPED/DELETED with the sandbox id as
container id; containers publish theirs. A subscriber that falls more than
:data:`BUFFER` events behind loses the oldest ones (logged), as kubelet re-lists anyway."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import attrs

log = logging.getLogger(__name__)

BUFFER = 1000


@attrs.define(eq=False)
class ContainerEventBroadcaster:
    _queues: set[asyncio.Queue[Any]] = attrs.Factory(set)
    _closed: bool = False

    def publish(self, event: Any) -> None:
        """Hand ``event`` (a ``runtime.v1.ContainerEventResponse``) to every subscriber."""
        for q in list(self._queues):
            if q.full():
                log.warning("cri event subscriber is %d events behind; dropping one", BUFFER)
                q.get_nowait()
            q.put_nowait(event)

    async def subscribe(self) -> AsyncIterator[Any]:
        """Events from now on, until :meth:`close`."""
        q: asyncio.Queue[Any] = asyncio.Queue(BUFFER)
        self._queues.add(q)
        try:
            while not self._closed:
                event = await q.get()
                if event is None:
                    return
                yield event
        finally:
            self._queues.discard(q)

    def close(self) -> None:
        self._closed = True
        for q in list(self._queues):
            if q.full():
                q.get_nowait()
            q.put_nowait(None)
