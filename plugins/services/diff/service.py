"""gRPC front-end of the diff service (``containerd.services.diff.v1.Diff``): converts protos
<-> core values; errors are raised and mapped by the server interceptor."""

from __future__ import annotations

import datetime
from typing import Any

from pycontainerd.api.containerd.services.diff.v1 import diff_pb2 as pb
from pycontainerd.api.containerd.services.diff.v1 import diff_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import descriptor_pb2
from pycontainerd.core.content import Descriptor
from pycontainerd.core.diff import ApplyConfig, DiffConfig
from pycontainerd.core.snapshots.proxy import mounts_from_proto
from pycontainerd.plugins.services.diff.local import DiffService


def descriptor_to_proto(desc: Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(
        media_type=desc.media_type,
        digest=desc.digest,
        size=desc.size,
        annotations=dict(desc.annotations),
    )


def descriptor_from_proto(msg: descriptor_pb2.Descriptor) -> Descriptor:
    return Descriptor(
        media_type=msg.media_type,
        digest=msg.digest,
        size=msg.size,
        annotations=dict(msg.annotations),
    )


def apply_config_from_proto(request: pb.ApplyRequest) -> ApplyConfig:
    return ApplyConfig(
        processor_payloads={k: v for k, v in request.payloads.items()},
        sync_fs=request.sync_fs,
    )


def diff_config_from_proto(request: pb.DiffRequest) -> DiffConfig:
    epoch = None
    if request.HasField("source_date_epoch"):
        epoch = int(request.source_date_epoch.ToDatetime(tzinfo=datetime.UTC).timestamp())
    return DiffConfig(
        media_type=request.media_type,
        reference=request.ref,
        labels=dict(request.labels),
        source_date_epoch=epoch,
    )


class DiffServicer(pb_grpc.DiffServicer):
    def __init__(self, local: DiffService) -> None:
        self.local = local

    def register_grpc(self, server: Any) -> None:
        pb_grpc.add_DiffServicer_to_server(self, server)

    async def Apply(self, request: pb.ApplyRequest, context: Any) -> Any:  # noqa: N802
        applied = await self.local.apply(
            descriptor_from_proto(request.diff),
            mounts_from_proto(request.mounts),
            apply_config_from_proto(request),
        )
        return pb.ApplyResponse(applied=descriptor_to_proto(applied))

    async def Diff(self, request: pb.DiffRequest, context: Any) -> Any:  # noqa: N802
        desc = await self.local.compare(
            mounts_from_proto(request.left),
            mounts_from_proto(request.right),
            diff_config_from_proto(request),
        )
        return pb.DiffResponse(diff=descriptor_to_proto(desc))
