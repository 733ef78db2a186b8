"""A container process's stdio, as containerd hands it to a shim: FIFO paths (or ``file://``
URIs) and, for terminals, the pty master runc sends over a console socket.

Without a terminal, stdout and stderr are opened here and given to runc as they are; stdin
goes through a pipe the shim copies into, so CloseIO can end it. With a terminal the shim
copies the stdin FIFO into the pty master and the master into the stdout FIFO.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat
from urllib.parse import urlparse

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.runc import ConsoleSocket, Stdio, resize_console

log = logging.getLogger(__name__)

CHUNK = 32 * 1024


async def _wait_fd(fd: int, *, write: bool, wake: asyncio.Future[None] | None = None) -> None:
    """Until ``fd`` is readable (writable), or ``wake`` is done."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def ready(*_: object) -> None:
        if not fut.done():
            fut.set_result(None)

    if write:
        loop.add_writer(fd, ready)
    else:
        loop.add_reader(fd, ready)
    if wake is not None:
        wake.add_done_callback(ready)
    try:
        await fut
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)
        if wake is not None:
            wake.remove_done_callback(ready)


async def pump(src: int, dst: int, *, stop: asyncio.Future[None] | None = None) -> None:
    """Copy ``src`` to ``dst`` until EOF (or EIO from a pty whose other side closed). Waits for
    readability before every read: a FIFO with no writer yet reads as EOF, but polls as
    readable only once a writer has come. Once ``stop`` is done, what ``src`` still holds is
    copied and the pump ends at the first read that would wait."""
    os.set_blocking(src, False)
    os.set_blocking(dst, False)
    while True:
        stopping = stop is not None and stop.done()
        if not stopping:
            await _wait_fd(src, write=False, wake=stop)
            stopping = stop is not None and stop.done()
        try:
            data = os.read(src, CHUNK)
        except BlockingIOError:
            if stopping:
                return
            continue
        except OSError as e:
            if e.errno == errno.EIO:
                return
            raise
        if not data:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(dst, view)
            except BlockingIOError:
                await _wait_fd(dst, write=True)
                continue
            view = view[n:]


def _open_output(uri: str) -> int:
    """An output destination: a FIFO path (opened read-write so it never blocks), a plain
    file, or ``file://`` (appended to)."""
    if not uri:
        return os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    if "://" in uri:
        u = urlparse(uri)
        if u.scheme == "file":
            os.makedirs(os.path.dirname(u.path) or "/", exist_ok=True)
            return os.open(u.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        if u.scheme == "fifo":
            uri = u.path
        else:
            raise errdefs.NotImplemented_(f"stdio scheme {u.scheme!r} is not supported")
    try:
        st = os.stat(uri)
    except FileNotFoundError as e:
        raise errdefs.NotFound(f"stdio {uri!r} does not exist") from e
    if stat.S_ISFIFO(st.st_mode):
        return os.open(uri, os.O_RDWR | os.O_CLOEXEC)
    return os.open(uri, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)


def _open_input(uri: str) -> int:
    if uri.startswith("fifo://"):
        uri = uri[len("fifo://") :]
    elif "://" in uri:
        raise errdefs.NotImplemented_(f"stdin {uri!r}: only FIFOs are supported")
    try:
        return os.open(uri, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise errdefs.NotFound(f"stdin {uri!r} does not exist") from e


def _close(fd: int | None) -> None:
    if fd is not None and fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)


@attrs.define(eq=False)
class ProcessIO:
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    #: fds for runc (closed here once runc has them)
    _child: dict[str, int] = attrs.field(factory=dict, init=False)
    _stdin_fifo: int | None = attrs.field(default=None, init=False)
    _stdin_w: int | None = attrs.field(default=None, init=False)
    _stdout: int | None = attrs.field(default=None, init=False)
    _console: ConsoleSocket | None = attrs.field(default=None, init=False)
    _console_task: asyncio.Task[int] | None = attrs.field(default=None, init=False)
    master: int | None = attrs.field(default=None, init=False)
    _tasks: list[asyncio.Task[None]] = attrs.field(factory=list, init=False)
    #: done at CloseIO: the stdin copy drains what the FIFO holds, then closes the pipe
    _stdin_stop: asyncio.Future[None] | None = attrs.field(default=None, init=False)
    #: fds the copy tasks own (closed exactly once: by their task or by close_now)
    _copy_fds: set[int] = attrs.field(factory=set, init=False)

    @property
    def console_socket(self) -> str:
        return self._console.path if self._console is not None else ""

    def prepare(self, work_dir: str | None = None) -> Stdio:
        """Open everything; the stdio to give runc (None for a terminal's). The console
        socket goes in ``work_dir`` (default: the temp dir; a bundle path may be too long
        for a unix socket)."""
        try:
            if self.stdin:
                self._stdin_fifo = _open_input(self.stdin)
            if self.terminal:
                self._stdout = _open_output(self.stdout)
                self._console = ConsoleSocket.new(work_dir)
                self._console_task = asyncio.get_running_loop().create_task(
                    self._console.receive_master(), name="console socket"
                )
                return Stdio()
            if self._stdin_fifo is not None:
                r, w = os.pipe2(os.O_CLOEXEC)
                self._child["stdin"], self._stdin_w = r, w
            self._child["stdout"] = _open_output(self.stdout)
            self._child["stderr"] = _open_output(self.stderr)
        except BaseException:
            self.close_now()
            raise
        return Stdio(
            stdin=self._child.get("stdin"),
            stdout=self._child["stdout"],
            stderr=self._child["stderr"],
        )

    async def started(self) -> None:
        """runc has created the process: drop the child's fds, start copying."""
        for fd in self._child.values():
            _close(fd)
        self._child.clear()
        loop = asyncio.get_running_loop()
        if self.terminal and self._console_task is not None:
            async with asyncio.timeout(10):
                self.master = await self._console_task
            if self._console is not None:
                self._console.close()
            if self._stdin_fifo is not None:
                self._start_copy(loop, self._stdin_fifo, os.dup(self.master))
                self._stdin_fifo = None
            if self._stdout is not None:
                self._start_copy(loop, os.dup(self.master), self._stdout)
                self._stdout = None
        elif self._stdin_fifo is not None and self._stdin_w is not None:
            self._stdin_stop = loop.create_future()
            self._start_copy(loop, self._stdin_fifo, self._stdin_w, stop=self._stdin_stop)
            self._stdin_fifo = None

    def _start_copy(
        self,
        loop: asyncio.AbstractEventLoop,
        src: int,
        dst: int,
        *,
        stop: asyncio.Future[None] | None = None,
    ) -> None:
        """Copy ``src`` to ``dst`` in a task that owns (closes) both: until it ends, or until
        :meth:`close_now` closes them (a task cancelled before it ran closes nothing)."""
        self._copy_fds.update((src, dst))
        self._tasks.append(loop.create_task(self._copy(src, dst, stop), name="stdio copy"))

    async def _copy(self, src: int, dst: int, stop: asyncio.Future[None] | None) -> None:
        try:
            await pump(src, dst, stop=stop)
        except OSError as e:
            log.debug("stdio copy ended: %s", e)
        finally:
            if dst == self._stdin_w:
                self._stdin_w = None
            for fd in (src, dst):
                if fd in self._copy_fds:
                    self._copy_fds.discard(fd)
                    _close(fd)

    def close_stdin(self) -> None:
        """CloseIO: the process sees EOF on stdin."""
        if self.terminal:
            for t in self._tasks[:1] if self.stdin else []:
                t.cancel()
            return
        # what the client wrote before it asked is still in the FIFO (containerd's clients
        # call CloseIO right after their last write): the copy passes it on, then closes
        if self._stdin_stop is not None:
            if not self._stdin_stop.done():
                self._stdin_stop.set_result(None)
            return
        w, self._stdin_w = self._stdin_w, None
        if w is not None:
            _close(w)

    def resize(self, width: int, height: int) -> None:
        if self.master is None:
            raise errdefs.FailedPrecondition("process does not have a terminal")
        resize_console(self.master, width, height)

    async def wait_output(self, timeout: float = 2.0) -> None:
        """After the process exited: let the terminal output drain."""
        out = self._tasks[1:] if (self.terminal and self.stdin) else self._tasks
        if self.terminal and out:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*out, return_exceptions=True)

    def close_now(self) -> None:
        for t in self._tasks:
            t.cancel()
        for fd in self._child.values():
            _close(fd)
        self._child.clear()
        for name in ("_stdin_fifo", "_stdin_w", "_stdout", "master"):
            fd = getattr(self, name)
            setattr(self, name, None)
            if fd not in self._copy_fds:
                _close(fd)
        for fd in self._copy_fds:
            _close(fd)
        self._copy_fds.clear()
        if self._console_task is not None and not self._console_task.done():
            self._console_task.cancel()
        if self._console is not None:
            self._console.close()
            self._console = None
