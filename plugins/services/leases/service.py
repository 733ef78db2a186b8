"""gRPC ``containerd.services.leases.v1.Leases``: proto <-> core conversion only. As in
containerd, a Create without an id gets a random one (``<nanoseconds>-<base64 of 3 bytes>``)."""

from __future__ import annotations

import base64
import os
import time
from typing import Any

from google.protobuf import empty_pb2, timestamp_pb2

from pycontainerd.api.containerd.services.leases.v1 import leases_pb2 as pb
from pycontainerd.api.containerd.services.leases.v1 import leases_pb2_grpc as pb_grpc
from pycontainerd.core import errdefs
from pycontainerd.core.leases import Lease, Manager, Resource


def random_id() -> str:
    """A lease id in containerd's ``WithRandomID`` form."""
    return f"{time.time_ns() % 1_000_000_000}-{base64.urlsafe_b64encode(os.urandom(3)).decode()}"


def to_proto(lease: Lease) -> pb.Lease:
    out = pb.Lease(id=lease.id, labels=dict(lease.labels))
    if lease.created_at is not None:
        ts = timestamp_pb2.Timestamp()
        ts.FromDatetime(lease.created_at)
        out.created_at.CopyFrom(ts)
    return out


def resource_from_proto(msg: pb.Resource) -> Resource:
    return Resource(id=msg.id, type=msg.type)


def resource_to_proto(r: Resource) -> pb.Resource:
    return pb.Resource(id=r.id, type=r.type)


def _resource(request: pb.AddResourceRequest | pb.DeleteResourceRequest) -> Resource:
    if not request.HasField("resource"):
        raise errdefs.InvalidArgument(f"lease {request.id!r}: resource is required")
    return resource_from_proto(request.resource)


class LeasesService(pb_grpc.LeasesServicer):
    def __init__(self, manager: Manager) -> None:
        self.manager = manager

    def register_grpc(self, server: Any) -> None:
        pb_grpc.add_LeasesServicer_to_server(self, server)

    async def Create(self, request: pb.CreateRequest, context: Any) -> pb.CreateResponse:  # noqa: N802
        lease = await self.manager.create(request.id or random_id(), dict(request.labels))
        return pb.CreateResponse(lease=to_proto(lease))

    async def Delete(self, request: pb.DeleteRequest, context: Any) -> empty_pb2.Empty:  # noqa: N802
        await self.manager.delete(request.id, sync=request.sync)
        return empty_pb2.Empty()

    async def List(self, request: pb.ListRequest, context: Any) -> pb.ListResponse:  # noqa: N802
        found = await self.manager.list(list(request.filters))
        return pb.ListResponse(leases=[to_proto(x) for x in found])

    async def AddResource(self, request: pb.AddResourceRequest, context: Any) -> empty_pb2.Empty:  # noqa: N802
        await self.manager.add_resource(request.id, _resource(request))
        return empty_pb2.Empty()

    async def DeleteResource(  # noqa: N802
        self, request: pb.DeleteResourceRequest, context: Any
    ) -> empty_pb2.Empty:
        await self.manager.delete_resource(request.id, _resource(request))
        return empty_pb2.Empty()

    async def ListResources(  # noqa: N802
        self, request: pb.ListResourcesRequest, context: Any
    ) -> pb.ListResourcesResponse:
        found = await self.manager.list_resources(request.id)
        return pb.ListResourcesResponse(resources=[resource_to_proto(r) for r in found])
