"""The shim's reaper: it is a child subreaper and reaps every child with ``waitpid(-1)``.

Container processes (reparented to the shim when runc exits) and the shim's own asyncio
subprocesses (runc itself) are all reaped here, on SIGCHLD, in the event loop. The reaper
doubles as asyncio's child watcher, so ``asyncio.create_subprocess_exec`` still learns the
exit of the processes it started; every other exit goes to the subscribers (the task service)
with its time. This is containerd's ``reaper.Default`` plus go-runc's ``Monitor``.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36

ExitCallback = Callable[[int, int, float], None]


def set_child_subreaper() -> None:
    """prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are reparented to us."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


def exit_status(status: int) -> int:
    """A wait status as containerd reports it: the exit code, or 128 + the signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 0


class Reaper(asyncio.AbstractChildWatcher):
    """Reaps all children on SIGCHLD; a child watcher for asyncio's subprocesses."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        # asyncio registers a subprocess synchronously right after fork, before the loop
        # can run reap(), so a handler is always in place when its exit comes
        self._handlers: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self._subscribers: list[ExitCallback] = []

    # -- subscribers (container processes)

    def subscribe(self, callback: ExitCallback) -> None:
        """``callback(pid, exit_status, exited_at)`` for every exit asyncio did not ask for."""
        self._subscribers.append(callback)

    # -- AbstractChildWatcher

    def add_child_handler(  # type: ignore[override]
        self, pid: int, callback: Callable[..., Any], *args: Any
    ) -> None:
        self._handlers[pid] = (callback, args)

    def remove_child_handler(self, pid: int) -> bool:
        return self._handlers.pop(pid, None) is not None

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        if self._loop is not None and loop is None and self._handlers:
            log.warning("reaper detached with %d pending child handlers", len(self._handlers))
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGCHLD)
        self._loop = loop
        if loop is not None:
            loop.add_signal_handler(signal.SIGCHLD, self.reap)
            loop.call_soon(self.reap)  # children that exited before we listened

    def close(self) -> None:
        self.attach_loop(None)

    def is_active(self) -> bool:
        return self._loop is not None and self._loop.is_running()

    def __enter__(self) -> Reaper:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    # -- reaping

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            now = time.time()
            handler = self._handlers.pop(pid, None)
            if handler is not None:
                callback, args = handler
                callback(pid, os.waitstatus_to_exitcode(status), *args)
                continue
            code = exit_status(status)
            log.debug("reaped pid=%d status=%d", pid, code)
            for sub in self._subscribers:
                try:
                    sub(pid, code, now)
                except Exception:  # noqa: BLE001 - one subscriber must not stop reaping
                    log.exception("exit subscriber failed for pid %d", pid)


def install(loop: asyncio.AbstractEventLoop) -> Reaper:
    """Become a child subreaper and make a :class:`Reaper` the loop's child watcher."""
    set_child_subreaper()
    reaper = Reaper()
    asyncio.set_child_watcher(reaper)
    reaper.attach_loop(loop)
    return reaper
