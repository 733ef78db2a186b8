"""Async clients of the daemon's content, images, leases and diff gRPC services that implement
the core contracts (content ``Store``, the image store, the lease ``Manager``, ``Applier``), so
that the image import and unpack code of ``core/images`` and ``core/unpack`` runs client-side
exactly as it runs in process. Snapshots use :class:`pycontainerd.core.snapshots.proxy.
ProxySnapshotter` on the same channel.

Every call carries ``containerd-namespace`` (the current namespace) and, when a lease is
current (:func:`pycontainerd.core.leases.use`), ``containerd-lease``: what the calls create is
then held by the lease, as with containerd's Go client.
"""

from __future__ import annotations

import builtins
import datetime
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import attrs
import grpc
from google.protobuf import field_mask_pb2, timestamp_pb2

from pycontainerd.api.containerd.services.content.v1 import content_pb2 as cpb
from pycontainerd.api.containerd.services.content.v1 import content_pb2_grpc as cpb_grpc
from pycontainerd.api.containerd.services.diff.v1 import diff_pb2 as dpb
from pycontainerd.api.containerd.services.diff.v1 import diff_pb2_grpc as dpb_grpc
from pycontainerd.api.containerd.services.images.v1 import images_pb2 as ipb
from pycontainerd.api.containerd.services.images.v1 import images_pb2_grpc as ipb_grpc
from pycontainerd.api.containerd.services.leases.v1 import leases_pb2 as lpb
from pycontainerd.api.containerd.services.leases.v1 import leases_pb2_grpc as lpb_grpc
from pycontainerd.api.containerd.types import descriptor_pb2, mount_pb2
from pycontainerd.core import errdefs, leases, namespaces
from pycontainerd.core.content import Descriptor, Info, Status
from pycontainerd.core.diff import ApplyConfig
from pycontainerd.core.leases import Lease
from pycontainerd.core.metadata.images import Image
from pycontainerd.core.mount import Mount

MAX_MESSAGE = 16 << 20
#: Bytes per Write message (containerd's proxy writer sends what it is given; 1 MiB here).
WRITE_CHUNK = 1 << 20


def _metadata() -> tuple[tuple[str, str], ...]:
    md = [(namespaces.GRPC_HEADER, namespaces.get() or namespaces.DEFAULT)]
    lease = leases.get()
    if lease:
        md.append((leases.GRPC_HEADER, lease))
    return tuple(md)


class _LeaseInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Adds the current lease to calls made by clients that only send the namespace."""

    def _details(self, d: Any) -> Any:
        md = list(d.metadata or ())
        lease = leases.get()
        if lease and not any(k == leases.GRPC_HEADER for k, _ in md):
            md.append((leases.GRPC_HEADER, lease))
        if not any(k == namespaces.GRPC_HEADER for k, _ in md):
            md.append((namespaces.GRPC_HEADER, namespaces.get() or namespaces.DEFAULT))
        return grpc.aio.ClientCallDetails(
            d.method, d.timeout, tuple(md), d.credentials, d.wait_for_ready
        )

    async def intercept_unary_unary(self, cont, d, req):  # type: ignore[no-untyped-def]
        return await cont(self._details(d), req)

    async def intercept_unary_stream(self, cont, d, req):  # type: ignore[no-untyped-def]
        return await cont(self._details(d), req)

    async def intercept_stream_stream(self, cont, d, it):  # type: ignore[no-untyped-def]
        return await cont(self._details(d), it)


def dial(address: str) -> grpc.aio.Channel:
    path = address[len("unix://") :] if address.startswith("unix://") else address
    target = path if path.startswith("unix:") else f"unix:{path}"
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
        interceptors=[_LeaseInterceptor()],
    )


def _err(e: grpc.RpcError) -> errdefs.ContainerdError:
    return errdefs.from_grpc(e)


def _ts(ts: timestamp_pb2.Timestamp) -> datetime.datetime:
    return ts.ToDatetime(tzinfo=datetime.UTC)


def _pts(t: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    if t is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(t)
    return ts


def descriptor_to_proto(d: Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(
        media_type=d.media_type, digest=d.digest, size=d.size, annotations=dict(d.annotations)
    )


def descriptor_from_proto(m: descriptor_pb2.Descriptor) -> Descriptor:
    return Descriptor(
        media_type=m.media_type, digest=m.digest, size=m.size, annotations=dict(m.annotations)
    )


def _info(m: cpb.Info) -> Info:
    return Info(
        digest=m.digest,
        size=m.size,
        created_at=_ts(m.created_at),
        updated_at=_ts(m.updated_at),
        labels=dict(m.labels),
    )


# --- content ------------------------------------------------------------------------------


@attrs.define(eq=False)
class RemoteReader:
    _stub: Any
    _digest: str
    _size: int

    @property
    def size(self) -> int:
        return self._size

    async def read_at(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0:
            raise errdefs.InvalidArgument(f"invalid read at offset {offset} of {n} bytes")
        if n == 0 or offset >= self._size:
            return b""
        n = min(n, self._size - offset)
        parts: list[bytes] = []
        try:
            async for resp in self._stub.Read(
                cpb.ReadContentRequest(digest=self._digest, offset=offset, size=n),
                metadata=_metadata(),
            ):
                parts.append(resp.data)
        except grpc.RpcError as e:
            raise _err(e) from None
        return b"".join(parts)

    async def close(self) -> None:
        pass


@attrs.define(eq=False)
class RemoteWriter:
    """One Write stream: STAT on open, WRITE per chunk, COMMIT at the end."""

    _call: Any
    _ref: str
    _offset: int = 0
    _total: int = 0
    _expected: str = ""
    _digest: str = ""
    _started: datetime.datetime = attrs.Factory(lambda: datetime.datetime.now(datetime.UTC))
    _closed: bool = False

    async def _send(self, req: cpb.WriteContentRequest) -> cpb.WriteContentResponse:
        try:
            await self._call.write(req)
            resp = await self._call.read()
        except grpc.RpcError as e:
            self._closed = True
            raise _err(e) from None
        if resp is grpc.aio.EOF:
            self._closed = True
            try:
                await self._call
            except grpc.RpcError as e:
                raise _err(e) from None
            raise errdefs.Unavailable(f"content write stream for {self._ref!r} ended")
        return resp

    async def _stat(self) -> None:
        resp = await self._send(
            cpb.WriteContentRequest(
                action=cpb.STAT, ref=self._ref, total=self._total, expected=self._expected
            )
        )
        self._offset, self._digest = resp.offset, resp.digest
        if resp.total:
            self._total = resp.total

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        for i in range(0, len(view), WRITE_CHUNK):
            chunk = bytes(view[i : i + WRITE_CHUNK])
            resp = await self._send(
                cpb.WriteContentRequest(
                    action=cpb.WRITE, ref=self._ref, offset=self._offset, data=chunk
                )
            )
            self._offset, self._digest = resp.offset, resp.digest
        return len(view)

    def digest(self) -> str:
        return self._digest

    def status(self) -> Status:
        return Status(
            ref=self._ref,
            offset=self._offset,
            total=self._total,
            expected=self._expected,
            started_at=self._started,
            updated_at=self._started,
        )

    async def commit(
        self, size: int = 0, expected: str = "", labels: Mapping[str, str] | None = None
    ) -> None:
        try:
            resp = await self._send(
                cpb.WriteContentRequest(
                    action=cpb.COMMIT,
                    ref=self._ref,
                    offset=self._offset,
                    total=size,
                    expected=expected,
                    labels=dict(labels or {}),
                )
            )
            self._digest = resp.digest
            if expected and resp.digest and resp.digest != expected:
                raise errdefs.FailedPrecondition(
                    f"unexpected digest {resp.digest}, expected {expected}"
                )
        finally:
            await self.close()

    async def truncate(self, size: int) -> None:
        """Only to 0: a WRITE at offset 0 makes the service start the ingest over."""
        if size != 0:
            raise errdefs.NotImplemented_("content writer truncate over grpc is only to 0")
        resp = await self._send(cpb.WriteContentRequest(action=cpb.WRITE, ref=self._ref))
        self._offset, self._digest = resp.offset, resp.digest

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._call.done_writing()
        except (grpc.RpcError, Exception):  # noqa: BLE001 - stream already gone
            pass
        self._call.cancel()


@attrs.define(eq=False)
class RemoteContentStore:
    """:class:`pycontainerd.core.content.Store` over the Content service."""

    channel: grpc.aio.Channel
    _stub: Any = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._stub = cpb_grpc.ContentStub(self.channel)

    async def info(self, dgst: str) -> Info:
        try:
            resp = await self._stub.Info(cpb.InfoRequest(digest=dgst), metadata=_metadata())
        except grpc.RpcError as e:
            raise _err(e) from None
        return _info(resp.info)

    async def update(self, info: Info, fieldpaths: Sequence[str] | None = None) -> Info:
        req = cpb.UpdateRequest(
            info=cpb.Info(digest=info.digest, size=info.size, labels=dict(info.labels)),
            update_mask=field_mask_pb2.FieldMask(paths=list(fieldpaths or [])),
        )
        try:
            resp = await self._stub.Update(req, metadata=_metadata())
        except grpc.RpcError as e:
            raise _err(e) from None
        return _info(resp.info)

    async def walk(self, filters: Sequence[str] = ()) -> AsyncIterator[Info]:
        try:
            async for resp in self._stub.List(
                cpb.ListContentRequest(filters=list(filters)), metadata=_metadata()
            ):
                for i in resp.info:
                    yield _info(i)
        except grpc.RpcError as e:
            raise _err(e) from None

    async def delete(self, dgst: str) -> None:
        try:
            await self._stub.Delete(cpb.DeleteContentRequest(digest=dgst), metadata=_metadata())
        except grpc.RpcError as e:
            raise _err(e) from None

    async def reader_at(self, desc: Descriptor) -> RemoteReader:
        size = desc.size if desc.size > 0 else (await self.info(desc.digest)).size
        return RemoteReader(self._stub, desc.digest, size)

    async def status(self, ref: str) -> Status:
        try:
            resp = await self._stub.Status(cpb.StatusRequest(ref=ref), metadata=_metadata())
        except grpc.RpcError as e:
            raise _err(e) from None
        s = resp.status
        return Status(ref=s.ref, offset=s.offset, total=s.total, expected=s.expected)

    async def list_statuses(self, filters: Sequence[str] = ()) -> list[Status]:
        try:
            resp = await self._stub.ListStatuses(
                cpb.ListStatusesRequest(filters=list(filters)), metadata=_metadata()
            )
        except grpc.RpcError as e:
            raise _err(e) from None
        return [
            Status(ref=s.ref, offset=s.offset, total=s.total, expected=s.expected)
            for s in resp.statuses
        ]

    async def abort(self, ref: str) -> None:
        try:
            await self._stub.Abort(cpb.AbortRequest(ref=ref), metadata=_metadata())
        except grpc.RpcError as e:
            raise _err(e) from None

    async def writer(self, ref: str, total: int = 0, expected: str = "") -> RemoteWriter:
        call = self._stub.Write(metadata=_metadata())
        w = RemoteWriter(call, ref, total=total, expected=expected)
        try:
            await w._stat()
        except BaseException:
            await w.close()
            raise
        return w


# --- images -------------------------------------------------------------------------------


def image_to_proto(img: Image) -> ipb.Image:
    return ipb.Image(
        name=img.name,
        labels=dict(img.labels),
        target=descriptor_to_proto(img.target),
        created_at=_pts(img.created_at),
        updated_at=_pts(img.updated_at),
    )


def image_from_proto(m: ipb.Image) -> Image:
    return Image(
        name=m.name,
        labels=dict(m.labels),
        target=descriptor_from_proto(m.target),
        created_at=_ts(m.created_at) if m.HasField("created_at") else None,
        updated_at=_ts(m.updated_at) if m.HasField("updated_at") else None,
    )


@attrs.define(eq=False)
class RemoteImageStore:
    channel: grpc.aio.Channel
    _stub: Any = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._stub = ipb_grpc.ImagesStub(self.channel)

    async def _call(self, method: str, req: Any) -> Any:
        try:
            return await getattr(self._stub, method)(req, metadata=_metadata())
        except grpc.RpcError as e:
            raise _err(e) from None

    async def get(self, name: str) -> Image:
        return image_from_proto((await self._call("Get", ipb.GetImageRequest(name=name))).image)

    async def list(self, filters: Sequence[str] = ()) -> builtins.list[Image]:
        resp = await self._call("List", ipb.ListImagesRequest(filters=list(filters)))
        return [image_from_proto(i) for i in resp.images]

    async def create(self, image: Image) -> Image:
        resp = await self._call("Create", ipb.CreateImageRequest(image=image_to_proto(image)))
        return image_from_proto(resp.image)

    async def update(self, image: Image, fieldpaths: Sequence[str] = ()) -> Image:
        req = ipb.UpdateImageRequest(image=image_to_proto(image))
        if fieldpaths:
            req.update_mask.paths.extend(fieldpaths)
        return image_from_proto((await self._call("Update", req)).image)

    async def delete(self, name: str, *, sync: bool = False, target: str = "") -> None:
        req = ipb.DeleteImageRequest(name=name, sync=sync)
        if target:
            req.target.CopyFrom(descriptor_pb2.Descriptor(digest=target))
        await self._call("Delete", req)


# --- leases -------------------------------------------------------------------------------


def _lease(m: lpb.Lease) -> Lease:
    return Lease(id=m.id, created_at=_ts(m.created_at), labels=dict(m.labels))


@attrs.define(eq=False)
class RemoteLeases:
    channel: grpc.aio.Channel
    _stub: Any = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._stub = lpb_grpc.LeasesStub(self.channel)

    async def _call(self, method: str, req: Any) -> Any:
        try:
            return await getattr(self._stub, method)(req, metadata=_metadata())
        except grpc.RpcError as e:
            raise _err(e) from None

    async def create(self, id: str, labels: Mapping[str, str] | None = None) -> Lease:  # noqa: A002
        resp = await self._call("Create", lpb.CreateRequest(id=id, labels=dict(labels or {})))
        return _lease(resp.lease)

    async def delete(self, id: str, *, sync: bool = False) -> None:  # noqa: A002
        await self._call("Delete", lpb.DeleteRequest(id=id, sync=sync))

    async def list(self, filters: builtins.list[str] | None = None) -> builtins.list[Lease]:
        resp = await self._call("List", lpb.ListRequest(filters=list(filters or [])))
        return [_lease(m) for m in resp.leases]


# --- diff ---------------------------------------------------------------------------------


@attrs.define(eq=False)
class RemoteApplier:
    """:class:`pycontainerd.core.diff.Applier` over the Diff service."""

    channel: grpc.aio.Channel
    _stub: Any = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._stub = dpb_grpc.DiffStub(self.channel)

    async def apply(
        self, desc: Descriptor, mounts: Sequence[Mount], config: ApplyConfig | None = None
    ) -> Descriptor:
        req = dpb.ApplyRequest(
            diff=descriptor_to_proto(desc),
            mounts=[
                mount_pb2.Mount(
                    type=m.type, source=m.source, target=m.target, options=list(m.options)
                )
                for m in mounts
            ],
            sync_fs=bool(config and config.sync_fs),
        )
        try:
            resp = await self._stub.Apply(req, metadata=_metadata())
        except grpc.RpcError as e:
            raise _err(e) from None
        return descriptor_from_proto(resp.applied)
