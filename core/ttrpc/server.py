"""The ttrpc server: services registered by name, served on unix sockets.

Per connection one reader task decodes frames and starts one handler task per stream;
handlers run concurrently and their replies are written as they finish. The checks on
incoming frames follow ttrpc's server: stream ids must be odd and increase, Data must name a
live stream, an oversized message is skipped and answered with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import attrs
from google.protobuf.descriptor import ServiceDescriptor

from pycontainerd.api.ttrpc import request_pb2
from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.server.sockets import prepare_unix_socket, secure_unix_socket, strip_unix
from pycontainerd.core.ttrpc import frame, inbox, metadata, status
from pycontainerd.core.ttrpc.frame import (
    FLAG_NO_DATA,
    FLAG_REMOTE_CLOSED,
    FLAG_REMOTE_OPEN,
    FrameHeader,
    MessageType,
)
from pycontainerd.core.ttrpc.service import Method, methods_from_descriptor, normalize

log = logging.getLogger(__name__)

_UCRED = struct.Struct("3i")


@attrs.frozen
class PeerCredentials:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    """SO_PEERCRED of a connected unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


def require_same_user(creds: PeerCredentials) -> None:
    """containerd's check on its ttrpc socket: the peer runs with our effective uid and gid."""
    euid, egid = os.geteuid(), os.getegid()
    if creds.uid != euid or creds.gid != egid:
        raise errdefs.PermissionDenied(
            f"ttrpc: invalid credentials: peer uid={creds.uid} gid={creds.gid}, "
            f"want uid={euid} gid={egid}"
        )


def _serialize(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    serialize = getattr(value, "SerializeToString", None)
    if serialize is None:
        raise errdefs.Internal(f"ttrpc: cannot serialize response of type {type(value).__name__}")
    return serialize()  # type: ignore[no-any-return]


class _ConnectionLost(Exception):
    """Writing to the peer failed: the connection is gone."""


class _Stream:
    """Server side of one stream: the method, what the client sends, the handler task."""

    __slots__ = ("id", "method", "inbox", "task")

    def __init__(self, stream_id: int, method: Method) -> None:
        self.id = stream_id
        self.method = method
        self.inbox: inbox.Inbox[bytes] = inbox.Inbox()
        self.task: asyncio.Task[None] | None = None


class _Connection:
    def __init__(
        self,
        server: Server,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.streams: dict[int, _Stream] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.last_id = 0
        self.idle = asyncio.Event()
        self.idle.set()

    # -- writing

    async def send(self, stream_id: int, type_: int, flags: int, payload: bytes = b"") -> None:
        data = frame.encode_frame(stream_id, type_, flags, payload)
        try:
            self.writer.write(data)
            await self.writer.drain()
        except ConnectionError as e:
            raise _ConnectionLost(str(e) or type(e).__name__) from e

    async def send_response(self, stream_id: int, st: Any, payload: bytes = b"") -> None:
        body = request_pb2.Response(status=st, payload=payload).SerializeToString()
        if len(body) > frame.MAX_MESSAGE_LENGTH:
            err = frame.OversizedMessageError(len(body))
            log.warning("ttrpc: response on stream %d not sent: %s", stream_id, err)
            body = request_pb2.Response(status=status.status_of(err)).SerializeToString()
        await self.send(stream_id, MessageType.RESPONSE, 0, body)

    async def send_status(self, stream_id: int, code: errdefs.Code, message: str) -> None:
        """Answer (and finish) a stream with an error status, from the reader task."""
        self.finish(stream_id, cancel=True)
        await self.send_response(stream_id, status.make(code, message))

    # -- stream bookkeeping

    def finish(self, stream_id: int, *, cancel: bool = False) -> None:
        st = self.streams.pop(stream_id, None)
        if st is None:
            return
        st.inbox.close()
        if cancel and st.task is not None and st.task is not asyncio.current_task():
            st.task.cancel()
        if not self.streams:
            self.idle.set()

    # -- reading

    async def run(self) -> None:
        try:
            while True:
                try:
                    header, payload = await frame.read_frame(self.reader)
                except frame.OversizedFrame as e:
                    await self.send_status(
                        e.header.stream_id, errdefs.Code.RESOURCE_EXHAUSTED, str(e)
                    )
                    continue
                await self.dispatch(header, payload)
        except (asyncio.IncompleteReadError, ConnectionError, _ConnectionLost):
            log.debug("ttrpc: connection closed")
        finally:
            await self.close()

    async def dispatch(self, header: FrameHeader, payload: bytes) -> None:
        sid = header.stream_id
        if sid % 2 != 1:
            await self.send_status(
                sid,
                errdefs.Code.INVALID_ARGUMENT,
                "StreamID must be odd for client initiated streams",
            )
            return
        if header.type == MessageType.DATA:
            await self.on_data(header, payload)
        elif header.type == MessageType.REQUEST:
            await self.on_request(header, payload)
        else:  # unknown types are ignored for forward compatibility, as ttrpc does
            log.debug("ttrpc: ignoring message type %d on stream %d", header.type, sid)

    async def on_data(self, header: FrameHeader, payload: bytes) -> None:
        sid = header.stream_id
        st = self.streams.get(sid)
        if st is None:
            await self.send_status(
                sid, errdefs.Code.INVALID_ARGUMENT, "StreamID is no longer active"
            )
            return
        closing = header.has(FLAG_REMOTE_CLOSED)
        if closing and payload:
            await self.send_status(
                sid, errdefs.Code.INVALID_ARGUMENT, "data close message cannot include data"
            )
            return
        if not header.has(FLAG_NO_DATA):
            if not st.method.client_streaming:
                await self.send_status(
                    sid, errdefs.Code.INVALID_ARGUMENT, "method does not accept stream data"
                )
                return
            if st.inbox.closed:
                await self.send_status(
                    sid, errdefs.Code.INVALID_ARGUMENT, "data handling error: stream closed"
                )
                return
            if not await st.inbox.put(payload):
                if sid in self.streams:
                    await self.send_status(
                        sid,
                        errdefs.Code.INVALID_ARGUMENT,
                        "data handling error: stream buffer full",
                    )
                return
        if closing:
            st.inbox.close()

    async def on_request(self, header: FrameHeader, payload: bytes) -> None:
        sid = header.stream_id
        if sid <= self.last_id:
            await self.send_status(
                sid,
                errdefs.Code.INVALID_ARGUMENT,
                "StreamID cannot be re-used and must increment",
            )
            return
        self.last_id = sid
        try:
            req = request_pb2.Request.FromString(payload)
        except Exception as e:  # noqa: BLE001 - any decode failure is the client's
            await self.send_status(
                sid, errdefs.Code.INVALID_ARGUMENT, f"unmarshal request error: {e}"
            )
            return
        service = self.server._services.get(req.service)
        if service is None:
            await self.send_status(sid, errdefs.Code.UNIMPLEMENTED, f"service {req.service}")
            return
        method = service.get(req.method)
        if method is None:
            await self.send_status(sid, errdefs.Code.UNIMPLEMENTED, f"method {req.method}")
            return
        st = _Stream(sid, method)
        if method.client_streaming:
            if req.payload:
                await st.inbox.put(req.payload)
            if not header.has(FLAG_REMOTE_OPEN):
                st.inbox.close()
        else:
            st.inbox.close()
        self.streams[sid] = st
        self.idle.clear()
        task = asyncio.get_running_loop().create_task(
            self.handle(st, req), name=f"ttrpc {req.service}/{req.method} #{sid}"
        )
        st.task = task
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- handlers

    async def handle(self, st: _Stream, req: request_pb2.Request) -> None:
        method = st.method
        loop = asyncio.get_running_loop()
        deadline = loop.time() + req.timeout_nano / 1e9 if req.timeout_nano > 0 else None
        md = metadata.from_proto(req.metadata)
        metadata._set_current(
            metadata.RequestInfo(
                service=req.service, method=req.method, metadata=md, deadline=deadline
            )
        )
        ns = md.get(namespaces.TTRPC_HEADER)
        namespaces.set_current(ns[0] if ns else None)

        result_status = status.ok()
        payload = b""
        try:
            async with asyncio.timeout_at(deadline):
                try:
                    payload = await self.invoke(st, req)
                except TimeoutError as e:  # the handler's own, not the request deadline
                    raise errdefs.DeadlineExceeded(str(e) or "deadline exceeded") from e
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the connection or the stream is going away: nothing to answer
            result_status = status.make(errdefs.Code.CANCELLED, "canceled")
        except TimeoutError:
            result_status = status.make(errdefs.Code.DEADLINE_EXCEEDED, "context deadline exceeded")
        except _ConnectionLost as e:
            log.debug("ttrpc: %s/%s: connection lost: %s", req.service, req.method, e)
            self.finish(st.id)
            return
        except Exception as e:  # noqa: BLE001 - every handler error becomes a status
            result_status = status.status_of(e)
            code = status.code_of(e)
            if code in (errdefs.Code.UNKNOWN, errdefs.Code.INTERNAL):
                log.error("ttrpc: %s/%s failed: %s", req.service, req.method, e, exc_info=e)
            else:
                log.debug("ttrpc: %s/%s: %s: %s", req.service, req.method, code.name, e)
        if st.id not in self.streams:
            return  # already answered by the reader (bad data on the stream)
        self.finish(st.id)
        try:
            if method.server_streaming and result_status.code == status.OK:
                await self.send(st.id, MessageType.DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA)
            else:
                await self.send_response(st.id, result_status, payload)
        except _ConnectionLost as e:
            log.debug("ttrpc: %s/%s: reply not sent: %s", req.service, req.method, e)

    async def invoke(self, st: _Stream, req: request_pb2.Request) -> bytes:
        """Run the handler; stream its replies; the unary reply's payload."""
        method = st.method
        arg = self.requests(st) if method.client_streaming else method.decode(req.payload)
        result = method.handler(arg)
        if inspect.isawaitable(result):
            result = await result
        if not method.server_streaming:
            return _serialize(result)
        if not hasattr(result, "__aiter__"):
            raise errdefs.Internal(
                f"ttrpc: streaming handler for {req.method} returned {type(result).__name__}, "
                "not an async iterator"
            )
        closing = (
            contextlib.aclosing(result)
            if hasattr(result, "aclose")
            else contextlib.nullcontext(result)
        )
        async with closing as replies:
            async for reply in replies:
                await self.send(st.id, MessageType.DATA, 0, _serialize(reply))
        return b""

    async def requests(self, st: _Stream) -> AsyncIterator[Any]:
        while True:
            try:
                data = await st.inbox.get()
            except inbox.Closed:
                return
            yield st.method.decode(data)

    # -- shutdown

    async def close(self) -> None:
        tasks = list(self.tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for sid in list(self.streams):
            self.finish(sid)
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@attrs.define(eq=False)
class Server:
    """A ttrpc server. ``start(services)`` registers every object with ``register_ttrpc`` and
    listens on ``address`` (a path, or ``unix://`` path); :meth:`serve_socket` serves an
    already-listening socket instead (a shim's fd 3)."""

    address: str = ""
    uid: int = 0
    gid: int = 0
    #: Refuse peers whose SO_PEERCRED uid/gid differ from ours (containerd's daemon socket).
    require_same_user: bool = attrs.field(default=True, kw_only=True)
    _services: dict[str, dict[str, Method]] = attrs.field(factory=dict, init=False)
    _listeners: list[asyncio.base_events.Server] = attrs.field(factory=list, init=False)
    _connections: set[_Connection] = attrs.field(factory=set, init=False)
    _conn_tasks: set[asyncio.Task[Any]] = attrs.field(factory=set, init=False)
    _paths: list[str] = attrs.field(factory=list, init=False)
    registered: list[str] = attrs.field(factory=list, init=False)

    # -- registration

    def register(self, service: str, methods: Mapping[str, Method | Callable[..., Any]]) -> None:
        """Serve ``methods`` (RPC name -> :class:`Method` or bare unary callable) under the fully
        qualified ``service`` name."""
        if not service:
            raise errdefs.InvalidArgument("ttrpc: service name must not be empty")
        if service in self._services:
            raise errdefs.AlreadyExists(f"ttrpc: duplicate service {service} registered")
        self._services[service] = normalize(methods)
        self.registered.append(service)

    def register_service(self, descriptor: ServiceDescriptor, impl: object) -> None:
        """Serve a generated protobuf service with ``impl``'s async methods named like its
        RPCs (``shim_pb2.DESCRIPTOR.services_by_name["Task"]``)."""
        self.register(descriptor.full_name, methods_from_descriptor(descriptor, impl))

    @property
    def services(self) -> dict[str, list[str]]:
        return {name: sorted(methods) for name, methods in self._services.items()}

    # -- lifecycle

    async def start(self, services: Sequence[Any] = ()) -> None:
        for svc in services:
            register = getattr(svc, "register_ttrpc", None)
            if register is not None:
                register(self)
        if not self.address:
            raise errdefs.InvalidArgument("ttrpc: no address to listen on")
        await self.listen(self.address)
        log.info(
            "serving ttrpc address=%s services=%d", strip_unix(self.address), len(self._services)
        )

    async def listen(self, address: str) -> None:
        """Listen on a unix socket path (stale socket removed, mode 0660, owned uid:gid)."""
        path = strip_unix(address)
        prepare_unix_socket(path)
        listener = await asyncio.start_unix_server(self._accept, path=path)
        self._listeners.append(listener)
        self._paths.append(path)
        secure_unix_socket(path, self.uid, self.gid)

    async def serve_socket(self, sock: socket.socket) -> None:
        """Accept connections on an already-listening unix socket."""
        sock.setblocking(False)
        listener = await asyncio.start_unix_server(self._accept, sock=sock)
        self._listeners.append(listener)

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve one already-connected peer until it disconnects (no credential check)."""
        conn = _Connection(self, reader, writer)
        self._connections.add(conn)
        try:
            await conn.run()
        finally:
            self._connections.discard(conn)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conn_tasks.add(task)
        try:
            if self.require_same_user:
                sock = writer.get_extra_info("socket")
                try:
                    require_same_user(peer_credentials(sock))
                except (OSError, errdefs.PermissionDenied) as e:
                    log.warning("ttrpc: refusing connection: %s", e)
                    writer.close()
                    return
            await self.serve_connection(reader, writer)
        finally:
            if task is not None:
                self._conn_tasks.discard(task)

    def stop_listening(self) -> None:
        """Accept no more connections (the ones made go on); remove the sockets this server
        created."""
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        for path in self._paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._paths.clear()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting; let active streams finish for up to ``grace`` seconds; then close
        every connection (cancelling the handlers still running)."""
        self.stop_listening()
        busy = [c for c in self._connections if not c.idle.is_set()]
        if busy and grace > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await asyncio.gather(*(c.idle.wait() for c in busy))
        for c in list(self._connections):
            with contextlib.suppress(Exception):
                c.writer.close()
            c.reader.feed_eof()
        tasks = list(self._conn_tasks)
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=1.0)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
