"""pyctr's side of a process's stdio (containerd ``pkg/cio`` as ``ctr`` uses it).

:func:`attach` makes the FIFOs (core/runtime/cio), copies their output to our stdout and
stderr, and, once the task or exec has been created (the shim then holds the read end of
the stdin FIFO), copies our stdin into it; at end of input it asks the daemon to close the
process's stdin (``Tasks/CloseIO``), as ``ctr`` does. With a terminal there is no stderr
FIFO, the local terminal goes into raw mode and window size changes become ``ResizePty``.

Stdin is read by a daemon thread with blocking reads, so any kind of fd works (terminal,
pipe, regular file, /dev/null) and a process that never reads does not keep pyctr alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from pycontainerd.core.runtime import cio as core_cio

#: How long to wait for the output streams to drain after the process has exited (normally
#: EOF comes at once; the bound matters only when a leftover process holds a FIFO open).
DRAIN_TIMEOUT = 10.0


def _write_all(fd: int) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                import select

                select.select([], [fd], [])
                continue
            except BrokenPipeError:
                return
            view = view[n:]

    return write


@attrs.define(eq=False)
class RawTerminal:
    """The local terminal in raw mode until :meth:`restore`."""

    fd: int
    _saved: Any = None

    @classmethod
    def enter(cls, fd: int = 0) -> RawTerminal | None:
        if not os.isatty(fd):
            return None
        import termios
        import tty

        t = cls(fd, termios.tcgetattr(fd))
        tty.setraw(fd, termios.TCSANOW)
        return t

    def restore(self) -> None:
        if self._saved is not None:
            import termios

            with contextlib.suppress(OSError):
                termios.tcsetattr(self.fd, termios.TCSANOW, self._saved)
            self._saved = None


def terminal_size(fd: int = 0) -> tuple[int, int] | None:
    """(width, height) of the terminal on ``fd``, or of our stdout, or None."""
    for f in (fd, 1):
        try:
            size = os.get_terminal_size(f)
            return size.columns, size.lines
        except OSError:
            continue
    return None


@attrs.define(eq=False)
class Attached:
    """The FIFOs of one process and the copies between them and our stdio."""

    fifos: core_cio.FIFOSet
    _readers: list[Awaitable[None]] = attrs.Factory(list)
    _stdin_thread: threading.Thread | None = None
    _raw: RawTerminal | None = None
    _resize_installed: bool = False

    @property
    def terminal(self) -> bool:
        return self.fifos.terminal

    def start_stdin(
        self, loop: asyncio.AbstractEventLoop, close_stdin: Callable[[], Awaitable[Any]]
    ) -> None:
        """Copy our stdin into the stdin FIFO (call after the process has been created);
        at end of input run ``close_stdin`` on ``loop``."""
        path = self.fifos.stdin
        if not path:
            return

        def copy() -> None:
            try:
                fifo = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            except OSError:
                return
            write = _write_all(fifo)
            try:
                while True:
                    try:
                        data = os.read(0, 32 * 1024)
                    except OSError:
                        break
                    if not data:
                        break
                    write(data)
            finally:
                os.close(fifo)
            with contextlib.suppress(RuntimeError):  # the loop has closed: we are done anyway
                asyncio.run_coroutine_threadsafe(_quietly(close_stdin()), loop)

        self._stdin_thread = threading.Thread(target=copy, name="pyctr stdin", daemon=True)
        self._stdin_thread.start()

    def enter_raw(self) -> None:
        if self.terminal and self._raw is None:
            self._raw = RawTerminal.enter(0)

    async def handle_resize(
        self, loop: asyncio.AbstractEventLoop, resize: Callable[[int, int], Awaitable[Any]]
    ) -> None:
        """Send the current size now (awaited: the process sees it from its first
        instruction) and on every SIGWINCH."""
        if not self.terminal:
            return
        size = terminal_size(0)
        if size is not None:
            await _quietly(resize(*size))

        def send() -> None:
            size = terminal_size(0)
            if size is not None:
                loop.create_task(_quietly(resize(*size)))

        if not self._resize_installed:
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                loop.add_signal_handler(signal.SIGWINCH, send)
                self._resize_installed = True

    async def drain(self, timeout: float | None = None) -> None:
        """Until the output streams have ended (the shim closed them), at most ``timeout``
        (default :data:`DRAIN_TIMEOUT`)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT if timeout is None else timeout):
                for r in self._readers:
                    await r

    async def close(self) -> None:
        if self._resize_installed:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGWINCH)
            self._resize_installed = False
        for r in self._readers:
            if isinstance(r, asyncio.Task) and not r.done():
                r.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await r
        if self._raw is not None:
            self._raw.restore()
            self._raw = None
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        self.fifos.close()


async def _quietly(aw: Awaitable[Any]) -> None:
    with contextlib.suppress(Exception):
        await aw


async def attach(
    fifo_dir: str | None,
    id: str,
    *,
    terminal: bool = False,  # noqa: A002
) -> Attached:
    """Make the FIFOs for process ``id`` and start copying their output to our stdout and
    stderr. The paths go into ``Tasks/Create`` or ``Tasks/Exec``."""
    fifos = await asyncio.to_thread(
        core_cio.new_fifo_set_in_dir, fifo_dir or None, id, terminal=terminal, stdin=True
    )
    a = Attached(fifos)
    try:
        a._readers.append(await core_cio.open_reader(fifos.stdout, _write_all(1)))
        if fifos.stderr:
            a._readers.append(await core_cio.open_reader(fifos.stderr, _write_all(2)))
    except BaseException:
        await a.close()
        raise
    return a


def forward_signals(
    loop: asyncio.AbstractEventLoop, kill: Callable[[int], Awaitable[Any]]
) -> Callable[[], None]:
    """Forward the signals a user sends to pyctr to the process (``Tasks/Kill``); returns a
    function that stops forwarding."""
    sigs = [
        signal.SIGINT,
        signal.SIGTERM,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGUSR1,
        signal.SIGUSR2,
    ]
    installed = []

    def forward(sig: int) -> None:
        loop.create_task(_quietly(kill(sig)))

    for s in sigs:
        try:
            loop.add_signal_handler(s, forward, int(s))
            installed.append(s)
        except (ValueError, RuntimeError, NotImplementedError):
            continue

    def stop() -> None:
        for s in installed:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(s)

    return stop
