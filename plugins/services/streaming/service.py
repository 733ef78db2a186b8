"""gRPC ``containerd.services.streaming.v1.Streaming``: a bidirectional stream of ``Any``. The
first message is ``StreamInit{id}``; the stream is then registered under the caller's
namespace, acknowledged with an empty ``Any`` (``google.protobuf.Empty``), and carries
messages both ways until the daemon side closes it or the client goes away."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import empty_pb2

from pycontainerd.api.containerd.services.streaming.v1 import streaming_pb2 as pb
from pycontainerd.api.containerd.services.streaming.v1 import streaming_pb2_grpc as pb_grpc
from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.transfer.streaming import StreamManager, pack, unpack_as

log = logging.getLogger(__name__)

_CLOSE = object()


class ServiceStream:
    """The daemon's end of one Streaming call."""

    def __init__(self, requests: Any) -> None:
        self._requests = requests
        self.outgoing: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = False
        self._eof = False

    def send_nowait(self, msg: Any) -> None:
        if self.closed:
            raise EOFError("stream closed")
        self.outgoing.put_nowait(msg)

    async def send(self, msg: Any) -> None:
        self.send_nowait(msg)

    async def recv(self) -> Any:
        if self._eof:
            raise EOFError("end of stream")
        try:
            return await self._requests.__anext__()
        except StopAsyncIteration:
            self._eof = True
            raise EOFError("end of stream") from None

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.outgoing.put_nowait(_CLOSE)


class StreamingService(pb_grpc.StreamingServicer):
    def __init__(self, manager: StreamManager) -> None:
        self.manager = manager

    def register_grpc(self, server: Any) -> None:
        pb_grpc.add_StreamingServicer_to_server(self, server)

    async def Stream(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:  # noqa: N802
        requests = request_iterator.__aiter__()
        try:
            first = await requests.__anext__()
        except StopAsyncIteration:
            return
        init = unpack_as(first, pb.StreamInit)
        ns = namespaces.get() or ""
        ss = ServiceStream(requests)
        self.manager.register(init.id, ss)
        log.debug("registered stream %s", init.id, extra={"namespace": ns})
        try:
            yield pack(empty_pb2.Empty())
            while True:
                item = await ss.outgoing.get()
                if item is _CLOSE:
                    break
                yield item
        finally:
            ss.closed = True
            self.manager.unregister(ns, init.id, ss)


__all__ = ["ServiceStream", "StreamingService", "errdefs"]
