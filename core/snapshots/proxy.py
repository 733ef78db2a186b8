"""A snapshotter in another process, reached over containerd's snapshots gRPC API
(``containerd.services.snapshots.v1.Snapshots``), and the proto <-> core conversions that the
snapshots service front-end shares with it (containerd's ``core/snapshots/proxy``).

Every request carries ``snapshotter = <name>`` (the proxy plugin's ID, as containerd sends it).
As in containerd, the namespace of the call being served travels along as the
``containerd-namespace`` header (containerd's server interceptor copies the incoming namespace
to the outgoing context); the keys a proxy sees are already made unique per namespace by the
metadata layer, so external snapshotters may ignore it. The lease is not forwarded.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import attrs
import grpc
from google.protobuf import field_mask_pb2, timestamp_pb2

from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2 as pb
from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import mount_pb2
from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.mount import Mount
from pycontainerd.core.snapshots import Info, Kind, Usage

log = logging.getLogger(__name__)

#: Largest message a proxy client sends or accepts (containerd's default, 16 MiB).
MAX_MESSAGE_SIZE = 16 << 20

# --------------------------------------------------------------------------- conversions


def timestamp_to_proto(t: datetime.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(t)
    return ts


def timestamp_from_proto(ts: timestamp_pb2.Timestamp) -> datetime.datetime:
    return ts.ToDatetime(tzinfo=datetime.UTC)


def mount_to_proto(m: Mount) -> mount_pb2.Mount:
    return mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=list(m.options))


def mount_from_proto(m: mount_pb2.Mount) -> Mount:
    return Mount(type=m.type, source=m.source, target=m.target, options=tuple(m.options))


def mounts_to_proto(mounts: Sequence[Mount]) -> list[mount_pb2.Mount]:
    return [mount_to_proto(m) for m in mounts]


def mounts_from_proto(mounts: Sequence[mount_pb2.Mount]) -> list[Mount]:
    return [mount_from_proto(m) for m in mounts]


def kind_to_proto(kind: Kind) -> int:
    return {
        Kind.VIEW: pb.VIEW,
        Kind.ACTIVE: pb.ACTIVE,
        Kind.COMMITTED: pb.COMMITTED,
    }.get(kind, pb.UNKNOWN)


def kind_from_proto(kind: int) -> Kind:
    return {pb.VIEW: Kind.VIEW, pb.ACTIVE: Kind.ACTIVE, pb.COMMITTED: Kind.COMMITTED}.get(
        kind, Kind.UNKNOWN
    )


def info_to_proto(info: Info) -> pb.Info:
    return pb.Info(
        name=info.name,
        parent=info.parent,
        kind=kind_to_proto(info.kind),  # type: ignore[arg-type]
        created_at=timestamp_to_proto(info.created_at),
        updated_at=timestamp_to_proto(info.updated_at),
        labels=dict(info.labels),
    )


def info_from_proto(msg: pb.Info) -> Info:
    return Info(
        name=msg.name,
        parent=msg.parent,
        kind=kind_from_proto(msg.kind),
        created_at=timestamp_from_proto(msg.created_at),
        updated_at=timestamp_from_proto(msg.updated_at),
        labels=dict(msg.labels),
    )


def usage_to_proto(usage: Usage) -> pb.UsageResponse:
    return pb.UsageResponse(size=usage.size, inodes=usage.inodes)


def usage_from_proto(msg: pb.UsageResponse) -> Usage:
    return Usage(size=msg.size, inodes=msg.inodes)


# --------------------------------------------------------------------------- the proxy


def dial(address: str) -> grpc.aio.Channel:
    """A channel to a snapshots service on a unix socket (``/path`` or ``unix:///path``)."""
    path = address[len("unix://") :] if address.startswith("unix://") else address
    return grpc.aio.insecure_channel(
        f"unix:{path}",
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
            ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
            ("grpc.max_reconnect_backoff_ms", 3000),
        ],
    )


def _metadata() -> tuple[tuple[str, str], ...] | None:
    ns = namespaces.get()
    return ((namespaces.GRPC_HEADER, ns),) if ns else None


@attrs.define(eq=False)
class ProxySnapshotter:
    """Implements :class:`pycontainerd.core.snapshots.Snapshotter` (and ``Cleaner``) over a
    gRPC channel. ``name`` is sent as the ``snapshotter`` field of every request. The channel
    is closed by :meth:`close` only when the proxy owns it."""

    channel: grpc.aio.Channel
    name: str
    owns_channel: bool = True
    _stub: Any = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._stub = pb_grpc.SnapshotsStub(self.channel)

    @classmethod
    def connect(cls, address: str, name: str) -> ProxySnapshotter:
        """A proxy on its own channel to ``address``; the connection is made on first use."""
        return cls(dial(address), name, owns_channel=True)

    async def _call(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self._stub, method)(request, metadata=_metadata())
        except grpc.RpcError as e:
            raise errdefs.from_grpc(e) from None

    async def stat(self, key: str) -> Info:
        resp = await self._call("Stat", pb.StatSnapshotRequest(snapshotter=self.name, key=key))
        return info_from_proto(resp.info)

    async def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        resp = await self._call(
            "Update",
            pb.UpdateSnapshotRequest(
                snapshotter=self.name,
                info=info_to_proto(info),
                update_mask=field_mask_pb2.FieldMask(paths=list(fieldpaths)),
            ),
        )
        return info_from_proto(resp.info)

    async def usage(self, key: str) -> Usage:
        resp = await self._call("Usage", pb.UsageRequest(snapshotter=self.name, key=key))
        return usage_from_proto(resp)

    async def mounts(self, key: str) -> list[Mount]:
        resp = await self._call("Mounts", pb.MountsRequest(snapshotter=self.name, key=key))
        return mounts_from_proto(resp.mounts)

    async def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        resp = await self._call(
            "Prepare",
            pb.PrepareSnapshotRequest(
                snapshotter=self.name, key=key, parent=parent, labels=dict(labels or {})
            ),
        )
        return mounts_from_proto(resp.mounts)

    async def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        resp = await self._call(
            "View",
            pb.ViewSnapshotRequest(
                snapshotter=self.name, key=key, parent=parent, labels=dict(labels or {})
            ),
        )
        return mounts_from_proto(resp.mounts)

    async def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        await self._call(
            "Commit",
            pb.CommitSnapshotRequest(
                snapshotter=self.name, name=name, key=key, labels=dict(labels or {})
            ),
        )

    async def remove(self, key: str) -> None:
        await self._call("Remove", pb.RemoveSnapshotRequest(snapshotter=self.name, key=key))

    async def walk(self, filters: Sequence[str] = ()) -> AsyncIterator[Info]:
        call = self._stub.List(
            pb.ListSnapshotsRequest(snapshotter=self.name, filters=list(filters)),
            metadata=_metadata(),
        )
        try:
            async for resp in call:
                for msg in resp.info:
                    yield info_from_proto(msg)
        except grpc.RpcError as e:
            raise errdefs.from_grpc(e) from None
        finally:
            call.cancel()

    async def cleanup(self) -> None:
        await self._call("Cleanup", pb.CleanupRequest(snapshotter=self.name))

    async def close(self) -> None:
        if self.owns_channel:
            await self.channel.close()
