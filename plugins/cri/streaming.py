"""The CRI's streaming server wiring (containerd's ``internal/cri/server/streaming.go``):
a :class:`~pycontainerd.core.streaming.server.StreamServer` configured from the server
config (``stream_server_address``, ``stream_server_port``, ``stream_idle_timeout``, TLS),
and :class:`CRIStreamRuntime`, the streaming ``Runtime``:

- exec: a task exec with FIFOs in the container (tty and resize included);
- attach: the container's own IO (output fan-out, stdin);
- port-forward: a TCP connection to ``127.0.0.1:<port>`` opened inside the pod's network
  namespace (the socket is created in a thread that entered the netns; it keeps that
  namespace after the thread leaves), copied both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Sequence
from typing import Any

import attrs

from pycontainerd.core import durations, errdefs

log = logging.getLogger(__name__)


class _Output:
    """Sync callback -> async OutputStream, in order."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._run())

    def __call__(self, data: bytes) -> None:
        self.queue.put_nowait(bytes(data))

    async def _run(self) -> None:
        while (data := await self.queue.get()) is not None:
            try:
                await self.stream.write(data)
            except Exception as e:  # noqa: BLE001 - the client went away
                log.debug("exec output ended: %s", e)
                return

    async def finish(self) -> None:
        self.queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await self.task


def _connect_in_netns(netns_path: str, port: int) -> socket.socket:
    from pycontainerd.core import netns

    def connect() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(10)
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            raise
        return s

    if not netns_path:
        return connect()
    return netns._run_in_thread(lambda: netns._in_netns(netns_path, connect), "cri portforward")


@attrs.define(eq=False)
class CRIStreamRuntime:
    """core.streaming's Runtime over the CRI service ``c``."""

    c: Any

    def _manager(self) -> Any:
        m = getattr(self.c, "container_manager", None)
        if m is None:
            raise errdefs.FailedPrecondition("cri: the container manager is not started")
        return m

    async def exec(
        self,
        container_id: str,
        cmd: Sequence[str],
        stdin: Any,
        stdout: Any,
        stderr: Any,
        tty: bool,
        resize: Any,
    ) -> int:
        out = _Output(stdout) if stdout is not None else None
        err = _Output(stderr) if stderr is not None else None
        try:
            return int(
                await self._manager().exec_process(
                    container_id,
                    list(cmd),
                    stdin=stdin,
                    stdout=out,
                    stderr=err,
                    tty=tty,
                    resize=resize,
                )
            )
        finally:
            for o in (out, err):
                if o is not None:
                    await o.finish()

    async def attach(
        self,
        container_id: str,
        stdin: Any,
        stdout: Any,
        stderr: Any,
        tty: bool,
        resize: Any,
    ) -> None:
        await self._manager().attach(container_id, stdin, stdout, stderr, tty, resize)

    async def port_forward(self, pod_sandbox_id: str, port: int, stream: Any) -> None:
        from pycontainerd.plugins.cri.container import sandboxes

        sb = sandboxes.get(self.c, pod_sandbox_id)
        if not sb.ready:
            raise errdefs.FailedPrecondition(f"sandbox {sb.id!r} is not running")
        netns_path = sb.netns_path
        if not netns_path and sb.pid:
            netns_path = f"/proc/{sb.pid}/ns/net"
        try:
            sock = await asyncio.to_thread(_connect_in_netns, netns_path, port)
        except OSError as e:
            raise errdefs.Unavailable(
                f"failed to connect to localhost:{port} inside namespace {sb.id!r}: {e}"
            ) from None
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)

        async def upstream() -> None:
            try:
                while data := await stream.read(32 * 1024):
                    writer.write(data)
                    await writer.drain()
            finally:
                with contextlib.suppress(OSError):
                    if writer.can_write_eof():
                        writer.write_eof()

        async def downstream() -> None:
            try:
                while data := await reader.read(32 * 1024):
                    await stream.write(data)
            finally:
                with contextlib.suppress(Exception):
                    await stream.close()

        up = asyncio.ensure_future(upstream())
        down = asyncio.ensure_future(downstream())
        try:
            await down
            up.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await up
        finally:
            for t in (up, down):
                t.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def stream_config(server_config: Any) -> Any:
    """core.streaming Config from ``[plugins."io.containerd.grpc.v1.cri"]``."""
    from pycontainerd.core.streaming.server import Config

    idle = 0.0
    if server_config.stream_idle_timeout:
        value = durations.parse(server_config.stream_idle_timeout)
        idle = value.total_seconds() if hasattr(value, "total_seconds") else float(value)
    tls_cert = tls_key = ""
    if server_config.enable_tls_streaming:
        tls_cert = server_config.x509_key_pair_streaming.tls_cert_file
        tls_key = server_config.x509_key_pair_streaming.tls_key_file
    return Config(
        address=server_config.stream_server_address,
        port=int(server_config.stream_server_port or 0),
        tls_cert_file=tls_cert,
        tls_key_file=tls_key,
        stream_idle_timeout=idle,
    )


async def start_stream_server(c: Any) -> Any:
    """Start the streaming server for the CRI service ``c``; returns it."""
    from pycontainerd.core.streaming.server import StreamServer

    server = StreamServer(stream_config(c.server_config), CRIStreamRuntime(c))
    await server.start()
    return server
