"""gRPC ``containerd.services.sandbox.v1.Store``: proto <-> core conversion only. ``Any``
fields (runtime options, spec, extensions) stay ``(type_url, bytes)`` pairs."""

from __future__ import annotations

import datetime
from typing import Any

from google.protobuf import any_pb2, timestamp_pb2

from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2 as pb
from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import sandbox_pb2 as types_pb
from pycontainerd.core.metadata.containers import Runtime, TypedValue
from pycontainerd.core.metadata.sandboxes import Sandbox, SandboxStore


def _timestamp(t: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    if t is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(t)
    return ts


def _any(value: TypedValue | None) -> any_pb2.Any | None:
    if value is None:
        return None
    return any_pb2.Any(type_url=value[0], value=value[1])


def from_proto(msg: types_pb.Sandbox) -> Sandbox:
    """Creation and update times are the store's: the client's are ignored."""
    runtime = Runtime()
    if msg.HasField("runtime"):
        options = msg.runtime.options
        runtime = Runtime(
            name=msg.runtime.name,
            options=(options.type_url, options.value) if msg.runtime.HasField("options") else None,
        )
    return Sandbox(
        id=msg.sandbox_id,
        runtime=runtime,
        spec=(msg.spec.type_url, msg.spec.value) if msg.HasField("spec") else None,
        labels=dict(msg.labels),
        extensions={k: (v.type_url, v.value) for k, v in msg.extensions.items()},
        sandboxer=msg.sandboxer,
    )


def to_proto(sb: Sandbox) -> types_pb.Sandbox:
    return types_pb.Sandbox(
        sandbox_id=sb.id,
        runtime=types_pb.Sandbox.Runtime(name=sb.runtime.name, options=_any(sb.runtime.options)),
        spec=_any(sb.spec),
        labels=sb.labels,
        created_at=_timestamp(sb.created_at),
        updated_at=_timestamp(sb.updated_at),
        extensions={k: any_pb2.Any(type_url=v[0], value=v[1]) for k, v in sb.extensions.items()},
        sandboxer=sb.sandboxer,
    )


class SandboxStoreService(pb_grpc.StoreServicer):
    def __init__(self, store: SandboxStore) -> None:
        self.store = store

    def register_grpc(self, server: Any) -> None:
        pb_grpc.add_StoreServicer_to_server(self, server)

    async def Create(self, request: pb.StoreCreateRequest, context: Any) -> pb.StoreCreateResponse:  # noqa: N802
        created = await self.store.create(from_proto(request.sandbox))
        return pb.StoreCreateResponse(sandbox=to_proto(created))

    async def Update(self, request: pb.StoreUpdateRequest, context: Any) -> pb.StoreUpdateResponse:  # noqa: N802
        updated = await self.store.update(from_proto(request.sandbox), list(request.fields))
        return pb.StoreUpdateResponse(sandbox=to_proto(updated))

    async def Delete(self, request: pb.StoreDeleteRequest, context: Any) -> pb.StoreDeleteResponse:  # noqa: N802
        await self.store.delete(request.sandbox_id)
        return pb.StoreDeleteResponse()

    async def List(self, request: pb.StoreListRequest, context: Any) -> pb.StoreListResponse:  # noqa: N802
        found = await self.store.list(list(request.filters))
        return pb.StoreListResponse(list=[to_proto(s) for s in found])

    async def Get(self, request: pb.StoreGetRequest, context: Any) -> pb.StoreGetResponse:  # noqa: N802
        return pb.StoreGetResponse(sandbox=to_proto(await self.store.get(request.sandbox_id)))
