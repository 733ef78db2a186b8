"""Kubernetes' channel protocols over one WebSocket (server side).

Every message starts with its channel: a byte for the binary protocols (``channel.k8s.io``,
``v4.channel.k8s.io``, ``v5.channel.k8s.io``), an ASCII digit followed by base64 data for the
base64 ones (``base64.channel.k8s.io``, ``v4.base64.channel.k8s.io``). ``v5`` adds the CLOSE
signal: channel 255 with one byte naming the channel the client is done writing to. No
subprotocol at all means binary without versioning (``""``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Callable, Mapping

import attrs
from aiohttp import WSMsgType, web

from pycontainerd.core.streaming.pipe import Pipe

log = logging.getLogger(__name__)

CLOSE_CHANNEL = 255


@attrs.frozen
class ChannelProtocol:
    binary: bool
    version: int  # 1 (unversioned), 4 or 5

    @property
    def json_status(self) -> bool:
        return self.version >= 4


def is_websocket_request(request: web.BaseRequest) -> bool:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return False
    tokens = [t.strip().lower() for t in request.headers.get("Connection", "").split(",")]
    return "upgrade" in tokens


def requested_protocols(request: web.BaseRequest) -> list[str]:
    out: list[str] = []
    for value in request.headers.getall("Sec-WebSocket-Protocol", []):
        out += [p.strip() for p in value.split(",") if p.strip()]
    return out


def negotiate(request: web.BaseRequest, supported: Mapping[str, ChannelProtocol]) -> str | None:
    """The client's first offered protocol we support; ``""`` if it offered none; None if no
    offered protocol is supported."""
    offered = requested_protocols(request)
    if not offered:
        return "" if "" in supported else None
    for p in offered:
        if p in supported and p:
            return p
    return None


class ChannelConn:
    """An open WebSocket carrying numbered channels.

    ``readers`` maps channel number to a :class:`Pipe` (or a callback taking bytes) that gets
    what the client sends on it; other channels' input is dropped. ``idle_timeout`` closes the
    socket when nothing was read or written for that long.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        protocol: ChannelProtocol,
        *,
        idle_timeout: float = 0,
    ) -> None:
        self.ws = ws
        self.protocol = protocol
        self._readers: dict[int, Pipe] = {}
        self._callbacks: dict[int, Callable[[bytes], None]] = {}
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._idle_timeout = idle_timeout
        self._send_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = asyncio.Event()

    def add_reader(self, channel: int, pipe: Pipe) -> None:
        self._readers[channel] = pipe

    def add_callback(self, channel: int, cb: Callable[[bytes], None]) -> None:
        self._callbacks[channel] = cb

    def start(self) -> None:
        self._tasks.append(self._loop.create_task(self._receive_loop(), name="ws-receive"))
        if self._idle_timeout > 0:
            self._tasks.append(self._loop.create_task(self._idle_watch(), name="ws-idle"))

    async def send(self, channel: int, data: bytes) -> None:
        if self.ws.closed:
            raise ConnectionResetError("websocket is closed")
        async with self._send_lock:
            self._last_activity = self._loop.time()
            if self.protocol.binary:
                await self.ws.send_bytes(bytes([channel]) + data)
            else:
                await self.ws.send_str(chr(ord("0") + channel) + base64.b64encode(data).decode())

    async def close(self) -> None:
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._end()

    def _end(self) -> None:
        for pipe in self._readers.values():
            pipe.feed_eof()
        for cb in self._callbacks.values():
            with contextlib.suppress(Exception):
                cb(b"")
        self.closed.set()

    async def _idle_watch(self) -> None:
        while not self.ws.closed:
            remaining = self._last_activity + self._idle_timeout - self._loop.time()
            if remaining <= 0:
                log.debug("websocket stream idle for %.0fs, closing", self._idle_timeout)
                with contextlib.suppress(Exception):
                    await self.ws.close()
                self._end()
                return
            await asyncio.sleep(remaining)

    async def _receive_loop(self) -> None:
        try:
            while True:
                msg = await self.ws.receive()
                self._last_activity = self._loop.time()
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
                if msg.type == WSMsgType.ERROR:
                    log.debug("websocket receive error: %s", msg.data)
                    break
                if msg.type == WSMsgType.BINARY:
                    data: bytes = msg.data
                elif msg.type == WSMsgType.TEXT:
                    data = msg.data.encode()
                else:
                    continue
                if not data:
                    continue
                channel = data[0]
                if not self.protocol.binary:
                    channel -= ord("0")
                payload = data[1:]
                if self.protocol.version >= 5 and channel == CLOSE_CHANNEL:
                    if len(payload) != 1:
                        log.debug("websocket: invalid close signal %r", payload)
                        continue
                    pipe = self._readers.get(payload[0])
                    if pipe is not None:
                        pipe.feed_eof()
                    continue
                if not self.protocol.binary:
                    try:
                        payload = base64.b64decode(payload, validate=True)
                    except (binascii.Error, ValueError):
                        log.debug("websocket: invalid base64 on channel %d", channel)
                        continue
                if (pipe := self._readers.get(channel)) is not None:
                    await pipe.feed(payload)
                elif (cb := self._callbacks.get(channel)) is not None:
                    cb(payload)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.debug("websocket receive loop ended", exc_info=True)
        finally:
            self._end()


class ChannelWriter:
    """``OutputStream`` for one channel. ``close`` is local only: channels cannot be half-closed
    toward the client (the connection's end says it)."""

    def __init__(self, conn: ChannelConn, channel: int) -> None:
        self._conn = conn
        self._channel = channel
        self._closed = False

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionResetError(f"write on closed channel {self._channel}")
        if data:
            await self._conn.send(self._channel, data)

    async def close(self) -> None:
        self._closed = True
