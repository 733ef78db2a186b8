"""exec and attach: Kubernetes' remotecommand protocols, served over WebSocket or SPDY.

Both transports end up in the same shape: optional stdin/stdout/stderr streams, a resize
queue for a tty, and a status writer for the error stream. The runtime runs with those; its
outcome becomes a ``metav1.Status`` (v4+: JSON; earlier: the failure text).

SPDY (what kubelet's clients and crictl use): the client opens one stream per ``streamType``
header (``error`` always, ``stdin``/``stdout``/``stderr`` as requested, ``resize`` for a tty
from v3); the server waits for all of them (stream creation timeout) and then runs.

WebSocket: channels 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize, opened all at once; an
empty message on the lowest writable channel tells the client the streams are ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from aiohttp import web

from pycontainerd.core.streaming import httpstream, spdy, status, wsstream
from pycontainerd.core.streaming.pipe import Pipe
from pycontainerd.core.streaming.types import (
    AttachRequest,
    ExecRequest,
    InputStream,
    OutputStream,
    ResizeQueue,
    Runtime,
    TerminalSize,
)

log = logging.getLogger(__name__)

V1 = "channel.k8s.io"
V2 = "v2.channel.k8s.io"
V3 = "v3.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V5 = "v5.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
BASE64 = "base64.channel.k8s.io"

#: SPDY subprotocols, most preferred first (containerd's vendored kubelet server list).
SPDY_PROTOCOLS = (V4, V3, V2, V1)

#: WebSocket subprotocols; the client's order decides among them.
WS_PROTOCOLS: dict[str, wsstream.ChannelProtocol] = {
    V5: wsstream.ChannelProtocol(binary=True, version=5),
    V4: wsstream.ChannelProtocol(binary=True, version=4),
    V4_BASE64: wsstream.ChannelProtocol(binary=False, version=4),
    V1: wsstream.ChannelProtocol(binary=True, version=1),
    BASE64: wsstream.ChannelProtocol(binary=False, version=1),
    "": wsstream.ChannelProtocol(binary=True, version=1),
}

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
_SPDY_TYPES = {"stdin", "stdout", "stderr", "error", "resize"}


class ResizeDecoder:
    """A stream of concatenated JSON terminal sizes -> ResizeQueue (ends on bad input)."""

    def __init__(self, queue: ResizeQueue) -> None:
        self.queue = queue
        self._buf = ""
        self._decoder = json.JSONDecoder()
        self._dead = False

    def feed(self, data: bytes) -> None:
        if self._dead:
            return
        if not data:
            self.close()
            return
        self._buf += data.decode("utf-8", "replace")
        while True:
            text = self._buf.lstrip()
            if not text:
                self._buf = ""
                return
            try:
                obj, end = self._decoder.raw_decode(text)
            except json.JSONDecodeError:
                if len(text) > 4096:  # not a partial value; give up as Go's decoder would
                    self.close()
                self._buf = text
                return
            self._buf = text[end:]
            try:
                self.queue.put(TerminalSize.from_json(obj))
            except Exception:  # noqa: BLE001
                self.close()
                return

    def close(self) -> None:
        self._dead = True
        self.queue.close()


@attrs.define(eq=False)
class _Streams:
    stdin: InputStream | None
    stdout: OutputStream | None
    stderr: OutputStream | None
    resize: ResizeQueue | None
    write_status: Callable[[dict[str, Any]], Awaitable[None]]
    close: Callable[[], Awaitable[None]]


class _SafeOutput:
    """The runtime's view of an output stream: writes after the client left raise
    ConnectionResetError; ``close`` is idempotent and never raises."""

    def __init__(self, inner: OutputStream) -> None:
        self._inner = inner
        self._closed = False

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionResetError("output stream is closed")
        try:
            await self._inner.write(data)
        except (ConnectionError, RuntimeError, spdy.StreamResetError) as exc:
            raise ConnectionResetError(f"client went away: {exc}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self._inner.close()


async def _run(runtime: Runtime, req: ExecRequest | AttachRequest, s: _Streams) -> None:
    stdout = _SafeOutput(s.stdout) if s.stdout is not None else None
    stderr = _SafeOutput(s.stderr) if s.stderr is not None else None
    try:
        if isinstance(req, ExecRequest):
            try:
                code = await runtime.exec(
                    req.container_id, list(req.cmd), s.stdin, stdout, stderr, req.tty, s.resize
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported to the client
                log.warning("exec in container %s failed: %s", req.container_id, exc)
                st = status.internal_error(f"error executing command in container: {exc}")
            else:
                st = status.success() if code == 0 else status.non_zero_exit(code, req.cmd)
        else:
            try:
                await runtime.attach(req.container_id, s.stdin, stdout, stderr, req.tty, s.resize)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("attach to container %s failed: %s", req.container_id, exc)
                st = status.internal_error(f"error attaching to container: {exc}")
            else:
                st = status.success()
        for out in (stdout, stderr):
            if out is not None:
                await out.close()
        with contextlib.suppress(Exception):
            await s.write_status(st)
    finally:
        if s.resize is not None:
            s.resize.close()
        await s.close()


# -- WebSocket --------------------------------------------------------------------------------


async def serve_websocket(
    request: web.Request,
    runtime: Runtime,
    req: ExecRequest | AttachRequest,
    *,
    idle_timeout: float,
) -> web.StreamResponse:
    proto_name = wsstream.negotiate(request, WS_PROTOCOLS)
    if proto_name is None:
        return web.Response(
            status=403,
            text=(
                "requested protocol(s) are not supported: "
                f"{wsstream.requested_protocols(request)}; "
                f"supports {[p for p in WS_PROTOCOLS if p]}\n"
            ),
        )
    ws = web.WebSocketResponse(protocols=[proto_name] if proto_name else (), autoping=True)
    await ws.prepare(request)
    proto = WS_PROTOCOLS[proto_name]
    conn = wsstream.ChannelConn(ws, proto, idle_timeout=idle_timeout)
    stdin = Pipe() if req.stdin else None
    if stdin is not None:
        conn.add_reader(STDIN, stdin)
    resize = ResizeQueue() if req.tty else None
    if resize is not None:
        decoder = ResizeDecoder(resize)
        conn.add_callback(RESIZE, decoder.feed)
    conn.start()
    stdout = wsstream.ChannelWriter(conn, STDOUT) if req.stdout else None
    stderr = wsstream.ChannelWriter(conn, STDERR) if req.stderr else None
    # tell the client the streams are open: an empty message on the lowest writable channel
    first = STDOUT if req.stdout else STDERR if req.stderr else ERROR
    with contextlib.suppress(Exception):
        await conn.send(first, b"")

    async def write_status(st: dict[str, Any]) -> None:
        payload = status.encode(st, v4=proto.json_status)
        if payload:
            await conn.send(ERROR, payload)

    streams = _Streams(
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        resize=resize,
        write_status=write_status,
        close=conn.close,
    )
    await _run(runtime, req, streams)
    return ws


# -- SPDY -------------------------------------------------------------------------------------


async def serve_spdy(
    request: web.Request,
    runtime: Runtime,
    req: ExecRequest | AttachRequest,
    *,
    idle_timeout: float,
    creation_timeout: float,
) -> web.StreamResponse:
    arrived: asyncio.Queue[spdy.Stream] = asyncio.Queue()

    def on_stream(stream: spdy.Stream) -> bool:
        kind = stream.header("streamtype")
        if kind not in _SPDY_TYPES:
            log.debug("exec: unexpected stream type %r", kind)
            return False
        arrived.put_nowait(stream)
        return True

    result = await httpstream.upgrade(
        request, SPDY_PROTOCOLS, on_stream=on_stream, idle_timeout=idle_timeout
    )
    if isinstance(result, web.Response):
        return result
    conn, protocol, resp101 = result
    version = {V4: 4, V3: 3, V2: 2, V1: 1}[protocol]
    resizable = req.tty and version >= 3
    expected = 1 + req.stdin + req.stdout + req.stderr + int(resizable)
    got: dict[str, spdy.Stream] = {}
    try:
        async with asyncio.timeout(creation_timeout):
            while len(got) < expected:
                stream = await arrived.get()
                kind = stream.header("streamtype")
                if kind == "resize" and not resizable:
                    continue
                got[kind] = stream
    except TimeoutError:
        log.warning("exec: timed out waiting for client to create streams")
        await conn.close()
        return resp101

    stdin: InputStream | None = got.get("stdin")
    if version == 1 and stdin is not None:
        # v1 clients expect stdin closed right away (kubelet 1.0 behaviour, kept by kubelet)
        stdin = None
    resize: ResizeQueue | None = None
    resize_task: asyncio.Task[None] | None = None
    if (rs := got.get("resize")) is not None:
        resize = ResizeQueue()
        resize_task = asyncio.create_task(_pump_resize(rs, ResizeDecoder(resize)))
    error_stream = got["error"]

    async def write_status(st: dict[str, Any]) -> None:
        payload = status.encode(st, v4=version >= 4)
        if payload:
            await error_stream.write(payload)
        await error_stream.close()

    async def close() -> None:
        if resize_task is not None:
            resize_task.cancel()
        await conn.close()

    streams = _Streams(
        stdin=stdin,
        stdout=got.get("stdout"),
        stderr=got.get("stderr"),
        resize=resize,
        write_status=write_status,
        close=close,
    )
    await _run(runtime, req, streams)
    return resp101


async def _pump_resize(stream: spdy.Stream, decoder: ResizeDecoder) -> None:
    try:
        while data := await stream.read():
            decoder.feed(data)
    finally:
        decoder.close()
