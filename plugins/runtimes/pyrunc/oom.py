"""OOM notification for a container's cgroup v1 memory controller.

An eventfd registered on ``memory.oom_control`` through ``cgroup.event_control`` becomes
readable on every OOM in the cgroup (and once more when the cgroup is removed, which is told
apart by the cgroup directory being gone). cgroup v2 (``memory.events``) is not watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

import attrs

log = logging.getLogger(__name__)

CGROUP_V1_MEMORY = "/sys/fs/cgroup/memory"


def memory_cgroup_of(pid: int) -> str | None:
    """The cgroup v1 memory directory of ``pid``, or None."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            d = os.path.join(CGROUP_V1_MEMORY, path.lstrip("/"))
            return d if os.path.isdir(d) else None
    return None


@attrs.define(eq=False)
class OOMWatcher:
    cgroup: str
    on_oom: Callable[[], None]
    _efd: int = attrs.field(default=-1, init=False)
    _loop: asyncio.AbstractEventLoop | None = attrs.field(default=None, init=False)

    @classmethod
    def for_pid(cls, pid: int, on_oom: Callable[[], None]) -> OOMWatcher | None:
        """A running watcher on ``pid``'s memory cgroup, or None where that is not possible."""
        cgroup = memory_cgroup_of(pid)
        if cgroup is None:
            return None
        w = cls(cgroup, on_oom)
        try:
            w._start()
        except OSError as e:
            log.debug("oom events not available for %s: %s", cgroup, e)
            w.close()
            return None
        return w

    def _start(self) -> None:
        self._efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        cfd = os.open(os.path.join(self.cgroup, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            with open(os.path.join(self.cgroup, "cgroup.event_control"), "w") as f:
                f.write(f"{self._efd} {cfd}")
        finally:
            os.close(cfd)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._efd, self._ready)

    def _ready(self) -> None:
        try:
            os.eventfd_read(self._efd)
        except BlockingIOError:
            return
        if not os.path.isdir(self.cgroup):
            self.close()
            return
        self.on_oom()

    def close(self) -> None:
        if self._efd >= 0:
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self._efd)
            os.close(self._efd)
            self._efd = -1
