"""The ttrpc client: calls multiplexed over one connection.

Each call opens a stream with the next odd id. One reader task routes incoming frames to
their streams; when the connection ends every pending call fails with UNAVAILABLE. Non-OK
statuses come back as errdefs categories. The current namespace (``namespaces.get()``) is
sent as ``containerd-namespace-ttrpc`` unless the caller's metadata sets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any, Generic, TypeVar

from pycontainerd.api.ttrpc import request_pb2
from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.server.sockets import strip_unix
from pycontainerd.core.ttrpc import frame, inbox, metadata, status
from pycontainerd.core.ttrpc.frame import (
    FLAG_NO_DATA,
    FLAG_REMOTE_CLOSED,
    FLAG_REMOTE_OPEN,
    FrameHeader,
    MessageType,
)

log = logging.getLogger(__name__)

R = TypeVar("R")

_MAX_STREAM_ID = 0xFFFFFFFF


def _serialize(message: Any) -> bytes:
    if message is None:
        return b""
    if isinstance(message, bytes | bytearray | memoryview):
        return bytes(message)
    return message.SerializeToString()  # type: ignore[no-any-return]


def _decode(response_cls: type[Any] | None, payload: bytes) -> Any:
    if response_cls is None:
        return payload
    try:
        return response_cls.FromString(payload)
    except Exception as e:  # protobuf decode errors
        raise errdefs.DataLoss(f"ttrpc: failed to decode {response_cls.__name__}: {e}") from e


class _Stream:
    __slots__ = ("id", "inbox")

    def __init__(self, stream_id: int) -> None:
        self.id = stream_id
        self.inbox: inbox.Inbox[tuple[FrameHeader, bytes]] = inbox.Inbox()


class Client:
    """A ttrpc client over one connected stream socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._next_id = 1
        self._streams: dict[int, _Stream] = {}
        self._error: errdefs.ContainerdError | None = None
        self._read_task = asyncio.get_running_loop().create_task(
            self._read_loop(), name="ttrpc client reader"
        )

    @classmethod
    async def connect(cls, address: str, *, timeout: float | None = None) -> Client:
        """Connect to a unix socket path (``unix://`` prefix allowed)."""
        path = strip_unix(address)
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path)
        except TimeoutError as e:
            raise errdefs.DeadlineExceeded(f"ttrpc: timed out connecting to {path}") from e
        except FileNotFoundError as e:
            raise errdefs.NotFound(f"ttrpc: socket {path} not found") from e
        except OSError as e:
            raise errdefs.Unavailable(f"ttrpc: failed to connect to {path}: {e}") from e
        return cls(reader, writer)

    @classmethod
    async def from_socket(cls, sock: socket.socket) -> Client:
        """Take over a connected socket."""
        sock.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer)

    # -- state

    @property
    def closed(self) -> bool:
        return self._read_task.done()

    async def wait_closed(self) -> None:
        """Return when the connection has ended (peer gone or :meth:`close`)."""
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._read_task)

    async def close(self) -> None:
        """Close the connection; pending calls fail with UNAVAILABLE."""
        if self._error is None:
            self._error = errdefs.Unavailable("ttrpc: client closed")
        self._writer.close()
        if not self._read_task.done():
            self._read_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._read_task
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- calls

    async def call(
        self,
        service: str,
        method: str,
        request: Any,
        response_cls: type[R] | None,
        *,
        timeout: float | None = None,
        metadata: metadata.MetadataLike | None = None,
    ) -> R:
        """A unary call. ``response_cls`` None returns the raw payload bytes."""
        deadline = self._deadline(timeout)
        req = self._request(service, method, _serialize(request), deadline, metadata)
        st = await self._open(req, 0)
        try:
            async with asyncio.timeout_at(deadline):
                header, data = await st.inbox.get()
        except TimeoutError as e:
            raise errdefs.DeadlineExceeded(
                f"ttrpc: {service}/{method}: context deadline exceeded"
            ) from e
        finally:
            self._streams.pop(st.id, None)
        if header.type != MessageType.RESPONSE:
            raise errdefs.Internal(
                f"ttrpc: {service}/{method}: unexpected message type {header.type} on a unary call"
            )
        resp = _parse_response(data)
        err = status.error_of(resp.status)
        if err is not None:
            raise err
        return _decode(response_cls, resp.payload)  # type: ignore[no-any-return]

    async def stream(
        self,
        service: str,
        method: str,
        response_cls: type[R] | None,
        *,
        request: Any = None,
        client_streaming: bool = False,
        server_streaming: bool = True,
        timeout: float | None = None,
        metadata: metadata.MetadataLike | None = None,
    ) -> ClientStream[R]:
        """Open a streaming call. Server-streaming only: ``request`` is the one request and the
        stream is half-closed at once. Client-streaming or bidi: ``request`` (optional) goes in
        the Request frame, more messages with :meth:`ClientStream.send`."""
        if not client_streaming and not server_streaming:
            raise errdefs.InvalidArgument("ttrpc: use call() for unary methods")
        deadline = self._deadline(timeout)
        payload = _serialize(request) if (request is not None or not client_streaming) else b""
        req = self._request(service, method, payload, deadline, metadata)
        flags = FLAG_REMOTE_OPEN if client_streaming else FLAG_REMOTE_CLOSED
        st = await self._open(req, flags)
        return ClientStream(
            self,
            st,
            response_cls,
            client_streaming=client_streaming,
            server_streaming=server_streaming,
            deadline=deadline,
            name=f"{service}/{method}",
        )

    # -- internals

    def _deadline(self, timeout: float | None) -> float | None:
        if timeout is None:
            return None
        return asyncio.get_running_loop().time() + max(timeout, 0.0)

    def _request(
        self,
        service: str,
        method: str,
        payload: bytes,
        deadline: float | None,
        md: metadata.MetadataLike | None,
    ) -> request_pb2.Request:
        kvs = metadata.pairs(md)
        ns = namespaces.get()
        if ns and not any(k == namespaces.TTRPC_HEADER for k, _ in kvs):
            kvs.append((namespaces.TTRPC_HEADER, ns))
        req = request_pb2.Request(service=service, method=method, payload=payload)
        if deadline is not None:
            remaining = deadline - asyncio.get_running_loop().time()
            req.timeout_nano = max(int(remaining * 1e9), 1)
        req.metadata.extend(metadata.to_proto(kvs))
        return req

    def _check_open(self) -> None:
        if self._error is not None:
            raise type(self._error)(str(self._error))
        if self._read_task.done():
            raise errdefs.Unavailable("ttrpc: connection closed")

    async def _open(self, req: request_pb2.Request, flags: int) -> _Stream:
        self._check_open()
        body = req.SerializeToString()
        frame.check_length(len(body))
        if self._next_id > _MAX_STREAM_ID:
            raise errdefs.Unavailable("ttrpc: stream ids exhausted on this connection")
        st = _Stream(self._next_id)
        self._next_id += 2
        self._streams[st.id] = st
        try:
            await self._send(st.id, MessageType.REQUEST, flags, body)
        except BaseException:
            self._streams.pop(st.id, None)
            raise
        return st

    async def _send(self, stream_id: int, type_: int, flags: int, payload: bytes = b"") -> None:
        data = frame.encode_frame(stream_id, type_, flags, payload)
        self._check_open()
        try:
            self._writer.write(data)
            await self._writer.drain()
        except ConnectionError as e:
            raise errdefs.Unavailable(f"ttrpc: connection closed: {e}") from e

    async def _read_loop(self) -> None:
        error: errdefs.ContainerdError = errdefs.Unavailable("ttrpc: connection closed")
        try:
            while True:
                try:
                    header, payload = await frame.read_frame(self._reader)
                except frame.OversizedFrame as e:
                    st = self._streams.pop(e.header.stream_id, None)
                    if st is not None:
                        st.inbox.fail(errdefs.ResourceExhausted(str(e)))
                    continue
                st = self._streams.get(header.stream_id)
                if st is None:
                    log.debug("ttrpc: message on inactive stream %d ignored", header.stream_id)
                    continue
                final = header.type == MessageType.RESPONSE or (
                    header.type == MessageType.DATA and header.has(FLAG_REMOTE_CLOSED)
                )
                if not await st.inbox.put((header, payload)):
                    self._streams.pop(st.id, None)
                    st.inbox.fail(errdefs.ResourceExhausted("ttrpc: stream buffer full"))
                    continue
                if final:
                    self._streams.pop(st.id, None)
                    st.inbox.close()
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            log.debug("ttrpc: connection ended: %r", e)
        except asyncio.CancelledError:
            if self._error is not None:
                error = self._error
            raise
        finally:
            if self._error is None:
                self._error = error
            streams = list(self._streams.values())
            self._streams.clear()
            for st in streams:
                st.inbox.close(type(self._error)(str(self._error)))
            self._writer.close()


def _parse_response(data: bytes) -> request_pb2.Response:
    try:
        return request_pb2.Response.FromString(data)
    except Exception as e:  # protobuf decode errors
        raise errdefs.DataLoss(f"ttrpc: failed to decode response: {e}") from e


class ClientStream(Generic[R]):
    """One streaming call. ``recv()`` returns the next message, or None once the server has
    finished; a non-OK status is raised as its errdefs category. Iterate with ``async for``."""

    def __init__(
        self,
        client: Client,
        st: _Stream,
        response_cls: type[R] | None,
        *,
        client_streaming: bool,
        server_streaming: bool,
        deadline: float | None,
        name: str,
    ) -> None:
        self._client = client
        self._st = st
        self._response_cls = response_cls
        self.client_streaming = client_streaming
        self.server_streaming = server_streaming
        self._deadline = deadline
        self._name = name
        self._local_closed = not client_streaming
        self._remote_closed = False

    @property
    def stream_id(self) -> int:
        return self._st.id

    async def send(self, message: Any) -> None:
        if not self.client_streaming:
            raise errdefs.FailedPrecondition(
                f"ttrpc: {self._name}: cannot send on a non-streaming client"
            )
        if self._local_closed:
            raise errdefs.FailedPrecondition(f"ttrpc: {self._name}: stream closed for sending")
        if self._remote_closed:
            raise errdefs.FailedPrecondition(f"ttrpc: {self._name}: stream finished by the server")
        await self._client._send(self._st.id, MessageType.DATA, 0, _serialize(message))

    async def close_send(self) -> None:
        """Half-close: tell the server no more messages will come."""
        if self._local_closed or self._remote_closed:
            return
        self._local_closed = True
        await self._client._send(self._st.id, MessageType.DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA)

    async def recv(self) -> R | None:
        if self._remote_closed:
            return None
        try:
            async with asyncio.timeout_at(self._deadline):
                header, data = await self._st.inbox.get()
        except TimeoutError as e:
            self._finish()
            raise errdefs.DeadlineExceeded(f"ttrpc: {self._name}: context deadline exceeded") from e
        except inbox.Closed:
            self._finish()
            return None
        except BaseException:
            self._finish()
            raise
        if header.type == MessageType.RESPONSE:
            self._finish()
            resp = _parse_response(data)
            err = status.error_of(resp.status)
            if err is not None:
                raise err
            if self.server_streaming and not resp.payload:
                return None
            return _decode(self._response_cls, resp.payload)  # type: ignore[no-any-return]
        if header.type != MessageType.DATA:
            self._finish()
            raise errdefs.Internal(f"ttrpc: {self._name}: unexpected message type {header.type}")
        if not self.server_streaming:
            self._finish()
            raise errdefs.Internal(
                f"ttrpc: {self._name}: data received from a non-streaming server"
            )
        if header.has(FLAG_REMOTE_CLOSED):
            self._finish()
            if header.has(FLAG_NO_DATA):
                return None
        return _decode(self._response_cls, data)  # type: ignore[no-any-return]

    async def close_and_recv(self) -> R | None:
        """Client-streaming: half-close and wait for the server's one response."""
        await self.close_send()
        return await self.recv()

    def __aiter__(self) -> AsyncIterator[R]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[R]:
        while True:
            msg = await self.recv()
            if msg is None:
                return
            yield msg

    def _finish(self) -> None:
        self._remote_closed = True
        self._local_closed = True
        self._client._streams.pop(self._st.id, None)

    def cancel(self) -> None:
        """Stop listening on this stream (ttrpc has no cancel frame; late replies are dropped)."""
        self._finish()
