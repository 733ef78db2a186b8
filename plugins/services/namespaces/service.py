"""gRPC ``containerd.services.namespaces.v1.Namespaces``: proto <-> core conversion only."""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from pycontainerd.api.containerd.services.namespaces.v1 import namespace_pb2 as pb
from pycontainerd.api.containerd.services.namespaces.v1 import namespace_pb2_grpc as pb_grpc
from pycontainerd.plugins.services.namespaces.local import Local, Namespace


def from_proto(msg: pb.Namespace) -> Namespace:
    return Namespace(name=msg.name, labels=dict(msg.labels))


def to_proto(ns: Namespace) -> pb.Namespace:
    return pb.Namespace(name=ns.name, labels=ns.labels)


class NamespacesService(pb_grpc.NamespacesServicer):
    def __init__(self, local: Local) -> None:
        self.local = local

    def register_grpc(self, server: Any) -> None:
        pb_grpc.add_NamespacesServicer_to_server(self, server)

    async def Get(self, request: pb.GetNamespaceRequest, context: Any) -> pb.GetNamespaceResponse:  # noqa: N802
        return pb.GetNamespaceResponse(namespace=to_proto(await self.local.get(request.name)))

    async def List(  # noqa: N802
        self, request: pb.ListNamespacesRequest, context: Any
    ) -> pb.ListNamespacesResponse:
        # containerd ignores ``filter`` here too.
        return pb.ListNamespacesResponse(namespaces=[to_proto(n) for n in await self.local.list()])

    async def Create(  # noqa: N802
        self, request: pb.CreateNamespaceRequest, context: Any
    ) -> pb.CreateNamespaceResponse:
        created = await self.local.create(from_proto(request.namespace))
        return pb.CreateNamespaceResponse(namespace=to_proto(created))

    async def Update(  # noqa: N802
        self, request: pb.UpdateNamespaceRequest, context: Any
    ) -> pb.UpdateNamespaceResponse:
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else []
        updated = await self.local.update(from_proto(request.namespace), paths)
        return pb.UpdateNamespaceResponse(namespace=to_proto(updated))

    async def Delete(self, request: pb.DeleteNamespaceRequest, context: Any) -> empty_pb2.Empty:  # noqa: N802
        await self.local.delete(request.name)
        return empty_pb2.Empty()
