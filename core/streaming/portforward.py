"""port-forward: Kubernetes' portforward protocols over SPDY and WebSocket.

SPDY (``portforward.k8s.io``): one connection carries any number of forwarded connections;
each is a pair of client-opened streams with the same ``requestID`` header, one
``streamType: data`` and one ``streamType: error``, both naming the ``port``. A pair that is
not complete within the stream creation timeout is dropped with a message on its error stream.

WebSocket (``v4.channel.k8s.io``, ``v4.base64.channel.k8s.io``, or none): one forwarded
connection per port of the request (or of the ``port`` query parameter); port ``i`` has data
channel ``2i`` and error channel ``2i+1``, and the server's first message on each is the port
number as two little-endian bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Coroutine
from typing import Any

import attrs
from aiohttp import web

from pycontainerd.core.streaming import httpstream, spdy, wsstream
from pycontainerd.core.streaming.pipe import Pipe
from pycontainerd.core.streaming.types import InputStream, OutputStream, PortForwardRequest, Runtime

log = logging.getLogger(__name__)

PROTOCOL = "portforward.k8s.io"
SPDY_PROTOCOLS = (PROTOCOL,)
WS_PROTOCOLS: dict[str, wsstream.ChannelProtocol] = {
    "v4.channel.k8s.io": wsstream.ChannelProtocol(binary=True, version=4),
    "v4.base64.channel.k8s.io": wsstream.ChannelProtocol(binary=False, version=4),
    "": wsstream.ChannelProtocol(binary=True, version=4),
}


class _Duplex:
    """The runtime's ``DuplexStream``; transport errors surface as ConnectionResetError."""

    def __init__(self, reader: InputStream, writer: OutputStream) -> None:
        self._reader = reader
        self._writer = writer
        self._closed = False

    async def read(self, n: int = -1) -> bytes:
        return await self._reader.read(n)

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionResetError("stream is closed")
        try:
            await self._writer.write(data)
        except (ConnectionError, RuntimeError, spdy.StreamResetError) as exc:
            raise ConnectionResetError(f"client went away: {exc}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self._writer.close()


def _error_message(port: int, sandbox: str, exc: BaseException) -> str:
    return f"error forwarding port {port} to pod {sandbox}, uid : {exc}"


def parse_port(value: str) -> int:
    port = int(value, 10)
    if not 0 < port < 65536:
        raise ValueError(f"port {value!r} must be > 0 and < 65536")
    return port


# -- SPDY -------------------------------------------------------------------------------------


@attrs.define(eq=False)
class _Pair:
    request_id: str
    data: spdy.Stream | None = None
    error: spdy.Stream | None = None
    complete: asyncio.Event = attrs.field(factory=asyncio.Event)


async def serve_spdy(
    request: web.Request,
    runtime: Runtime,
    req: PortForwardRequest,
    *,
    idle_timeout: float,
    creation_timeout: float,
) -> web.StreamResponse:
    arrived: asyncio.Queue[spdy.Stream | None] = asyncio.Queue()

    def on_stream(stream: spdy.Stream) -> bool:
        port = stream.header("port")
        if not port:
            raise ValueError('"port" header is required')
        parse_port(port)
        kind = stream.header("streamtype")
        if kind not in ("data", "error"):
            raise ValueError(f"invalid stream type {kind!r}")
        arrived.put_nowait(stream)
        return True

    result = await httpstream.upgrade(
        request, SPDY_PROTOCOLS, on_stream=on_stream, idle_timeout=idle_timeout
    )
    if isinstance(result, web.Response):
        return result
    conn, _, resp101 = result
    pairs: dict[str, _Pair] = {}
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def monitor(pair: _Pair) -> None:
        try:
            await asyncio.wait_for(pair.complete.wait(), creation_timeout)
        except TimeoutError:
            msg = f"(conn={id(conn):#x}, request={pair.request_id}) timed out waiting for streams"
            log.warning("port-forward: %s", msg)
            if pair.error is not None:
                with contextlib.suppress(Exception):
                    await pair.error.write(msg.encode())
            for s in (pair.data, pair.error):
                if s is not None:
                    await s.reset_stream()
        finally:
            pairs.pop(pair.request_id, None)

    async def forward(pair: _Pair) -> None:
        assert pair.data is not None and pair.error is not None
        port = parse_port(pair.data.header("port"))
        duplex = _Duplex(pair.data, pair.data)
        try:
            await runtime.port_forward(req.pod_sandbox_id, port, duplex)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported on the error stream
            msg = _error_message(port, req.pod_sandbox_id, exc)
            log.warning("port-forward: %s", msg)
            with contextlib.suppress(Exception):
                await pair.error.write(msg.encode())
        finally:
            await duplex.close()
            with contextlib.suppress(Exception):
                await pair.error.close()

    closed = asyncio.ensure_future(conn.wait_closed())
    try:
        while True:
            getter = asyncio.ensure_future(arrived.get())
            done, _ = await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            stream = getter.result()
            assert stream is not None
            kind = stream.header("streamtype")
            request_id = stream.header("requestid")
            if not request_id:
                # clients from before request ids: data and error streams are consecutive
                request_id = str(stream.id if kind == "error" else stream.id - 2)
            pair = pairs.get(request_id)
            if pair is None:
                pair = pairs[request_id] = _Pair(request_id)
                spawn(monitor(pair))
            if getattr(pair, kind) is not None:
                msg = (
                    f"error processing stream for request {request_id}: "
                    f"{kind} stream already assigned"
                )
                log.warning("port-forward: %s", msg)
                if pair.error is not None:
                    with contextlib.suppress(Exception):
                        await pair.error.write(msg.encode())
                await stream.reset_stream()
                continue
            setattr(pair, kind, stream)
            if pair.data is not None and pair.error is not None:
                pair.complete.set()
                spawn(forward(pair))
    finally:
        closed.cancel()
        for task in list(tasks):
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await conn.close()
    return resp101


# -- WebSocket --------------------------------------------------------------------------------


def websocket_ports(request: web.BaseRequest, req: PortForwardRequest) -> list[int]:
    """The request's ports, else the ``port`` (or ``ports``) query values, comma-separated."""
    if req.ports:
        return list(req.ports)
    values = request.query.getall("port", []) + request.query.getall("ports", [])
    if not values:
        raise ValueError('query parameter "port" is required')
    ports = []
    for value in values:
        if not value:
            raise ValueError('query parameter "port" cannot be empty')
        for p in value.split(","):
            try:
                ports.append(parse_port(p))
            except ValueError as exc:
                raise ValueError(f"unable to parse {value!r} as a port: {exc}") from None
    return ports


async def serve_websocket(
    request: web.Request,
    runtime: Runtime,
    req: PortForwardRequest,
    *,
    idle_timeout: float,
) -> web.StreamResponse:
    try:
        ports = websocket_ports(request, req)
    except ValueError as exc:
        return web.Response(status=400, text=f"{exc}\n")
    proto_name = wsstream.negotiate(request, WS_PROTOCOLS)
    if proto_name is None:
        return web.Response(
            status=403,
            text=(
                "requested protocol(s) are not supported: "
                f"{wsstream.requested_protocols(request)}\n"
            ),
        )
    ws = web.WebSocketResponse(protocols=[proto_name] if proto_name else (), autoping=True)
    await ws.prepare(request)
    conn = wsstream.ChannelConn(ws, WS_PROTOCOLS[proto_name], idle_timeout=idle_timeout)
    pipes = [Pipe() for _ in ports]
    for i, pipe in enumerate(pipes):
        conn.add_reader(2 * i, pipe)
    conn.start()

    async def forward(i: int, port: int) -> None:
        data = wsstream.ChannelWriter(conn, 2 * i)
        error = wsstream.ChannelWriter(conn, 2 * i + 1)
        duplex = _Duplex(pipes[i], data)
        try:
            await runtime.port_forward(req.pod_sandbox_id, port, duplex)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            msg = _error_message(port, req.pod_sandbox_id, exc)
            log.warning("port-forward: %s", msg)
            with contextlib.suppress(Exception):
                await error.write(msg.encode())
        finally:
            await duplex.close()

    try:
        for i, port in enumerate(ports):
            prefix = struct.pack("<H", port)
            await conn.send(2 * i, prefix)
            await conn.send(2 * i + 1, prefix)
        await asyncio.gather(*(forward(i, p) for i, p in enumerate(ports)))
    except (ConnectionError, RuntimeError) as exc:
        log.debug("port-forward: websocket ended: %s", exc)
    finally:
        await conn.close()
    return ws
