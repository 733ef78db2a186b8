"""Stdio of CRI containers and execs over FIFOs (containerd's ``internal/cri/io``
``container_io.go`` and ``exec_io.go``).

:class:`ContainerIO`: the FIFO set of a container, made at CreateContainer in its volatile
directory. From StartContainer on, what the container writes is copied into the CRI log file
(:mod:`.logger`) and to every attached client; attached clients' stdin goes to the container's
stdin FIFO (closed after the first client with ``stdin_once``).

:class:`ExecIO`: the FIFOs of one exec; its output goes to the caller's streams (ExecSync
buffers, a streaming client).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from pycontainerd.core.runtime import cio
from pycontainerd.plugins.cri.io.logger import STDERR, STDOUT, LineWriter, LogFile

log = logging.getLogger(__name__)

#: how long to wait for the shim to open a stdin FIFO's read end
STDIN_OPEN_TIMEOUT = 10.0


def fifo_dir(volatile_root: str) -> str:
    return os.path.join(volatile_root, "io")


def find_fifos(volatile_root: str, id_: str, *, stdin: bool, tty: bool) -> cio.FIFOSet | None:
    """The FIFO set made earlier for container ``id_`` (after a restart), or None."""
    base = fifo_dir(volatile_root)
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return None
    for entry in entries:
        d = os.path.join(base, entry)
        out = os.path.join(d, f"{id_}-stdout")
        if not os.path.exists(out):
            continue
        err = os.path.join(d, f"{id_}-stderr")
        inp = os.path.join(d, f"{id_}-stdin")
        return cio.FIFOSet(
            id=id_,
            dir=d,
            stdin=inp if stdin and os.path.exists(inp) else "",
            stdout=out,
            stderr=err if not tty and os.path.exists(err) else "",
            terminal=tty,
        )
    return None


class _Subscriber:
    """One attached client's output streams, fed through a queue (writes are async)."""

    def __init__(self, stdout: Any, stderr: Any, tty: bool) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.tty = tty
        self.queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def put(self, stream: str, data: bytes) -> None:
        self.queue.put_nowait((stream, data))

    async def run(self) -> None:
        while (item := await self.queue.get()) is not None:
            stream, data = item
            target = self.stdout if stream == STDOUT or self.tty else self.stderr
            if target is None:
                continue
            try:
                await target.write(data)
            except Exception as e:  # noqa: BLE001 - a gone client ends its own copy only
                log.debug("attach output ended: %s", e)
                return


@attrs.define(eq=False, kw_only=True)
class ContainerIO:
    id: str
    fifos: cio.FIFOSet
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    max_line: int = 16384
    _log: LogFile | None = None
    _writers: dict[str, LineWriter] = attrs.Factory(dict)
    _readers: list[Awaitable[None]] = attrs.Factory(list)
    _subscribers: set[_Subscriber] = attrs.Factory(set)
    _stdin_writer: asyncio.StreamWriter | None = None
    _stdin_task: asyncio.Task[None] | None = None
    _stdin_closed: bool = False
    _output_done: asyncio.Event = attrs.Factory(asyncio.Event)
    _started: bool = False

    @classmethod
    def create(
        cls,
        id_: str,
        volatile_root: str,
        *,
        tty: bool,
        stdin: bool,
        stdin_once: bool = False,
        max_line: int = 16384,
    ) -> ContainerIO:
        """Make the FIFOs (blocking)."""
        fifos = cio.new_fifo_set_in_dir(
            fifo_dir(volatile_root), id_, terminal=tty, stdin=stdin, stdout=True, stderr=True
        )
        return cls(
            id=id_, fifos=fifos, tty=tty, stdin=stdin, stdin_once=stdin_once, max_line=max_line
        )

    @property
    def started(self) -> bool:
        return self._started

    async def start(self, log_path: str) -> None:
        """Open the log file (when there is a path) and begin copying output. Call before the
        task is started, so nothing it writes is lost."""
        if self._started:
            return
        if log_path:
            self._log = await asyncio.to_thread(LogFile(log_path).open)
        try:
            for stream, path in ((STDOUT, self.fifos.stdout), (STDERR, self.fifos.stderr)):
                if not path:
                    continue
                writer = LineWriter(stream, self._log or LogFile(""), self.max_line)
                self._writers[stream] = writer
                self._readers.append(await cio.open_reader(path, self._sink(stream, writer)))
        except BaseException:
            await self.close()
            raise
        self._started = True
        asyncio.get_running_loop().create_task(self._watch_output(), name=f"cri io {self.id[:12]}")

    def _sink(self, stream: str, writer: LineWriter) -> Callable[[bytes], None]:
        def write(data: bytes) -> None:
            writer.feed(data)
            for sub in list(self._subscribers):
                sub.put(stream, data)

        return write

    async def _watch_output(self) -> None:
        try:
            for r in self._readers:
                with contextlib.suppress(asyncio.CancelledError):
                    await r
        finally:
            for w in self._writers.values():
                w.close()
            for sub in list(self._subscribers):
                sub.queue.put_nowait(None)
            self._output_done.set()

    def open_stdin(self) -> None:
        """Open the stdin FIFO for writing in the background (after the task exists, when the
        shim holds the read end), so the container's stdin stays open."""
        if not self.fifos.stdin or self._stdin_task is not None:
            return

        async def opener() -> None:
            try:
                self._stdin_writer = await cio.open_writer(
                    self.fifos.stdin, timeout=STDIN_OPEN_TIMEOUT
                )
            except (OSError, TimeoutError) as e:
                log.warning("failed to open stdin of container %s: %s", self.id, e)

        self._stdin_task = asyncio.get_running_loop().create_task(
            opener(), name=f"cri stdin {self.id[:12]}"
        )

    async def wait_output(self, timeout: float | None = None) -> None:
        """Until the container's output streams have ended."""
        if not self._started:
            return
        async with asyncio.timeout(timeout):
            await self._output_done.wait()

    async def attach(self, stdin: Any, stdout: Any, stderr: Any) -> None:
        """Copy the container's output to ``stdout``/``stderr`` and ``stdin`` to it, until
        the output ends (the container exited) or the client's stdin ends."""
        sub = _Subscriber(stdout, stderr, self.tty)
        self._subscribers.add(sub)
        sub.task = asyncio.get_running_loop().create_task(sub.run())
        waits: list[asyncio.Future[Any]] = [sub.task]
        if stdin is not None and self.stdin:
            waits.append(asyncio.ensure_future(self._copy_stdin(stdin)))
        try:
            if self._output_done.is_set():
                sub.queue.put_nowait(None)
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._subscribers.discard(sub)
            for w in waits:
                if not w.done():
                    w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _copy_stdin(self, stdin: Any) -> None:
        if self._stdin_task is not None:
            await self._stdin_task
        writer = self._stdin_writer
        if writer is None or self._stdin_closed:
            return
        while True:
            data = await stdin.read(32 * 1024)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if self.stdin_once:
            self._stdin_closed = True
            writer.close()

    async def reopen_log(self) -> None:
        if self._log is None:
            return
        await asyncio.to_thread(self._log.reopen)

    async def close(self) -> None:
        """Stop copying, close the log file and stdin; the FIFOs stay (see :meth:`remove`)."""
        for r in self._readers:
            if isinstance(r, asyncio.Task):
                r.cancel()
        for r in self._readers:
            if isinstance(r, asyncio.Task):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await r
        self._readers.clear()
        if self._stdin_task is not None and not self._stdin_task.done():
            self._stdin_task.cancel()
        if self._stdin_writer is not None:
            with contextlib.suppress(Exception):
                self._stdin_writer.close()
            self._stdin_writer = None
        for w in self._writers.values():
            w.close()
        if self._log is not None:
            self._log.close()

    async def remove(self) -> None:
        await self.close()
        await asyncio.to_thread(self.fifos.close)


@attrs.define(eq=False, kw_only=True)
class ExecIO:
    """FIFOs of one exec and the copies to the caller's streams."""

    fifos: cio.FIFOSet
    _readers: list[Awaitable[None]] = attrs.Factory(list)
    _stdin_task: asyncio.Task[None] | None = None

    @classmethod
    def create(
        cls, volatile_root: str, exec_id: str, *, tty: bool, stdin: bool, stdout: bool, stderr: bool
    ) -> ExecIO:
        fifos = cio.new_fifo_set_in_dir(
            fifo_dir(volatile_root),
            exec_id,
            terminal=tty,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
        )
        return cls(fifos=fifos)

    async def start_output(
        self, stdout: Callable[[bytes], Any] | None, stderr: Callable[[bytes], Any] | None
    ) -> None:
        """Begin copying the exec's output into the given callbacks (before Exec)."""
        if self.fifos.stdout and stdout is not None:
            self._readers.append(await cio.open_reader(self.fifos.stdout, stdout))
        if self.fifos.stderr and stderr is not None:
            self._readers.append(await cio.open_reader(self.fifos.stderr, stderr))

    def start_input(self, stdin: Any, on_eof: Callable[[], Awaitable[None]] | None = None) -> None:
        """Copy ``stdin`` (an InputStream) into the exec's stdin once the shim opened it;
        close it at the end of input (the process sees EOF), then call ``on_eof``."""
        if not self.fifos.stdin or stdin is None:
            return

        async def copy() -> None:
            try:
                writer = await cio.open_writer(self.fifos.stdin, timeout=STDIN_OPEN_TIMEOUT)
            except (OSError, TimeoutError) as e:
                log.warning("failed to open exec stdin: %s", e)
                return
            try:
                while True:
                    data = await stdin.read(32 * 1024)
                    if not data:
                        break
                    writer.write(data)
                    await writer.drain()
            except (OSError, ConnectionError) as e:
                log.debug("exec stdin ended: %s", e)
            finally:
                writer.close()
            if on_eof is not None:
                with contextlib.suppress(Exception):
                    await on_eof()

        self._stdin_task = asyncio.get_running_loop().create_task(copy(), name="cri exec stdin")

    async def wait_output(self, timeout: float | None = None) -> bool:
        """Until the output streams have ended; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                for r in self._readers:
                    await r
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        for r in self._readers:
            if isinstance(r, asyncio.Task) and not r.done():
                r.cancel()
        for r in self._readers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await r
        if self._stdin_task is not None and not self._stdin_task.done():
            self._stdin_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._stdin_task
        await asyncio.to_thread(self.fifos.close)
