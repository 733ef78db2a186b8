"""The server side of the SPDY/3.1 upgrade inside an aiohttp handler.

aiohttp upgrades only to WebSocket itself, so for SPDY the handler answers 101 and then takes
the raw transport over: a fresh ``asyncio.StreamReaderProtocol`` becomes the transport's
protocol (reads and write flow control), and when the connection is lost aiohttp's own protocol
is told, so its bookkeeping ends as it does for a WebSocket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from pycontainerd.core.streaming import spdy

_READ_LIMIT = 1 << 20


class _TakeoverProtocol(asyncio.StreamReaderProtocol):
    def __init__(self, reader: asyncio.StreamReader, original: Any) -> None:
        super().__init__(reader)
        self._original = original

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        original, self._original = self._original, None
        if original is not None:
            original.connection_lost(exc)


def client_protocols(request: web.BaseRequest) -> list[str]:
    out: list[str] = []
    for value in request.headers.getall(spdy.HEADER_PROTOCOL_VERSION, []):
        out += [p.strip() for p in value.split(",") if p.strip()]
    return out


def is_spdy_upgrade(request: web.BaseRequest) -> bool:
    return "upgrade" in request.headers.get("Connection", "").lower() and (
        spdy.UPGRADE_PROTOCOL.lower() in request.headers.get("Upgrade", "").lower()
    )


async def upgrade(
    request: web.Request,
    supported: Sequence[str],
    *,
    on_stream: spdy.OnStream,
    idle_timeout: float,
) -> tuple[spdy.Connection, str, web.StreamResponse] | web.Response:
    """Negotiate ``X-Stream-Protocol-Version`` and switch to SPDY: the connection, the chosen
    protocol and the (sent) 101 response, which the handler must return; or an error response.

    Missing upgrade headers or protocol header: 400. No common protocol: 403 listing ours in
    ``X-Accepted-Stream-Protocol-Versions`` (as Kubernetes' httpstream.Handshake).
    """
    offered = client_protocols(request)
    if not offered:
        return web.Response(
            status=400,
            text=f"unable to upgrade: {spdy.HEADER_PROTOCOL_VERSION} is required\n",
        )
    chosen = next((p for p in offered if p in supported), None)
    if chosen is None:
        resp = web.Response(
            status=403,
            text=(
                "unable to upgrade: unable to negotiate protocol: "
                f"client supports {offered}, server accepts {list(supported)}\n"
            ),
        )
        for p in supported:
            resp.headers.add(spdy.HEADER_ACCEPTED_PROTOCOL_VERSIONS, p)
        return resp
    if not is_spdy_upgrade(request):
        return web.Response(
            status=400, text="unable to upgrade: missing upgrade headers in request\n"
        )
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("connection closed before upgrade")
    resp101 = web.StreamResponse(
        status=101,
        headers={
            "Connection": "Upgrade",
            "Upgrade": spdy.UPGRADE_PROTOCOL,
            spdy.HEADER_PROTOCOL_VERSION: chosen,
        },
    )
    resp101.force_close()
    await resp101.prepare(request)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_READ_LIMIT, loop=loop)
    proto = _TakeoverProtocol(reader, request.protocol)
    transport.set_protocol(proto)
    proto.connection_made(transport)
    if transport.is_reading() is False:  # aiohttp may have paused it between requests
        transport.resume_reading()
    writer = asyncio.StreamWriter(transport, proto, reader, loop)
    conn = spdy.Connection(
        reader, writer, server=True, on_stream=on_stream, idle_timeout=idle_timeout
    )
    return conn, chosen, resp101
