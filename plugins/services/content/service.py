"""gRPC front-end of the content service (``containerd.services.content.v1.Content``): converts
protos <-> :mod:`pycontainerd.core.content` values and drives the store. Errors are raised; the
server interceptor maps them to status codes.

Write follows containerd's service message by message: the first request must name a ``ref``
(its ``total``/``expected`` open the writer); every request is answered with the action, the
offset, and for STAT the digest so far, timestamps and total; WRITE and COMMIT append ``data``
at the current offset (a non-zero ``offset`` must equal it, zero with data already written
restarts the ingest); an ``expected`` digest already committed aborts the ingest with
AlreadyExists; COMMIT verifies ``total``/``expected`` and applies ``labels``. When the stream
ends normally the last response is sent once more, as containerd's service does.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import empty_pb2, timestamp_pb2

from pycontainerd.api.containerd.services.content.v1 import content_pb2 as pb
from pycontainerd.api.containerd.services.content.v1 import content_pb2_grpc as pb_grpc
from pycontainerd.core import errdefs
from pycontainerd.core.content import Descriptor, Info, Status, Store, digests

log = logging.getLogger(__name__)

#: Infos per List response message (containerd's batch size).
LIST_BATCH = 100
#: Largest data chunk in one Read response.
READ_CHUNK = 1 << 20

# --------------------------------------------------------------------------- conversions


def _ts(t: datetime.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(t)
    return ts


def _time(ts: timestamp_pb2.Timestamp) -> datetime.datetime:
    return ts.ToDatetime(tzinfo=datetime.UTC)


def info_to_proto(info: Info) -> pb.Info:
    return pb.Info(
        digest=info.digest,
        size=info.size,
        created_at=_ts(info.created_at),
        updated_at=_ts(info.updated_at),
        labels=dict(info.labels),
    )


def info_from_proto(msg: pb.Info) -> Info:
    return Info(
        digest=msg.digest,
        size=msg.size,
        created_at=_time(msg.created_at),
        updated_at=_time(msg.updated_at),
        labels=dict(msg.labels),
    )


def status_to_proto(st: Status) -> pb.Status:
    return pb.Status(
        started_at=_ts(st.started_at),
        updated_at=_ts(st.updated_at),
        ref=st.ref,
        offset=st.offset,
        total=st.total,
        expected=st.expected,
    )


def status_from_proto(msg: pb.Status) -> Status:
    return Status(
        ref=msg.ref,
        offset=msg.offset,
        total=msg.total,
        expected=msg.expected,
        started_at=_time(msg.started_at),
        updated_at=_time(msg.updated_at),
    )


def _valid(dgst: str) -> str:
    if not digests.is_valid(dgst):
        raise errdefs.InvalidArgument(f'"{dgst}" failed validation')
    return dgst


# --------------------------------------------------------------------------- the servicer


class ContentService(pb_grpc.ContentServicer):
    """Serves ``containerd.services.content.v1.Content`` over a (namespaced) content store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def register_grpc(self, server: Any) -> None:
        pb_grpc.add_ContentServicer_to_server(self, server)

    async def Info(self, request: pb.InfoRequest, context: Any) -> Any:  # noqa: N802
        info = await self.store.info(_valid(request.digest))
        return pb.InfoResponse(info=info_to_proto(info))

    async def Update(self, request: pb.UpdateRequest, context: Any) -> Any:  # noqa: N802
        _valid(request.info.digest)
        info = await self.store.update(
            info_from_proto(request.info), list(request.update_mask.paths)
        )
        return pb.UpdateResponse(info=info_to_proto(info))

    async def List(  # noqa: N802
        self, request: pb.ListContentRequest, context: Any
    ) -> AsyncIterator[pb.ListContentResponse]:
        batch: list[pb.Info] = []
        async for info in self.store.walk(list(request.filters)):
            batch.append(info_to_proto(info))
            if len(batch) >= LIST_BATCH:
                yield pb.ListContentResponse(info=batch)
                batch = []
        if batch:
            yield pb.ListContentResponse(info=batch)

    async def Delete(self, request: pb.DeleteContentRequest, context: Any) -> Any:  # noqa: N802
        log.debug("delete content digest=%s", request.digest)
        digests.validate(request.digest)
        await self.store.delete(request.digest)
        return empty_pb2.Empty()

    async def Read(  # noqa: N802
        self, request: pb.ReadContentRequest, context: Any
    ) -> AsyncIterator[pb.ReadContentResponse]:
        dgst = request.digest
        try:
            digests.validate(dgst)
        except errdefs.InvalidArgument as e:
            raise errdefs.InvalidArgument(f"{dgst}: {e}") from None
        await self.store.info(dgst)
        ra = await self.store.reader_at(Descriptor(digest=dgst))
        try:
            actual = ra.size
            offset = max(request.offset, 0)
            if offset > actual:
                raise errdefs.OutOfRange(f"read past object length {actual} bytes")
            size = request.size
            if size <= 0 or offset + size > actual:
                size = actual - offset
            end = offset + size
            while offset < end:
                data = await ra.read_at(offset, min(READ_CHUNK, end - offset))
                if not data:
                    raise errdefs.DataLoss(f"blob {dgst}: short read at offset {offset}")
                yield pb.ReadContentResponse(offset=offset, data=data)
                offset += len(data)
        finally:
            await ra.close()

    async def Status(self, request: pb.StatusRequest, context: Any) -> Any:  # noqa: N802
        try:
            st = await self.store.status(request.ref)
        except errdefs.ContainerdError as e:
            raise type(e)(f"could not get status for ref {request.ref!r}: {e}") from e
        return pb.StatusResponse(status=status_to_proto(st))

    async def ListStatuses(self, request: pb.ListStatusesRequest, context: Any) -> Any:  # noqa: N802
        statuses = await self.store.list_statuses(list(request.filters))
        return pb.ListStatusesResponse(statuses=[status_to_proto(s) for s in statuses])

    async def Abort(self, request: pb.AbortRequest, context: Any) -> Any:  # noqa: N802
        await self.store.abort(request.ref)
        return empty_pb2.Empty()

    async def Write(  # noqa: N802, C901
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[pb.WriteContentResponse]:
        requests = request_iterator.__aiter__()
        try:
            req = await requests.__anext__()
        except StopAsyncIteration:
            return
        ref = req.ref
        if not ref:
            raise errdefs.InvalidArgument("first message must have a reference")
        total = req.total
        expected = req.expected
        log.debug("write started ref=%s total=%d expected=%s", ref, total, expected)
        wr = await self.store.writer(ref, total=total, expected=expected)
        msg = pb.WriteContentResponse()
        try:
            while True:
                msg.action = req.action
                ws = wr.status()
                msg.offset = ws.offset
                if req.expected:
                    if expected and expected != req.expected:
                        log.debug(
                            "commit digest differs from writer digest: %s != %s",
                            req.expected,
                            expected,
                        )
                    expected = req.expected
                    if await self._exists(expected):
                        await wr.close()
                        try:
                            await self.store.abort(ref)
                        except errdefs.ContainerdError as e:
                            log.debug("failed to abort write ref=%s: %s", ref, e)
                        raise errdefs.AlreadyExists(
                            f"blob with expected digest {req.expected} exists"
                        )
                if req.total > 0:
                    total = req.total
                if req.action == pb.STAT:
                    msg.digest = wr.digest()
                    msg.started_at.CopyFrom(_ts(ws.started_at))
                    msg.updated_at.CopyFrom(_ts(ws.updated_at))
                    msg.total = total
                elif req.action in (pb.WRITE, pb.COMMIT):
                    if req.offset > 0 and req.offset != ws.offset:
                        raise errdefs.OutOfRange(
                            f"write @{req.offset} must occur at current offset {ws.offset}"
                        )
                    if req.offset == 0 and ws.offset > 0:
                        await wr.truncate(0)
                        msg.offset = 0
                    if req.data:
                        n = await wr.write(req.data)
                        if n != len(req.data):
                            raise errdefs.DataLoss(f"wrote {n} of {len(req.data)} bytes")
                        msg.offset += n
                    if req.action == pb.COMMIT:
                        await wr.commit(total, expected, dict(req.labels) or None)
                    msg.digest = wr.digest()
                else:
                    raise errdefs.InvalidArgument(f"unknown write action {req.action}")
                yield _copy(msg)
                if req.action == pb.COMMIT:
                    break
                try:
                    req = await requests.__anext__()
                except StopAsyncIteration:
                    break
        finally:
            await wr.close()
        # containerd's service sends the last response once more when the stream ends cleanly
        yield _copy(msg)

    async def _exists(self, dgst: str) -> bool:
        try:
            await self.store.info(dgst)
        except errdefs.NotFound:
            return False
        return True


def _copy(msg: pb.WriteContentResponse) -> pb.WriteContentResponse:
    out = pb.WriteContentResponse()
    out.CopyFrom(msg)
    return out
