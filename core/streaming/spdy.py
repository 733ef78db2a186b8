"""SPDY/3.1 framing and multiplexed streams over an upgraded HTTP/1.1 connection.

This is the part of SPDY that Kubernetes' ``httpstream`` uses (as moby/spdystream implements
it): SYN_STREAM / SYN_REPLY / RST_STREAM / SETTINGS / PING / GOAWAY / HEADERS / WINDOW_UPDATE
control frames and DATA frames with FIN. Header blocks are compressed with one zlib stream per
direction for the whole connection, primed with the SPDY/3 dictionary and sync-flushed per
frame. Like spdystream there is no flow control: WINDOW_UPDATE and SETTINGS are read and
ignored, and none are sent (a Go peer never sends WINDOW_UPDATE, so a window would stall it).

:class:`Connection` serves both ends: a server answers the peer's SYN_STREAMs (``on_stream``
decides, SYN_REPLY or RST_STREAM), a client opens streams with :meth:`Connection.open_stream`.
:func:`dial` does a client's HTTP upgrade (``Upgrade: SPDY/3.1`` with
``X-Stream-Protocol-Version`` negotiation) and returns the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import ssl
import struct
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.streaming.pipe import Pipe

log = logging.getLogger(__name__)

VERSION = 3
UPGRADE_PROTOCOL = "SPDY/3.1"
HEADER_PROTOCOL_VERSION = "X-Stream-Protocol-Version"
HEADER_ACCEPTED_PROTOCOL_VERSIONS = "X-Accepted-Stream-Protocol-Versions"

MAX_DATA_LENGTH = (1 << 24) - 1
#: DATA frames written by :meth:`Stream.write` carry at most this many bytes each.
WRITE_CHUNK = 32 * 1024
#: A stream buffers this much unread data before the connection stops reading the socket.
READ_HIGH_WATER = 1 << 20

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02


class FrameType(enum.IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(enum.IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    INVALID_CREDENTIALS = 10
    FRAME_TOO_LARGE = 11


# The SPDY/3 header compression dictionary (SPDY protocol draft 3, section 2.6.10.1): a run of
# length-prefixed (32-bit big-endian) lowercase header names and common values, then a tail of
# status codes, reason phrases, date fragments and common values without length prefixes.
_DICTIONARY_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base "
    "content-encoding content-language content-length content-location content-md5 "
    "content-range content-type date etag expect expires from host if-match "
    "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
    "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
    "server te trailer transfer-encoding upgrade user-agent vary via warning www-authenticate "
    "method get status"
).split() + ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information"
    "204 No Content"
    "301 Moved Permanently"
    "400 Bad Request"
    "401 Unauthorized"
    "403 Forbidden"
    "404 Not Found"
    "500 Internal Server Error"
    "501 Not Implemented"
    "503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00"
    " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,"
    "text/plain,text/javascript,public"
    "privatemax-age=gzip,deflate,sdch"
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
HEADER_DICTIONARY: bytes = (
    b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICTIONARY_WORDS)
    + _DICTIONARY_TAIL.encode()
)

_U32 = struct.Struct(">I")
_CONTROL_HEAD = struct.Struct(">HHI")
_DATA_HEAD = struct.Struct(">II")


class ProtocolError(errdefs.Unknown):
    """The peer broke the SPDY framing; the connection cannot go on."""


class StreamResetError(errdefs.Unavailable):
    """The stream was reset (RST_STREAM) or the connection went away."""


# ---------------------------------------------------------------------------------------------
# Header blocks


Headers = dict[str, list[str]]


def normalize_headers(headers: Mapping[str, str | Sequence[str]]) -> Headers:
    """Lowercase names, values as lists (SPDY/3 header names are lowercase)."""
    out: Headers = {}
    for name, value in headers.items():
        values = [value] if isinstance(value, str) else list(value)
        out.setdefault(name.lower(), []).extend(values)
    return out


def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed name/value block: counts and lengths are 32-bit, values NUL-joined."""
    parts = [_U32.pack(len(headers))]
    for name, values in headers.items():
        n = name.lower().encode()
        v = "\x00".join(values).encode()
        parts += [_U32.pack(len(n)), n, _U32.pack(len(v)), v]
    return b"".join(parts)


def decode_header_block(block: bytes) -> Headers:
    try:
        (count,) = _U32.unpack_from(block, 0)
        pos = 4
        out: Headers = {}
        for _ in range(count):
            (n,) = _U32.unpack_from(block, pos)
            name = block[pos + 4 : pos + 4 + n].decode().lower()
            pos += 4 + n
            (m,) = _U32.unpack_from(block, pos)
            value = block[pos + 4 : pos + 4 + m].decode()
            pos += 4 + m
            if pos > len(block):
                raise ProtocolError("spdy: truncated header block")
            out.setdefault(name, []).extend(value.split("\x00"))
        return out
    except (struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"spdy: invalid header block: {exc}") from exc


class HeaderCompressor:
    """One direction's zlib stream (dictionary-primed, sync-flushed per header block)."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(
            9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, HEADER_DICTIONARY
        )

    def compress(self, headers: Headers) -> bytes:
        raw = encode_header_block(headers)
        return self._z.compress(raw) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    def __init__(self) -> None:
        self._z = zlib.decompressobj(15, HEADER_DICTIONARY)

    def decompress(self, data: bytes) -> Headers:
        try:
            raw = self._z.decompress(data)
        except zlib.error as exc:
            raise ProtocolError(f"spdy: header decompression failed: {exc}") from exc
        return decode_header_block(raw)


# ---------------------------------------------------------------------------------------------
# Frames (encoding; decoding lives in Connection._read_frame, which needs the socket)


def control_frame(ftype: FrameType, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_DATA_LENGTH:
        raise errdefs.InvalidArgument("spdy: control frame too large")
    return _CONTROL_HEAD.pack(0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, data: bytes, fin: bool = False) -> bytes:
    if not 0 < stream_id <= 0x7FFFFFFF or len(data) > MAX_DATA_LENGTH:
        raise errdefs.InvalidArgument("spdy: invalid data frame")
    flags = FLAG_FIN if fin else 0
    return _DATA_HEAD.pack(stream_id, (flags << 24) | len(data)) + data


def rst_frame(stream_id: int, status: RstStatus) -> bytes:
    return control_frame(FrameType.RST_STREAM, 0, struct.pack(">II", stream_id, status))


def ping_frame(ping_id: int) -> bytes:
    return control_frame(FrameType.PING, 0, _U32.pack(ping_id))


def goaway_frame(last_good: int, status: int = 0) -> bytes:
    return control_frame(FrameType.GOAWAY, 0, struct.pack(">II", last_good, status))


# ---------------------------------------------------------------------------------------------
# Streams


class Stream:
    """One SPDY stream: read what the peer sends, write DATA, half-close with FIN, or reset."""

    def __init__(self, conn: Connection, stream_id: int, headers: Headers) -> None:
        self._conn = conn
        self.id = stream_id
        self.headers = headers
        self._pipe = Pipe(READ_HIGH_WATER)
        self.remote_closed = False  # peer sent FIN (or reset, or the connection ended)
        self.local_closed = False  # we sent FIN (or reset)
        self.reset = False
        self._replied: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def header(self, name: str, default: str = "") -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else default

    # -- reading

    def _feed(self, data: bytes) -> None:
        if not self.remote_closed:
            self._pipe.feed_nowait(data)

    def _feed_eof(self) -> None:
        self.remote_closed = True
        self._pipe.feed_eof()

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all buffered if ``n < 0``); ``b""`` once the peer is done."""
        return await self._pipe.read(n)

    async def read_all(self) -> bytes:
        chunks = []
        while chunk := await self.read():
            chunks.append(chunk)
        return b"".join(chunks)

    # -- writing

    async def write(self, data: bytes) -> None:
        if self.local_closed:
            raise StreamResetError(f"spdy: write on closed stream {self.id}")
        view = memoryview(data)
        for i in range(0, len(view), WRITE_CHUNK):
            if self.local_closed:
                raise StreamResetError(f"spdy: write on closed stream {self.id}")
            await self._conn._send(data_frame(self.id, bytes(view[i : i + WRITE_CHUNK])))

    async def close(self) -> None:
        """Half-close: an empty DATA frame with FIN. Idempotent."""
        if self.local_closed:
            return
        self.local_closed = True
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._conn._send(data_frame(self.id, b"", fin=True))
        self._conn._maybe_forget(self)

    async def reset_stream(self, status: RstStatus = RstStatus.CANCEL) -> None:
        """RST_STREAM: both directions end. Sent only if our side was still open."""
        self._feed_eof()
        self.reset = True
        if not self.local_closed:
            self.local_closed = True
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._conn._send(rst_frame(self.id, status))
        self._conn._forget(self)

    def _remote_reset(self) -> None:
        self.reset = True
        self.local_closed = True
        self._feed_eof()
        if not self._replied.done():
            self._replied.set_exception(StreamResetError(f"spdy: stream {self.id} was reset"))


# ---------------------------------------------------------------------------------------------
# Connection


OnStream = Callable[[Stream], bool]


class Connection:
    """A SPDY/3.1 session over an asyncio reader/writer pair.

    ``server=True``: the peer opens (odd) streams; ``on_stream(stream)`` returns True to accept
    (SYN_REPLY is sent) or False / raises to refuse (RST_STREAM). ``server=False``: streams are
    opened with :meth:`open_stream`. ``idle_timeout`` (seconds, 0 = none) closes the connection
    when no frame was read or written for that long.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        server: bool,
        on_stream: OnStream | None = None,
        idle_timeout: float = 0,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._server = server
        self._on_stream = on_stream
        self._idle_timeout = idle_timeout
        self._compressor = HeaderCompressor()
        self._decompressor = HeaderDecompressor()
        self._streams: dict[int, Stream] = {}
        self._next_id = 2 if server else 1
        self._last_received = 0
        self._ping_id = 2 if server else 1
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._closed = asyncio.Event()
        self._done = asyncio.Event()  # closed, or the peer said GOAWAY
        self._goaway_sent = False
        self._goaway_received = False
        self._tasks: list[asyncio.Task[None]] = [
            self._loop.create_task(self._read_loop(), name="spdy-read")
        ]
        if idle_timeout > 0:
            self._tasks.append(self._loop.create_task(self._idle_watch(), name="spdy-idle"))

    # -- public

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        """Until the connection is closed or the peer sent GOAWAY (it opens no more streams;
        data of open streams still arrives until the socket ends)."""
        await self._done.wait()

    async def open_stream(
        self, headers: Mapping[str, str | Sequence[str]], *, fin: bool = False, timeout: float = 30
    ) -> Stream:
        """SYN_STREAM, then wait for the peer's SYN_REPLY (StreamResetError if refused)."""
        if self.closed or self._goaway_received or self._goaway_sent:
            raise StreamResetError("spdy: connection is closed")
        sid = self._next_id
        self._next_id += 2
        hdrs = normalize_headers(headers)
        stream = Stream(self, sid, hdrs)
        self._streams[sid] = stream
        payload = struct.pack(">IIBB", sid, 0, 0, 0) + self._compressor.compress(hdrs)
        if fin:
            stream.local_closed = True
        await self._send(control_frame(FrameType.SYN_STREAM, FLAG_FIN if fin else 0, payload))
        try:
            await asyncio.wait_for(asyncio.shield(stream._replied), timeout)
        except TimeoutError:
            await stream.reset_stream()
            raise errdefs.DeadlineExceeded(f"spdy: no reply for stream {sid}") from None
        return stream

    async def ping(self, timeout: float = 10) -> float:
        """Round trip of a PING, in seconds."""
        pid = self._ping_id
        self._ping_id += 2
        fut = self._loop.create_future()
        self._pings[pid] = fut
        start = self._loop.time()
        try:
            await self._send(ping_frame(pid))
            await asyncio.wait_for(fut, timeout)
        finally:
            self._pings.pop(pid, None)
        return self._loop.time() - start

    async def close(self, *, reset_streams: bool = True) -> None:
        """Reset streams still open on our side, send GOAWAY, close the socket. Idempotent."""
        if self.closed:
            return
        if reset_streams:
            for stream in list(self._streams.values()):
                await stream.reset_stream()
        if not self._goaway_sent:
            self._goaway_sent = True
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send(goaway_frame(max(self._last_received, 0)))
        self._shutdown()
        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
            await self._writer.wait_closed()

    # -- internals

    def _shutdown(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._done.set()
        for stream in list(self._streams.values()):
            stream._remote_reset() if not stream._replied.done() else stream._feed_eof()
            stream.local_closed = True
        self._streams.clear()
        for fut in self._pings.values():
            if not fut.done():
                fut.set_exception(ConnectionError("spdy: connection closed"))
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        with contextlib.suppress(Exception):
            self._writer.close()

    async def _send(self, frame: bytes) -> None:
        if self.closed or self._writer.is_closing():
            raise ConnectionError("spdy: connection closed")
        self._writer.write(frame)
        self._last_activity = self._loop.time()
        await self._writer.drain()

    def _send_nowait(self, frame: bytes) -> None:
        if not self.closed and not self._writer.is_closing():
            self._writer.write(frame)
            self._last_activity = self._loop.time()

    def _forget(self, stream: Stream) -> None:
        self._streams.pop(stream.id, None)

    def _maybe_forget(self, stream: Stream) -> None:
        if stream.local_closed and stream.remote_closed:
            self._forget(stream)

    async def _idle_watch(self) -> None:
        while True:
            remaining = self._last_activity + self._idle_timeout - self._loop.time()
            if remaining <= 0:
                log.debug("spdy: closing idle connection after %.0fs", self._idle_timeout)
                self._shutdown()
                return
            await asyncio.sleep(remaining)

    async def _read_loop(self) -> None:
        try:
            while True:
                head = await self._reader.readexactly(8)
                self._last_activity = self._loop.time()
                first, second = _DATA_HEAD.unpack(head)
                flags, length = second >> 24, second & 0xFFFFFF
                payload = await self._reader.readexactly(length) if length else b""
                self._last_activity = self._loop.time()
                if first & 0x80000000:
                    version = (first >> 16) & 0x7FFF
                    if version != VERSION:
                        raise ProtocolError(f"spdy: unsupported version {version}")
                    self._control(first & 0xFFFF, flags, payload)
                else:
                    await self._data(first & 0x7FFFFFFF, flags, payload)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            pass
        except ProtocolError as exc:
            log.warning("spdy: closing connection: %s", exc)
            self._send_nowait(goaway_frame(self._last_received, 1))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("spdy: read loop failed")
        finally:
            self._shutdown()

    async def _data(self, sid: int, flags: int, payload: bytes) -> None:
        stream = self._streams.get(sid)
        if stream is None:
            return  # already gone, as spdystream: dropped silently
        if payload:
            stream._feed(payload)
        if flags & FLAG_FIN:
            stream._feed_eof()
            self._maybe_forget(stream)
        else:
            await stream._pipe.wait_space()  # backpressure: stop reading the socket

    def _control(self, ftype: int, flags: int, payload: bytes) -> None:
        if ftype == FrameType.SYN_STREAM:
            if len(payload) < 10:
                raise ProtocolError("spdy: short SYN_STREAM")
            sid, _assoc = struct.unpack_from(">II", payload, 0)
            sid &= 0x7FFFFFFF
            headers = self._decompressor.decompress(payload[10:])
            self._syn_stream(sid, flags, headers)
        elif ftype == FrameType.SYN_REPLY:
            (sid,) = _U32.unpack_from(payload, 0)
            sid &= 0x7FFFFFFF
            self._decompressor.decompress(payload[4:])
            stream = self._streams.get(sid)
            if stream is not None and not stream._replied.done():
                stream._replied.set_result(None)
                if flags & FLAG_FIN:
                    stream._feed_eof()
                    self._maybe_forget(stream)
        elif ftype == FrameType.HEADERS:
            (sid,) = _U32.unpack_from(payload, 0)
            self._decompressor.decompress(payload[4:])  # keep the zlib stream in step
            stream = self._streams.get(sid & 0x7FFFFFFF)
            if stream is not None and flags & FLAG_FIN:
                stream._feed_eof()
                self._maybe_forget(stream)
        elif ftype == FrameType.RST_STREAM:
            sid, _status = struct.unpack_from(">II", payload, 0)
            stream = self._streams.pop(sid & 0x7FFFFFFF, None)
            if stream is not None:
                stream._remote_reset()
        elif ftype == FrameType.PING:
            (pid,) = _U32.unpack_from(payload, 0)
            if (pid & 1) != (self._ping_id & 1):
                self._send_nowait(ping_frame(pid))  # theirs: echo
            else:
                fut = self._pings.get(pid)
                if fut is not None and not fut.done():
                    fut.set_result(None)
        elif ftype == FrameType.GOAWAY:
            self._goaway_received = True
            self._done.set()
        # SETTINGS, WINDOW_UPDATE and unknown control frames: ignored, as spdystream does.

    def _syn_stream(self, sid: int, flags: int, headers: Headers) -> None:
        if not self._server or sid % 2 == 0 or sid < self._last_received or sid == 0:
            self._send_nowait(rst_frame(sid or 1, RstStatus.PROTOCOL_ERROR))
            return
        self._last_received = sid
        if self._goaway_sent or self._goaway_received:
            self._send_nowait(rst_frame(sid, RstStatus.REFUSED_STREAM))
            return
        stream = Stream(self, sid, headers)
        stream._replied.set_result(None)
        if flags & FLAG_UNIDIRECTIONAL:
            stream.local_closed = True
        if flags & FLAG_FIN:
            stream._feed_eof()
        self._streams[sid] = stream
        try:
            accepted = self._on_stream(stream) if self._on_stream is not None else False
        except Exception as exc:  # noqa: BLE001 - a refused stream, not a broken connection
            log.debug("spdy: refusing stream %d: %s", sid, exc)
            accepted = False
        if not accepted:
            self._streams.pop(sid, None)
            stream.local_closed = True
            stream._feed_eof()
            self._send_nowait(rst_frame(sid, RstStatus.CANCEL))
            return
        self._send_nowait(
            control_frame(FrameType.SYN_REPLY, 0, _U32.pack(sid) + self._compressor.compress({}))
        )


# ---------------------------------------------------------------------------------------------
# Client side of the upgrade


@attrs.frozen(kw_only=True)
class UpgradeFailure(Exception):
    """The server answered the upgrade with something other than 101."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes

    def __str__(self) -> str:
        return f"spdy upgrade failed: {self.status} {self.reason}: {self.body[:200]!r}"


async def dial(
    url: str,
    protocols: Iterable[str],
    *,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    idle_timeout: float = 0,
) -> tuple[Connection, str]:
    """Upgrade ``url`` to SPDY/3.1 offering ``protocols``; the connection and the chosen one.

    Raises :class:`UpgradeFailure` for a non-101 answer.
    """
    u = urllib.parse.urlsplit(url)
    secure = u.scheme in ("https", "wss")
    port = u.port or (443 if secure else 80)
    host = u.hostname or "127.0.0.1"
    ctx = ssl_context if secure else None
    if secure and ctx is None:
        ctx = ssl.create_default_context()
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
    target = u.path or "/"
    if u.query:
        target += "?" + u.query
    host_header = u.netloc.rpartition("@")[2]
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {host_header}",
        "Connection: Upgrade",
        f"Upgrade: {UPGRADE_PROTOCOL}",
        "Content-Length: 0",
    ]
    lines += [f"{HEADER_PROTOCOL_VERSION}: {p}" for p in protocols]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    try:
        status_line = (await reader.readuntil(b"\r\n")).decode("latin-1").rstrip()
        resp_headers: dict[str, str] = {}
        while (line := (await reader.readuntil(b"\r\n")).decode("latin-1").rstrip()) != "":
            name, _, value = line.partition(":")
            key = name.strip().lower()
            prev = resp_headers.get(key)
            resp_headers[key] = f"{prev}, {value.strip()}" if prev else value.strip()
        parts = status_line.split(" ", 2)
        status = int(parts[1])
        if status != 101:
            length = int(resp_headers.get("content-length", "0") or 0)
            body = await reader.readexactly(length) if length else b""
            raise UpgradeFailure(
                status=status,
                reason=parts[2] if len(parts) > 2 else "",
                headers=resp_headers,
                body=body,
            )
    except BaseException:
        writer.close()
        raise
    conn = Connection(reader, writer, server=False, idle_timeout=idle_timeout)
    return conn, resp_headers.get(HEADER_PROTOCOL_VERSION.lower(), "")
