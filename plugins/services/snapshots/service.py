"""gRPC front-end of the snapshots service: picks the snapshotter a request names and converts
protos <-> core values (the conversions are shared with the proxy client in
:mod:`pycontainerd.core.snapshots.proxy`). Errors are raised; the server interceptor maps
them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from google.protobuf import empty_pb2

from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2 as pb
from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2_grpc as pb_grpc
from pycontainerd.core import errdefs
from pycontainerd.core.snapshots import Cleaner, Snapshotter
from pycontainerd.core.snapshots.proxy import (
    info_from_proto,
    info_to_proto,
    mounts_to_proto,
    usage_to_proto,
)

log = logging.getLogger(__name__)

#: Infos per List response message (containerd's batch size).
LIST_BATCH = 100


class SnapshotsService(pb_grpc.SnapshotsServicer):
    """Serves ``containerd.services.snapshots.v1.Snapshots`` over a name -> snapshotter map."""

    def __init__(self, snapshotters: Mapping[str, Snapshotter]) -> None:
        self.snapshotters = snapshotters

    def register_grpc(self, server: Any) -> None:
        pb_grpc.add_SnapshotsServicer_to_server(self, server)

    def _get(self, name: str) -> Snapshotter:
        if not name:
            raise errdefs.InvalidArgument("snapshotter argument missing")
        sn = self.snapshotters.get(name)
        if sn is None:
            raise errdefs.InvalidArgument(f"snapshotter not loaded: {name}")
        return sn

    async def Prepare(self, request: pb.PrepareSnapshotRequest, context: Any) -> Any:  # noqa: N802
        log.debug("prepare snapshot key=%s parent=%s", request.key, request.parent)
        sn = self._get(request.snapshotter)
        mounts = await sn.prepare(request.key, request.parent, dict(request.labels))
        return pb.PrepareSnapshotResponse(mounts=mounts_to_proto(mounts))

    async def View(self, request: pb.ViewSnapshotRequest, context: Any) -> Any:  # noqa: N802
        log.debug("prepare view snapshot key=%s parent=%s", request.key, request.parent)
        sn = self._get(request.snapshotter)
        mounts = await sn.view(request.key, request.parent, dict(request.labels))
        return pb.ViewSnapshotResponse(mounts=mounts_to_proto(mounts))

    async def Mounts(self, request: pb.MountsRequest, context: Any) -> Any:  # noqa: N802
        sn = self._get(request.snapshotter)
        return pb.MountsResponse(mounts=mounts_to_proto(await sn.mounts(request.key)))

    async def Commit(self, request: pb.CommitSnapshotRequest, context: Any) -> Any:  # noqa: N802
        log.debug("commit snapshot key=%s name=%s", request.key, request.name)
        sn = self._get(request.snapshotter)
        await sn.commit(request.name, request.key, dict(request.labels))
        return empty_pb2.Empty()

    async def Remove(self, request: pb.RemoveSnapshotRequest, context: Any) -> Any:  # noqa: N802
        log.debug("remove snapshot key=%s", request.key)
        sn = self._get(request.snapshotter)
        await sn.remove(request.key)
        return empty_pb2.Empty()

    async def Stat(self, request: pb.StatSnapshotRequest, context: Any) -> Any:  # noqa: N802
        sn = self._get(request.snapshotter)
        return pb.StatSnapshotResponse(info=info_to_proto(await sn.stat(request.key)))

    async def Update(self, request: pb.UpdateSnapshotRequest, context: Any) -> Any:  # noqa: N802
        sn = self._get(request.snapshotter)
        info = await sn.update(info_from_proto(request.info), list(request.update_mask.paths))
        return pb.UpdateSnapshotResponse(info=info_to_proto(info))

    async def List(  # noqa: N802
        self, request: pb.ListSnapshotsRequest, context: Any
    ) -> AsyncIterator[pb.ListSnapshotsResponse]:
        sn = self._get(request.snapshotter)
        batch: list[pb.Info] = []
        async for info in sn.walk(list(request.filters)):
            batch.append(info_to_proto(info))
            if len(batch) >= LIST_BATCH:
                yield pb.ListSnapshotsResponse(info=batch)
                batch = []
        if batch:
            yield pb.ListSnapshotsResponse(info=batch)

    async def Usage(self, request: pb.UsageRequest, context: Any) -> Any:  # noqa: N802
        sn = self._get(request.snapshotter)
        return usage_to_proto(await sn.usage(request.key))

    async def Cleanup(self, request: pb.CleanupRequest, context: Any) -> Any:  # noqa: N802
        sn = self._get(request.snapshotter)
        if not isinstance(sn, Cleaner):
            raise errdefs.NotImplemented_("snapshotter does not implement cleanup method")
        await sn.cleanup()
        return empty_pb2.Empty()
