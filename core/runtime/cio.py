"""Client-side task stdio over FIFOs (containerd ``pkg/cio``).

A client creates a :class:`FIFOSet` (named pipes in a fresh directory), passes the paths in
``Tasks/Create`` or ``Tasks/Exec``, and copies between them and its own streams. The shim opens
the other ends. The read ends are opened ``O_RDONLY|O_NONBLOCK`` before the task is created:
the open does not wait for a writer, and Linux reports no hang-up on a FIFO until a writer
has come and gone, so reading ends exactly when the shim closes its end after the process
exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable

import attrs

#: containerd's default is /run/containerd/fifo
DEFAULT_FIFO_DIR = "/run/pycontainerd/fifo"


@attrs.define(eq=False, kw_only=True)
class FIFOSet:
    """Paths of a process's stdio FIFOs ("" = not connected) and the directory holding them."""

    id: str
    dir: str
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False

    def close(self) -> None:
        """Remove the FIFOs and their directory."""
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def new_fifo_set_in_dir(
    root: str | None,
    id: str,  # noqa: A002
    *,
    terminal: bool = False,
    stdin: bool = False,
    stdout: bool = True,
    stderr: bool = True,
) -> FIFOSet:
    """Make the FIFOs for process ``id`` in a new directory below ``root`` (blocking).
    With a terminal there is no separate stderr, as in containerd."""
    base = root or DEFAULT_FIFO_DIR
    os.makedirs(base, mode=0o700, exist_ok=True)
    d = tempfile.mkdtemp(dir=base)
    paths: dict[str, str] = {}
    try:
        for name, wanted in (
            ("stdin", stdin),
            ("stdout", stdout),
            ("stderr", stderr and not terminal),
        ):
            if wanted:
                p = os.path.join(d, f"{id}-{name}")
                os.mkfifo(p, 0o700)
                paths[name] = p
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise
    return FIFOSet(id=id, dir=d, terminal=terminal, **paths)


class _Sink(asyncio.Protocol):
    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._write(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def open_reader(path: str, write: Callable[[bytes], object]) -> Awaitable[None]:
    """Start copying what arrives on FIFO ``path`` into ``write``; returns an awaitable that
    completes when the writer side has closed (the process's stream ended)."""
    loop = asyncio.get_running_loop()
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    pipe = os.fdopen(fd, "rb", buffering=0)
    try:
        transport, protocol = await loop.connect_read_pipe(lambda: _Sink(write), pipe)
    except BaseException:
        pipe.close()
        raise
    sink: _Sink = protocol  # type: ignore[assignment]

    async def finished() -> None:
        try:
            await sink.done
        finally:
            transport.close()

    return loop.create_task(finished(), name=f"cio reader {path}")


async def open_writer(path: str, *, timeout: float | None = None) -> asyncio.StreamWriter:
    """Open FIFO ``path`` for writing once the shim has opened the read end."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                break
            except OSError as e:  # ENXIO: no reader yet
                if e.errno != 6:
                    raise
                await asyncio.sleep(0.01)
    pipe = os.fdopen(fd, "wb", buffering=0)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, pipe)
    return asyncio.StreamWriter(transport, protocol, None, loop)


@attrs.define(eq=False)
class Capture:
    """Collects a FIFO set's stdout and stderr in memory (tests, ``run`` without a terminal)."""

    fifos: FIFOSet
    stdout: bytearray = attrs.Factory(bytearray)
    stderr: bytearray = attrs.Factory(bytearray)
    _waits: list[Awaitable[None]] = attrs.Factory(list)

    async def start(self) -> Capture:
        if self.fifos.stdout:
            self._waits.append(await open_reader(self.fifos.stdout, self.stdout.extend))
        if self.fifos.stderr:
            self._waits.append(await open_reader(self.fifos.stderr, self.stderr.extend))
        return self

    async def wait(self, timeout: float | None = None) -> None:
        """Until every stream has ended."""
        async with asyncio.timeout(timeout):
            for w in self._waits:
                await w

    async def close(self) -> None:
        for w in self._waits:
            if isinstance(w, asyncio.Task):
                w.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await w
        self.fifos.close()
