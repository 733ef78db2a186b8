"""The content gRPC service over a real server, the metadata namespaced store and the local
content store: every method, Write's action/offset/total/expected/labels rules as containerd's
service has them, and the status codes clients see."""

from __future__ import annotations

import hashlib
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from pycontainerd.api.containerd.services.content.v1 import content_pb2 as pb
from pycontainerd.api.containerd.services.content.v1 import content_pb2_grpc as pb_grpc
from pycontainerd.core.metadata.metadata import Metadata
from pycontainerd.core.server.grpcserver import ErrorInterceptor
from pycontainerd.plugins.content.local.store import LocalStore
from pycontainerd.plugins.services.content.service import ContentService

NS = (("containerd-namespace", "testns"),)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
async def md(tmp_path):
    content = await LocalStore.open(str(tmp_path / "content"))
    m = await Metadata.open(str(tmp_path / "meta.db"), content=content)
    yield m
    await m.close()


@pytest.fixture
async def stub(tmp_path, md):
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    ContentService(md.content_store).register_grpc(server)
    sock = tmp_path / "content.sock"
    server.add_insecure_port(f"unix:{sock}")
    await server.start()
    channel = grpc.aio.insecure_channel(
        f"unix:{sock}", options=[("grpc.max_receive_message_length", 16 << 20)]
    )
    yield pb_grpc.ContentStub(channel)
    await channel.close()
    await server.stop(0)


async def write(stub: Any, reqs: list[pb.WriteContentRequest]) -> list[pb.WriteContentResponse]:
    call = stub.Write(iter(reqs), metadata=NS)
    return [r async for r in call]


async def ingest(stub: Any, data: bytes, ref: str = "r", labels: dict[str, str] | None = None):
    return await write(
        stub,
        [
            pb.WriteContentRequest(action=pb.STAT, ref=ref, total=len(data), expected=sha(data)),
            pb.WriteContentRequest(action=pb.WRITE, ref=ref, offset=0, data=data),
            pb.WriteContentRequest(
                action=pb.COMMIT,
                ref=ref,
                offset=len(data),
                total=len(data),
                expected=sha(data),
                labels=labels or {},
            ),
        ],
    )


async def code_of(coro: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await coro
    return ei.value.code(), ei.value.details()


async def test_write_answers_each_action_then_repeats_the_last_response(stub) -> None:
    data = b"hello content"
    resps = await ingest(stub, data, labels={"a": "b"})
    assert [r.action for r in resps] == [pb.STAT, pb.WRITE, pb.COMMIT, pb.COMMIT]
    stat, wr, commit, again = resps
    assert stat.offset == 0 and stat.total == len(data) and stat.started_at.seconds > 0
    assert stat.digest == sha(b"")
    assert wr.offset == len(data) and wr.digest == sha(data)
    assert commit.offset == len(data) and commit.digest == sha(data)
    assert again == commit
    info = (await stub.Info(pb.InfoRequest(digest=sha(data)), metadata=NS)).info
    assert info.size == len(data) and dict(info.labels) == {"a": "b"}


async def test_write_resumes_at_the_offset_and_refuses_other_offsets(stub) -> None:
    data = b"0123456789"
    await write(stub, [pb.WriteContentRequest(action=pb.WRITE, ref="x", data=data[:4])])
    st = (await stub.Status(pb.StatusRequest(ref="x"), metadata=NS)).status
    assert st.ref == "x" and st.offset == 4
    code, msg = await code_of(
        write(stub, [pb.WriteContentRequest(action=pb.WRITE, ref="x", offset=2, data=b"zz")])
    )
    assert code == grpc.StatusCode.OUT_OF_RANGE and "must occur at current offset 4" in msg
    resps = await write(
        stub,
        [
            pb.WriteContentRequest(action=pb.STAT, ref="x"),
            pb.WriteContentRequest(
                action=pb.COMMIT, ref="x", offset=4, data=data[4:], total=10, expected=sha(data)
            ),
        ],
    )
    assert resps[0].offset == 4 and resps[1].offset == 10
    got = b"".join(
        [r.data async for r in stub.Read(pb.ReadContentRequest(digest=sha(data)), metadata=NS)]
    )
    assert got == data


async def test_write_at_offset_zero_restarts_the_ingest(stub) -> None:
    await write(stub, [pb.WriteContentRequest(action=pb.WRITE, ref="y", data=b"garbage")])
    data = b"good"
    resps = await write(
        stub,
        [
            pb.WriteContentRequest(
                action=pb.COMMIT, ref="y", offset=0, data=data, expected=sha(data)
            )
        ],
    )
    assert resps[0].offset == 4 and resps[0].digest == sha(data)


async def test_write_errors_have_containerd_codes(stub) -> None:
    code, msg = await code_of(write(stub, [pb.WriteContentRequest(action=pb.STAT)]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and msg == "first message must have a reference"
    data = b"abc"
    await ingest(stub, data, ref="a1")
    # an expected digest already committed: AlreadyExists (and the ingest is gone)
    code, _ = await code_of(ingest(stub, data, ref="a2"))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    code, msg = await code_of(
        write(
            stub,
            [
                pb.WriteContentRequest(action=pb.STAT, ref="a3"),
                pb.WriteContentRequest(action=pb.STAT, ref="a3", expected=sha(data)),
            ],
        )
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS and "blob with expected digest" in msg
    code, _ = await code_of(stub.Status(pb.StatusRequest(ref="a3"), metadata=NS))
    assert code == grpc.StatusCode.NOT_FOUND
    # size and digest mismatches at commit: FailedPrecondition
    code, msg = await code_of(
        write(stub, [pb.WriteContentRequest(action=pb.COMMIT, ref="b", data=b"xyz", total=5)])
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "size" in msg
    code, _ = await code_of(
        write(
            stub,
            [
                pb.WriteContentRequest(
                    action=pb.COMMIT, ref="c", data=b"xyz", expected=sha(b"other")
                )
            ],
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    # a malformed expected digest: InvalidArgument
    code, _ = await code_of(
        write(stub, [pb.WriteContentRequest(action=pb.STAT, ref="d", expected="sha256:nope")])
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    # no namespace: FailedPrecondition
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.Info(pb.InfoRequest(digest=sha(data)))
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_read_streams_chunks_of_at_most_one_mib_from_offset_and_size(stub) -> None:
    data = bytes(range(256)) * (12 * 1024)  # 3 MiB
    await ingest(stub, data)
    dgst = sha(data)
    resps = [r async for r in stub.Read(pb.ReadContentRequest(digest=dgst), metadata=NS)]
    assert all(len(r.data) <= 1 << 20 for r in resps) and len(resps) == 3
    assert [r.offset for r in resps] == [0, 1 << 20, 2 << 20]
    assert b"".join(r.data for r in resps) == data
    part = [
        r
        async for r in stub.Read(
            pb.ReadContentRequest(digest=dgst, offset=10, size=20), metadata=NS
        )
    ]
    assert b"".join(r.data for r in part) == data[10:30] and part[0].offset == 10
    tail = [
        r
        async for r in stub.Read(
            pb.ReadContentRequest(digest=dgst, offset=len(data) - 5, size=100), metadata=NS
        )
    ]
    assert b"".join(r.data for r in tail) == data[-5:]
    code, msg = await code_of(
        _drain(stub.Read(pb.ReadContentRequest(digest=dgst, offset=len(data) + 1), metadata=NS))
    )
    assert code == grpc.StatusCode.OUT_OF_RANGE and "read past object length" in msg
    code, _ = await code_of(
        _drain(stub.Read(pb.ReadContentRequest(digest=sha(b"absent")), metadata=NS))
    )
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await code_of(
        _drain(stub.Read(pb.ReadContentRequest(digest="sha256:bad"), metadata=NS))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def _drain(call: Any) -> None:
    async for _ in call:
        pass


async def test_info_update_list_delete(stub) -> None:
    blobs = [f"blob-{i}".encode() for i in range(150)]
    for i, b in enumerate(blobs):
        await ingest(stub, b, ref=f"r{i}", labels={"n": str(i % 2)})
    batches = [r async for r in stub.List(pb.ListContentRequest(), metadata=NS)]
    assert [len(b.info) for b in batches] == [100, 50]
    odd = [
        i
        async for r in stub.List(pb.ListContentRequest(filters=["labels.n==1"]), metadata=NS)
        for i in r.info
    ]
    assert len(odd) == 75
    code, _ = await code_of(
        _drain(stub.List(pb.ListContentRequest(filters=["labels.n=="]), metadata=NS))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT

    dgst = sha(blobs[0])
    upd = await stub.Update(
        pb.UpdateRequest(
            info=pb.Info(digest=dgst, labels={"x": "y"}),
            update_mask=field_mask_pb2.FieldMask(paths=["labels.x"]),
        ),
        metadata=NS,
    )
    assert dict(upd.info.labels) == {"n": "0", "x": "y"}
    upd = await stub.Update(
        pb.UpdateRequest(info=pb.Info(digest=dgst, labels={"only": "1"})), metadata=NS
    )
    assert dict(upd.info.labels) == {"only": "1"}
    code, _ = await code_of(stub.Update(pb.UpdateRequest(info=pb.Info(digest="nope")), metadata=NS))
    assert code == grpc.StatusCode.INVALID_ARGUMENT

    code, msg = await code_of(stub.Info(pb.InfoRequest(digest="sha256:123"), metadata=NS))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "failed validation" in msg
    await stub.Delete(pb.DeleteContentRequest(digest=dgst), metadata=NS)
    code, _ = await code_of(stub.Info(pb.InfoRequest(digest=dgst), metadata=NS))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await code_of(stub.Delete(pb.DeleteContentRequest(digest=dgst), metadata=NS))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await code_of(stub.Delete(pb.DeleteContentRequest(digest="x"), metadata=NS))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    # namespaces do not see each other's blobs
    code, _ = await code_of(
        stub.Info(
            pb.InfoRequest(digest=sha(blobs[1])), metadata=(("containerd-namespace", "other"),)
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND


async def test_statuses_and_abort(stub) -> None:
    for ref in ("pull-1", "pull-2", "push-1"):
        await write(
            stub, [pb.WriteContentRequest(action=pb.WRITE, ref=ref, total=10, data=b"12345")]
        )
    st = (await stub.ListStatuses(pb.ListStatusesRequest(), metadata=NS)).statuses
    assert sorted(s.ref for s in st) == ["pull-1", "pull-2", "push-1"]
    assert all(s.offset == 5 and s.total == 10 for s in st)
    st = (
        await stub.ListStatuses(pb.ListStatusesRequest(filters=["ref~=^pull"]), metadata=NS)
    ).statuses
    assert sorted(s.ref for s in st) == ["pull-1", "pull-2"]
    await stub.Abort(pb.AbortRequest(ref="pull-1"), metadata=NS)
    code, msg = await code_of(stub.Status(pb.StatusRequest(ref="pull-1"), metadata=NS))
    assert code == grpc.StatusCode.NOT_FOUND and "could not get status for ref" in msg
    code, _ = await code_of(stub.Abort(pb.AbortRequest(ref="pull-1"), metadata=NS))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_a_second_writer_of_a_busy_ref_is_unavailable(stub) -> None:
    first = stub.Write(metadata=NS)
    await first.write(pb.WriteContentRequest(action=pb.WRITE, ref="busy", data=b"a"))
    resp = await first.read()
    assert resp.offset == 1
    code, _ = await code_of(write(stub, [pb.WriteContentRequest(action=pb.STAT, ref="busy")]))
    assert code == grpc.StatusCode.UNAVAILABLE
    await first.done_writing()
    assert (await first.read()).offset == 1  # the repeated last response
    st = (await stub.Status(pb.StatusRequest(ref="busy"), metadata=NS)).status
    assert st.offset == 1
