"""gRPC ``containerd.services.containers.v1.Containers``: proto <-> core conversion only.
``Any`` fields (runtime options, spec, extensions) stay ``(type_url, bytes)`` pairs."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import any_pb2, empty_pb2, timestamp_pb2

from pycontainerd.api.containerd.services.containers.v1 import containers_pb2 as pb
from pycontainerd.api.containerd.services.containers.v1 import containers_pb2_grpc as pb_grpc
from pycontainerd.core.metadata.containers import Container, Runtime, TypedValue
from pycontainerd.plugins.services.containers.local import Local


def timestamp_to_proto(t: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    if t is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(t)
    return ts


def any_from_proto(msg: any_pb2.Any) -> TypedValue:
    return (msg.type_url, msg.value)


def any_to_proto(value: TypedValue | None) -> any_pb2.Any | None:
    if value is None:
        return None
    return any_pb2.Any(type_url=value[0], value=value[1])


def from_proto(msg: pb.Container) -> Container:
    """Creation and update times are the store's: the client's are ignored."""
    runtime = Runtime()
    if msg.HasField("runtime"):
        runtime = Runtime(
            name=msg.runtime.name,
            options=any_from_proto(msg.runtime.options)
            if msg.runtime.HasField("options")
            else None,
        )
    return Container(
        id=msg.id,
        labels=dict(msg.labels),
        image=msg.image,
        runtime=runtime,
        spec=any_from_proto(msg.spec) if msg.HasField("spec") else None,
        snapshotter=msg.snapshotter,
        snapshot_key=msg.snapshot_key,
        extensions={k: any_from_proto(v) for k, v in msg.extensions.items()},
        sandbox=msg.sandbox,
    )


def to_proto(c: Container) -> pb.Container:
    return pb.Container(
        id=c.id,
        labels=c.labels,
        image=c.image,
        runtime=pb.Container.Runtime(name=c.runtime.name, options=any_to_proto(c.runtime.options)),
        spec=any_to_proto(c.spec),
        snapshotter=c.snapshotter,
        snapshot_key=c.snapshot_key,
        created_at=timestamp_to_proto(c.created_at),
        updated_at=timestamp_to_proto(c.updated_at),
        extensions={k: any_pb2.Any(type_url=v[0], value=v[1]) for k, v in c.extensions.items()},
        sandbox=c.sandbox,
    )


class ContainersService(pb_grpc.ContainersServicer):
    def __init__(self, local: Local) -> None:
        self.local = local

    def register_grpc(self, server: Any) -> None:
        pb_grpc.add_ContainersServicer_to_server(self, server)

    async def Get(self, request: pb.GetContainerRequest, context: Any) -> pb.GetContainerResponse:  # noqa: N802
        return pb.GetContainerResponse(container=to_proto(await self.local.get(request.id)))

    async def List(  # noqa: N802
        self, request: pb.ListContainersRequest, context: Any
    ) -> pb.ListContainersResponse:
        found = await self.local.list(list(request.filters))
        return pb.ListContainersResponse(containers=[to_proto(c) for c in found])

    async def ListStream(  # noqa: N802
        self, request: pb.ListContainersRequest, context: Any
    ) -> AsyncIterator[pb.ListContainerMessage]:
        async for c in self.local.list_stream(list(request.filters)):
            yield pb.ListContainerMessage(container=to_proto(c))

    async def Create(  # noqa: N802
        self, request: pb.CreateContainerRequest, context: Any
    ) -> pb.CreateContainerResponse:
        created = await self.local.create(from_proto(request.container))
        return pb.CreateContainerResponse(container=to_proto(created))

    async def Update(  # noqa: N802
        self, request: pb.UpdateContainerRequest, context: Any
    ) -> pb.UpdateContainerResponse:
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else []
        updated = await self.local.update(from_proto(request.container), paths)
        return pb.UpdateContainerResponse(container=to_proto(updated))

    async def Delete(self, request: pb.DeleteContainerRequest, context: Any) -> empty_pb2.Empty:  # noqa: N802
        await self.local.delete(request.id)
        return empty_pb2.Empty()
