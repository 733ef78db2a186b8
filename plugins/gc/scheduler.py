"""The garbage collection scheduler, as containerd's ``io.containerd.gc.v1.scheduler``.

It counts metadata mutations and deletions (reported by the metadata store after every
committed write) and decides when to collect:

* a deletion (``deletion_threshold`` 0) or ``mutation_threshold`` mutations schedule a
  collection after ``schedule_delay`` when none is scheduled yet; reaching a non-zero
  ``deletion_threshold`` always does;
* after a collection the next one is timed so that collecting takes about ``pause_threshold``
  of the time (``interval = avg/pause_threshold - avg``, average of all collections, at least
  5 ms) and runs only if deletions or enough mutations happened since;
* the first collection runs ``startup_delay`` after start;
* :meth:`Scheduler.schedule_and_wait` triggers one now and waits for it (``sync`` deletes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.gc import Stats

log = logging.getLogger(__name__)

_MINIMUM_GC_TIME = 0.005


class Collector(Protocol):
    def register_mutation_callback(self, fn: Callable[[bool], None]) -> None: ...

    def garbage_collect(self) -> Awaitable[Stats]: ...


@attrs.frozen
class _Event:
    ts: float
    mutation: bool
    dirty: bool


@attrs.define(eq=False)
class Scheduler:
    _collector: Collector
    pause_threshold: float = 0.02
    deletion_threshold: int = 0
    mutation_threshold: int = 100
    schedule_delay: float = 0.0
    startup_delay: float = 0.1
    _events: asyncio.Queue[_Event] = attrs.field(init=False, factory=asyncio.Queue)
    _waiters: list[asyncio.Future[Stats]] = attrs.field(init=False, factory=list)
    collections: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self.pause_threshold = min(max(self.pause_threshold, 0.0), 0.5)
        self.mutation_threshold = max(self.mutation_threshold, 0)
        self.schedule_delay = max(self.schedule_delay, 0.0)
        self.startup_delay = max(self.startup_delay, 0.0)
        self._collector.register_mutation_callback(self._mutation_callback)

    def _mutation_callback(self, dirty: bool) -> None:
        self._events.put_nowait(_Event(time.monotonic(), True, dirty))

    async def schedule_and_wait(self) -> Stats:
        """Trigger a collection now and return its stats (Internal if it failed)."""
        fut: asyncio.Future[Stats] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._events.put_nowait(_Event(time.monotonic(), False, False))
        return await fut

    async def run(self) -> None:
        """The scheduling loop; runs until cancelled."""
        interval = 1.0
        gc_time_sum = 0.0
        triggered = False
        deletions = mutations = 0
        last: float | None = None
        next_at: float | None = None
        if self.startup_delay > 0:
            next_at = time.monotonic() + self.startup_delay

        while True:
            timeout = None if next_at is None else max(0.0, next_at - time.monotonic())
            try:
                # not asyncio.wait_for: on 3.11 it returns the event instead of raising when
                # the loop is cancelled just as one arrives, and the daemon's stop then waits
                # on this loop forever
                async with asyncio.timeout(timeout):
                    e = await self._events.get()
            except TimeoutError:
                if (
                    not triggered
                    and last is not None
                    and deletions == 0
                    and (self.mutation_threshold == 0 or mutations < self.mutation_threshold)
                ):
                    next_at = time.monotonic() + interval
                    continue
            else:
                # an event from before the last collection ended is covered by it, except
                # a trigger whose waiter came while that collection ran: it was not among
                # the waiters the collection answered and needs one that starts after it
                if last is not None and last > e.ts and (e.mutation or not self._waiters):
                    continue
                if e.dirty:
                    deletions += 1
                if e.mutation:
                    mutations += 1
                else:
                    triggered = True
                if (
                    triggered
                    or (self.deletion_threshold > 0 and deletions >= self.deletion_threshold)
                    or (
                        next_at is None
                        and (
                            (self.deletion_threshold == 0 and deletions > 0)
                            or (
                                self.mutation_threshold > 0 and mutations >= self.mutation_threshold
                            )
                        )
                    )
                ):
                    soon = time.monotonic() + self.schedule_delay
                    if next_at is None or next_at > soon:
                        next_at = soon
                continue

            waiters, self._waiters = self._waiters, []
            try:
                stats = await self._collector.garbage_collect()
            except asyncio.CancelledError:
                for w in waiters:
                    w.cancel()
                raise
            except Exception as exc:
                log.error("garbage collection failed: %s", exc)
                now = time.monotonic()
                retry = (
                    (next_at - last + 1.0)
                    if (last is not None and next_at)
                    else self.schedule_delay
                )
                next_at = now + retry
                last = now
                for w in waiters:
                    if not w.done():
                        w.set_exception(errdefs.Internal(f"gc failed: {exc}"))
                continue
            last = time.monotonic()
            self.collections += 1
            gc_time_sum += stats.elapsed()
            log.debug("garbage collected in %.3fs", stats.elapsed())
            triggered = False
            deletions = mutations = 0
            if self.pause_threshold > 0:
                avg = max(gc_time_sum / self.collections, _MINIMUM_GC_TIME)
                interval = avg / self.pause_threshold - avg
            next_at = last + interval
            for w in waiters:
                if not w.done():
                    w.set_result(stats)
