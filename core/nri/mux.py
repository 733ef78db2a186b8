"""NRI's connection multiplexer: several logical byte streams over one socket.

Wire format (containerd/nri ``pkg/net/multiplex``): every chunk on the trunk is an 8-byte
header, ``[conn id: uint32 BE][payload length: uint32 BE]``, then the payload. A write larger
than :data:`MAX_PAYLOAD` (a ttrpc header plus the largest ttrpc message) is split into several
chunks. Conn id 0 is reserved. Chunks for a conn id nobody opened are dropped.

Our reader treats each logical connection as a plain byte stream, but Go's does not: its
``conn.Read`` hands out one whole chunk per call and fails with ENOMEM ("cannot allocate
memory") when the caller's buffer is smaller than the chunk, and Go ttrpc reads through a
4 KiB ``bufio.Reader``. Go ttrpc writes through a 4 KiB ``bufio.Writer``, so a message larger
than that goes out as a first chunk of :data:`GO_BUFFER_SIZE` bytes (ttrpc header and the start
of the payload) and then the rest, which the reader takes straight into the payload buffer.
:func:`encode` splits a message the same way, so Go plugins can read what we send.

NRI uses two logical connections on each plugin socket, each carrying ordinary ttrpc:
:data:`PLUGIN_SERVICE_CONN` (1), where the runtime is the ttrpc client and the plugin serves
``Plugin``, and :data:`RUNTIME_SERVICE_CONN` (2), where the plugin is the client and the
runtime serves ``Runtime``.

:meth:`Mux.open` returns an ``asyncio`` (reader, writer) pair for a conn id, so
:class:`~pycontainerd.core.ttrpc.Server` and :class:`~pycontainerd.core.ttrpc.Client` run on
it unchanged. Reading from the trunk starts with :meth:`Mux.start` (open the connections
first, as NRI's blocked-read mode does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from typing import Any

from pycontainerd.core import errdefs

log = logging.getLogger(__name__)

RESERVED_CONN = 0
PLUGIN_SERVICE_CONN = 1
RUNTIME_SERVICE_CONN = 2

HEADER = struct.Struct(">II")
HEADER_LENGTH = HEADER.size
#: ttrpc frame header (10) + ttrpc's maximum message length (4 MiB).
MAX_PAYLOAD = 10 + (4 << 20)
#: The buffer size of Go's bufio, which Go ttrpc reads and writes through.
GO_BUFFER_SIZE = 4096


def encode(
    conn_id: int,
    data: bytes,
    max_payload: int = MAX_PAYLOAD,
    first_chunk: int = GO_BUFFER_SIZE,
) -> bytes:
    """The trunk bytes for writing one ttrpc message ``data`` on ``conn_id``: at most
    ``first_chunk`` bytes in the first chunk (as Go ttrpc's buffered writer sends them), the
    rest in chunks of at most ``max_payload``."""
    view = memoryview(data)
    out = bytearray()
    limit = min(first_chunk, max_payload)
    while True:
        chunk = view[:limit]
        limit = max_payload
        out += HEADER.pack(conn_id, len(chunk))
        out += chunk
        view = view[len(chunk) :]
        if not view:
            return bytes(out)


async def read_chunk(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One ``(conn id, payload)`` from a trunk; IncompleteReadError at EOF."""
    header = await reader.readexactly(HEADER_LENGTH)
    conn_id, length = HEADER.unpack(header)
    payload = await reader.readexactly(length) if length else b""
    return conn_id, payload


class _ConnTransport(asyncio.WriteTransport):
    """The write side of one logical connection: writes become trunk chunks."""

    def __init__(self, mux: Mux, conn_id: int) -> None:
        super().__init__()
        self._mux = mux
        self._conn_id = conn_id
        self._closing = False
        self.protocol: asyncio.StreamReaderProtocol | None = None

    def write(self, data: Any) -> None:
        if self._closing or self._mux.closed:
            raise ConnectionResetError(f"nri mux: connection {self._conn_id} is closed")
        if data:
            self._mux._write(self._conn_id, bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(bytes(d) for d in list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def is_closing(self) -> bool:
        return self._closing or self._mux.closed

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._mux._forget(self._conn_id, self)
        self._lost(None)

    def abort(self) -> None:
        self.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._mux._trunk_writer.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:  # the trunk is shared: per-connection pausing is a no-op
        pass

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return not self._closing

    def _lost(self, exc: Exception | None) -> None:
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            asyncio.get_running_loop().call_soon(protocol.connection_lost, exc)


class Mux:
    """Multiplexes logical connections over one connected stream (the trunk)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._trunk_reader = reader
        self._trunk_writer = writer
        self._conns: dict[int, _ConnTransport] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self.error: BaseException | None = None

    @classmethod
    async def from_socket(cls, sock: socket.socket) -> Mux:
        sock.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def open(self, conn_id: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A reader/writer pair for ``conn_id``; opening an open id again is an error."""
        if conn_id == RESERVED_CONN:
            raise errdefs.InvalidArgument(f"nri mux: conn id {conn_id} is reserved")
        if not 0 < conn_id <= 0xFFFFFFFF:
            raise errdefs.InvalidArgument(f"nri mux: invalid conn id {conn_id}")
        if self.closed:
            raise errdefs.Unavailable("nri mux: closed")
        if conn_id in self._conns:
            raise errdefs.AlreadyExists(f"nri mux: conn id {conn_id} already open")
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2 * MAX_PAYLOAD, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport = _ConnTransport(self, conn_id)
        transport.protocol = protocol
        protocol.connection_made(transport)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        self._conns[conn_id] = transport
        return reader, writer

    def start(self) -> None:
        """Begin reading the trunk (idempotent)."""
        if self._task is None and not self.closed:
            self._task = asyncio.get_running_loop().create_task(
                self._read_loop(), name="nri mux reader"
            )

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        """Close every logical connection and the trunk."""
        self._shutdown(None)
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self._trunk_writer.wait_closed()

    # -- internals

    def _write(self, conn_id: int, data: bytes) -> None:
        try:
            self._trunk_writer.write(encode(conn_id, data))
        except (ConnectionError, RuntimeError) as e:
            self._shutdown(e)
            raise ConnectionResetError(f"nri mux: trunk write failed: {e}") from e

    def _forget(self, conn_id: int, transport: _ConnTransport) -> None:
        if self._conns.get(conn_id) is transport:
            del self._conns[conn_id]

    def _shutdown(self, exc: BaseException | None) -> None:
        if self.closed:
            return
        self.error = exc
        self._closed.set()
        conns, self._conns = list(self._conns.values()), {}
        for t in conns:
            t._closing = True
            t._lost(None)
        self._trunk_writer.close()

    async def _read_loop(self) -> None:
        exc: BaseException | None = None
        try:
            while True:
                conn_id, payload = await read_chunk(self._trunk_reader)
                t = self._conns.get(conn_id)
                if t is None or t.protocol is None:
                    log.debug("nri mux: dropping %d bytes for conn %d", len(payload), conn_id)
                    continue
                if payload:
                    t.protocol.data_received(payload)
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            log.debug("nri mux: trunk closed: %r", e)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - anything else ends the trunk too
            exc = e
            log.warning("nri mux: trunk failed: %s", e)
        finally:
            self._shutdown(exc)
