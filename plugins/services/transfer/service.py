"""gRPC ``containerd.services.transfer.v1.Transfer``: decodes the source and destination
``Any`` into transfer objects (an auth stream id becomes a credentials callback over that
stream), sends ``containerd.types.transfer.Progress`` on the progress stream, and hands the
pair to the first transferrer that implements it."""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf import empty_pb2

from pycontainerd.api.containerd.services.transfer.v1 import transfer_pb2 as pb
from pycontainerd.api.containerd.services.transfer.v1 import transfer_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types.transfer import imagestore_pb2, registry_pb2
from pycontainerd.core import errdefs
from pycontainerd.core.transfer import Progress
from pycontainerd.core.transfer import proto as tproto
from pycontainerd.core.transfer.streaming import StreamManager, pack, type_name, unpack_as

log = logging.getLogger(__name__)


class TransferService(pb_grpc.TransferServicer):
    def __init__(self, transferrers: list[Any], manager: StreamManager) -> None:
        self.transferrers = transferrers
        self.manager = manager

    def register_grpc(self, server: Any) -> None:
        pb_grpc.add_TransferServicer_to_server(self, server)

    def decode(self, a: Any) -> Any:
        name = type_name(a)
        if name == registry_pb2.OCIRegistry.DESCRIPTOR.full_name:
            return tproto.registry_from_proto(
                unpack_as(a, registry_pb2.OCIRegistry), self.manager.get
            )
        if name == imagestore_pb2.ImageStore.DESCRIPTOR.full_name:
            return tproto.imagestore_from_proto(unpack_as(a, imagestore_pb2.ImageStore))
        from pycontainerd.core.transfer import archive

        obj = archive.from_any(a, self.manager.get)
        if obj is not None:
            return obj
        raise errdefs.NotImplemented_(f"transfer type {name or 'nothing'} not supported")

    async def Transfer(self, request: pb.TransferRequest, context: Any) -> empty_pb2.Empty:  # noqa: N802
        stream = None
        progress = None
        if request.HasField("options") and request.options.progress_stream:
            stream = self.manager.get(request.options.progress_stream)

            def progress(p: Progress) -> None:
                assert stream is not None
                try:
                    stream.send_nowait(pack(tproto.progress_to_proto(p)))
                except EOFError:
                    pass

        try:
            src = self.decode(request.source)
            dst = self.decode(request.destination)
            for t in self.transferrers:
                try:
                    await t.transfer(src, dst, progress=progress)
                    return empty_pb2.Empty()
                except errdefs.NotImplemented_:
                    log.debug("transferrer %r does not handle %s -> %s", t, src, dst)
                    continue
            raise errdefs.NotImplemented_(
                f"method Transfer not implemented for {type_name(request.source)} to "
                f"{type_name(request.destination)}"
            )
        finally:
            if stream is not None:
                await stream.close()
