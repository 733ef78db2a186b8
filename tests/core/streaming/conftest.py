"""A real (local) runtime behind the streaming server: exec runs host processes, a tty is a
real pty, attach talks to a ``cat`` per container, port-forward dials 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import termios
from collections.abc import AsyncIterator, Sequence

import pytest

from pycontainerd.core.streaming.server import Config, StreamServer
from pycontainerd.core.streaming.types import (
    DuplexStream,
    InputStream,
    OutputStream,
    ResizeQueue,
    TerminalSize,
)


async def _pump_in(src: InputStream, write: object, close: object) -> None:
    try:
        while data := await src.read(65536):
            await write(data)  # type: ignore[operator]
    except (ConnectionError, BrokenPipeError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            await close()  # type: ignore[operator]


async def _pump_out(reader: asyncio.StreamReader, dst: OutputStream | None) -> None:
    while data := await reader.read(65536):
        if dst is not None:
            with contextlib.suppress(ConnectionError):
                await dst.write(data)


class LocalRuntime:
    """Implements core.streaming.types.Runtime against this host."""

    def __init__(self) -> None:
        self.resizes: list[TerminalSize] = []
        self.resized = asyncio.Event()
        self.calls: list[tuple[str, str]] = []

    async def exec(
        self,
        container_id: str,
        cmd: Sequence[str],
        stdin: InputStream | None,
        stdout: OutputStream | None,
        stderr: OutputStream | None,
        tty: bool,
        resize: ResizeQueue | None,
    ) -> int:
        self.calls.append(("exec", container_id))
        if container_id == "broken":
            raise RuntimeError('container "broken" is not running')
        if tty:
            return await self._exec_tty(cmd, stdin, stdout, resize)
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        tasks = []
        if stdin is not None:
            assert proc.stdin is not None
            pin = proc.stdin

            async def write(data: bytes) -> None:
                pin.write(data)
                await pin.drain()

            async def close() -> None:
                pin.close()

            tasks.append(asyncio.create_task(_pump_in(stdin, write, close)))
        assert proc.stdout is not None and proc.stderr is not None
        outs = [_pump_out(proc.stdout, stdout), _pump_out(proc.stderr, stderr)]
        try:
            await asyncio.gather(*outs)
            code = await proc.wait()
        except asyncio.CancelledError:
            proc.kill()
            await proc.wait()
            raise
        for t in tasks:
            t.cancel()
        return code

    async def _exec_tty(
        self,
        cmd: Sequence[str],
        stdin: InputStream | None,
        stdout: OutputStream | None,
        resize: ResizeQueue | None,
    ) -> int:
        master, slave = os.openpty()
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
        )
        os.close(slave)
        loop = asyncio.get_running_loop()
        os.set_blocking(master, False)

        async def resize_loop() -> None:
            assert resize is not None
            async for size in resize:
                fcntl.ioctl(
                    master, termios.TIOCSWINSZ, struct.pack("HHHH", size.height, size.width, 0, 0)
                )
                self.resizes.append(size)
                self.resized.set()

        async def write(data: bytes) -> None:
            os.write(master, data)

        async def close() -> None:
            pass

        tasks = []
        if resize is not None:
            tasks.append(asyncio.create_task(resize_loop()))
        if stdin is not None:
            tasks.append(asyncio.create_task(_pump_in(stdin, write, close)))
        out_done = loop.create_future()

        def readable() -> None:
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(master)
                if not out_done.done():
                    out_done.set_result(None)
                return
            if stdout is not None:
                chunks.put_nowait(data)

        chunks: asyncio.Queue[bytes] = asyncio.Queue()
        loop.add_reader(master, readable)

        async def forward() -> None:
            while True:
                data = await chunks.get()
                if stdout is not None:
                    with contextlib.suppress(ConnectionError):
                        await stdout.write(data)

        fwd = asyncio.create_task(forward())
        code = await proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(out_done, 2)
        loop.remove_reader(master)
        while not chunks.empty():
            await asyncio.sleep(0.01)
        fwd.cancel()
        os.close(master)
        for t in tasks:
            t.cancel()
        return code

    async def attach(
        self,
        container_id: str,
        stdin: InputStream | None,
        stdout: OutputStream | None,
        stderr: OutputStream | None,
        tty: bool,
        resize: ResizeQueue | None,
    ) -> None:
        self.calls.append(("attach", container_id))
        # the "container" is a cat: what goes in comes back out until stdin ends
        code = await self.exec(container_id, ["cat"], stdin, stdout, stderr, tty, resize)
        if code != 0:
            raise RuntimeError(f"attach ended with {code}")

    async def port_forward(self, pod_sandbox_id: str, port: int, stream: DuplexStream) -> None:
        self.calls.append(("portforward", pod_sandbox_id))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def upstream() -> None:
            while data := await stream.read(65536):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

        up = asyncio.create_task(upstream())
        try:
            while data := await reader.read(65536):
                await stream.write(data)
        finally:
            up.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@pytest.fixture
def runtime() -> LocalRuntime:
    return LocalRuntime()


@pytest.fixture
def server_config() -> Config:
    return Config(address="127.0.0.1", port=0)


@pytest.fixture
async def server(runtime: LocalRuntime, server_config: Config) -> AsyncIterator[StreamServer]:
    srv = StreamServer(server_config, runtime)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    """A TCP echo server on 127.0.0.1 (uppercases nothing: bytes back as they came)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        await srv.wait_closed()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
