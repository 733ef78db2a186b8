"""Streams between a client and the daemon (containerd's ``core/streaming`` and
``core/transfer/streaming``).

A :class:`Stream` carries ``google.protobuf.Any`` messages both ways. Clients open one with the
gRPC Streaming service (first message ``StreamInit{id}``), the daemon registers it in the
:class:`StreamManager` under the caller's namespace, and a transfer request names it: progress
goes out on one, credentials are asked for on another, archive bytes travel on a third.

Bytes go as ``containerd.types.transfer.Data`` messages with flow control: the receiver grants
credit with ``WindowUpdate{update}`` and the sender never has more than the granted bytes in
flight (:func:`send_stream`, :func:`receive_stream`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

import attrs

from pycontainerd.core import errdefs, namespaces

#: Largest Data message (containerd's maxRead).
MAX_READ = 32 << 10
#: Credit a receiver grants at a time (containerd's windowSize is 2 * maxRead; a larger window
#: keeps more bytes in flight, which local sockets reward).
WINDOW_SIZE = 1 << 20


@runtime_checkable
class Stream(Protocol):
    async def send(self, msg: Any) -> None:
        """Send one ``Any``; EOFError when the other side has gone."""
        ...

    def send_nowait(self, msg: Any) -> None:
        """Queue one ``Any`` without waiting (progress events); EOFError when closed."""
        ...

    async def recv(self) -> Any:
        """The next ``Any``; EOFError at the end of the stream."""
        ...

    async def close(self) -> None: ...


def generate_id(prefix: str) -> str:
    """A stream id as containerd makes them: ``<prefix>-<nanoseconds>-<base64 of 3 bytes>``."""
    suffix = base64.urlsafe_b64encode(os.urandom(3)).decode()
    return f"{prefix}-{time.time_ns() % 1_000_000_000}-{suffix}"


@attrs.define(eq=False)
class StreamManager:
    """Registered streams by (namespace, id) (the ``io.containerd.streaming.v1.manager``
    plugin's instance)."""

    _streams: dict[tuple[str, str], Stream] = attrs.Factory(dict)

    def register(self, stream_id: str, stream: Stream) -> None:
        ns = namespaces.get() or ""
        if not stream_id:
            raise errdefs.InvalidArgument("stream id must not be empty")
        key = (ns, stream_id)
        if key in self._streams:
            raise errdefs.AlreadyExists(f"stream {stream_id!r}: already exists")
        self._streams[key] = stream

    def unregister(self, namespace: str, stream_id: str, stream: Stream) -> None:
        if self._streams.get((namespace, stream_id)) is stream:
            del self._streams[(namespace, stream_id)]

    def get(self, stream_id: str) -> Stream:
        ns = namespaces.get() or ""
        try:
            return self._streams[(ns, stream_id)]
        except KeyError:
            raise errdefs.NotFound(f"stream {stream_id!r}: not found") from None

    def __len__(self) -> int:
        return len(self._streams)


@attrs.define(eq=False)
class MemoryStream:
    """One end of an in-process stream pair (:func:`pipe`); for tests and in-process use."""

    _inbox: asyncio.Queue[Any]
    _outbox: asyncio.Queue[Any]
    _closed: bool = False

    def send_nowait(self, msg: Any) -> None:
        if self._closed:
            raise EOFError("stream closed")
        self._outbox.put_nowait(msg)

    async def send(self, msg: Any) -> None:
        self.send_nowait(msg)

    async def recv(self) -> Any:
        msg = await self._inbox.get()
        if msg is None:
            self._inbox.put_nowait(None)
            raise EOFError("end of stream")
        return msg

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._outbox.put_nowait(None)


def pipe() -> tuple[MemoryStream, MemoryStream]:
    a: asyncio.Queue[Any] = asyncio.Queue()
    b: asyncio.Queue[Any] = asyncio.Queue()
    return MemoryStream(a, b), MemoryStream(b, a)


# --- Any packing ---------------------------------------------------------------------------


def pack(msg: Any) -> Any:
    """A protobuf message in an ``Any`` with containerd's type URL (the full name)."""
    from google.protobuf import any_pb2

    return any_pb2.Any(type_url=msg.DESCRIPTOR.full_name, value=msg.SerializeToString())


def type_name(a: Any) -> str:
    return str(a.type_url).rsplit("/", 1)[-1]


def unpack_as(a: Any, cls: type) -> Any:
    """``a`` decoded as ``cls``; InvalidArgument when it holds another type."""
    want = cls.DESCRIPTOR.full_name  # type: ignore[attr-defined]
    if type_name(a) != want:
        raise errdefs.InvalidArgument(f"expected {want}, got {type_name(a) or 'nothing'}")
    msg = cls()
    msg.ParseFromString(a.value)
    return msg


# --- byte streams with flow control --------------------------------------------------------

Reader = Callable[[int], Awaitable[bytes]]
#: how long a sender that half-closed waits for the receiver to end the stream
HALF_CLOSE_LINGER = 10.0


async def send_stream(read: Reader, stream: Stream) -> int:
    """Send what ``read(n)`` gives (b"" = end) as Data messages, never more than the
    receiver's granted window; closes the stream at the end. Returns the bytes sent."""
    from pycontainerd.api.containerd.types.transfer import streaming_pb2 as tpb

    credit = 0
    sent = 0
    credit_event = asyncio.Event()

    async def windows() -> None:
        nonlocal credit
        while True:
            try:
                msg = await stream.recv()
            except EOFError:
                return
            if type_name(msg) == tpb.WindowUpdate.DESCRIPTOR.full_name:
                credit += unpack_as(msg, tpb.WindowUpdate).update
                credit_event.set()

    task = asyncio.get_running_loop().create_task(windows())
    try:
        while True:
            while credit <= 0:
                if task.done():
                    raise EOFError("receiver went away")
                credit_event.clear()
                waiter = asyncio.ensure_future(credit_event.wait())
                await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            data = await read(min(MAX_READ, credit))
            if not data:
                break
            credit -= len(data)
            sent += len(data)
            await stream.send(pack(tpb.Data(data=data)))
    finally:
        # A stream that can half-close (a gRPC client call) says it is done writing and lets
        # the receiver read everything and end the call: cancelling the call (which
        # cancelling a pending read of it does) could drop the last Data messages in flight.
        half_close = getattr(stream, "half_close", None)
        if half_close is not None and not task.done():
            with contextlib.suppress(Exception):
                await half_close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), HALF_CLOSE_LINGER)
        task.cancel()
        await stream.close()
    return sent


async def receive_stream(stream: Stream, window: int = WINDOW_SIZE) -> AsyncIterator[bytes]:
    """The bytes of Data messages on ``stream``, granting ``window`` bytes of credit at a
    time, until the sender closes it."""
    from pycontainerd.api.containerd.types.transfer import streaming_pb2 as tpb

    credit = 0
    try:
        while True:
            if credit < window // 2:
                try:
                    await stream.send(pack(tpb.WindowUpdate(update=window)))
                    credit += window
                except EOFError:
                    pass
            try:
                msg = await stream.recv()
            except EOFError:
                return
            if type_name(msg) != tpb.Data.DESCRIPTOR.full_name:
                continue
            data = unpack_as(msg, tpb.Data).data
            credit -= len(data)
            if data:
                yield data
    finally:
        await stream.close()
