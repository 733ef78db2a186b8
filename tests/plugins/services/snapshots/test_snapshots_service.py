"""The snapshots gRPC service over a real server and the metadata namespaced snapshotters
(native and overlayfs): snapshotter selection, every method, list batching and filters, and
the status codes clients see."""

from __future__ import annotations

import os
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2 as pb
from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2_grpc as pb_grpc
from pycontainerd.core.metadata.metadata import Metadata
from pycontainerd.core.mount import with_temp_mount
from pycontainerd.core.server.grpcserver import ErrorInterceptor
from pycontainerd.core.snapshots.proxy import mounts_from_proto
from pycontainerd.plugins.content.local.store import LocalStore
from pycontainerd.plugins.services.snapshots.service import SnapshotsService
from pycontainerd.plugins.snapshotters.native.snapshotter import NativeSnapshotter
from pycontainerd.plugins.snapshotters.overlayfs.snapshotter import OverlaySnapshotter

NS = (("containerd-namespace", "testns"),)


@pytest.fixture
async def md(tmp_path):
    content = await LocalStore.open(str(tmp_path / "content"))
    native = await NativeSnapshotter.open(str(tmp_path / "native"))
    overlay = await OverlaySnapshotter.open(str(tmp_path / "overlayfs"))
    m = await Metadata.open(
        str(tmp_path / "meta.db"),
        content=content,
        snapshotters={"native": native, "overlayfs": overlay},
    )
    yield m
    await m.close()
    await native.close()
    await overlay.close()


@pytest.fixture
async def stub(tmp_path, md):
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    SnapshotsService(dict(md.snapshotters)).register_grpc(server)
    sock = tmp_path / "snapshots.sock"
    server.add_insecure_port(f"unix:{sock}")
    await server.start()
    channel = grpc.aio.insecure_channel(f"unix:{sock}")
    yield pb_grpc.SnapshotsStub(channel)
    await channel.close()
    await server.stop(0)


async def code_of(coro: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await coro
    return ei.value.code(), ei.value.details()


async def listed(stub: Any, sn: str, *filters: str) -> list[pb.Info]:
    out: list[pb.Info] = []
    async for resp in stub.List(
        pb.ListSnapshotsRequest(snapshotter=sn, filters=list(filters)), metadata=NS
    ):
        out.extend(resp.info)
    return out


async def test_unknown_or_missing_snapshotter_is_invalid_argument(stub) -> None:
    code, msg = await code_of(
        stub.Stat(pb.StatSnapshotRequest(snapshotter="nope", key="k"), metadata=NS)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and msg == "snapshotter not loaded: nope"
    code, msg = await code_of(stub.Stat(pb.StatSnapshotRequest(key="k"), metadata=NS))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and msg == "snapshotter argument missing"
    code, _ = await code_of(
        _drain(stub.List(pb.ListSnapshotsRequest(snapshotter="nope"), metadata=NS))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def _drain(call: Any) -> None:
    async for _ in call:
        pass


@pytest.mark.root
@pytest.mark.parametrize("sn", ["native", "overlayfs"])
async def test_lifecycle_through_the_api(stub, sn) -> None:
    resp = await stub.Prepare(
        pb.PrepareSnapshotRequest(snapshotter=sn, key="a", labels={"l": "1"}), metadata=NS
    )
    mounts = mounts_from_proto(resp.mounts)
    async with with_temp_mount(mounts) as root:
        with open(os.path.join(root, "file"), "w") as f:
            f.write("x" * 5000)
    again = await stub.Mounts(pb.MountsRequest(snapshotter=sn, key="a"), metadata=NS)
    assert list(again.mounts) == list(resp.mounts)
    info = (await stub.Stat(pb.StatSnapshotRequest(snapshotter=sn, key="a"), metadata=NS)).info
    assert info.kind == pb.ACTIVE and dict(info.labels) == {"l": "1"}
    await stub.Commit(
        pb.CommitSnapshotRequest(snapshotter=sn, name="base", key="a", labels={"c": "2"}),
        metadata=NS,
    )
    code, _ = await code_of(stub.Stat(pb.StatSnapshotRequest(snapshotter=sn, key="a"), metadata=NS))
    assert code == grpc.StatusCode.NOT_FOUND
    await stub.Prepare(
        pb.PrepareSnapshotRequest(snapshotter=sn, key="child", parent="base"), metadata=NS
    )
    view = await stub.View(
        pb.ViewSnapshotRequest(snapshotter=sn, key="v", parent="base"), metadata=NS
    )
    async with with_temp_mount(mounts_from_proto(view.mounts)) as root:
        assert open(os.path.join(root, "file")).read() == "x" * 5000
    usage = await stub.Usage(pb.UsageRequest(snapshotter=sn, key="base"), metadata=NS)
    assert usage.size >= 5000 and usage.inodes >= 1

    upd = await stub.Update(
        pb.UpdateSnapshotRequest(
            snapshotter=sn,
            info=pb.Info(name="base", labels={"new": "v"}),
            update_mask=field_mask_pb2.FieldMask(paths=["labels.new"]),
        ),
        metadata=NS,
    )
    assert dict(upd.info.labels) == {"c": "2", "new": "v"} and upd.info.kind == pb.COMMITTED

    assert sorted(i.name for i in await listed(stub, sn)) == ["base", "child", "v"]
    assert [i.name for i in await listed(stub, sn, "kind==committed")] == ["base"]
    assert sorted(i.name for i in await listed(stub, sn, "parent==base")) == ["child", "v"]
    assert [i.name for i in await listed(stub, sn, "labels.new==v")] == ["base"]
    other = await listed(stub, "native" if sn == "overlayfs" else "overlayfs")
    assert other == []

    code, msg = await code_of(
        stub.Remove(pb.RemoveSnapshotRequest(snapshotter=sn, key="base"), metadata=NS)
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "child" in msg
    code, _ = await code_of(
        stub.Prepare(pb.PrepareSnapshotRequest(snapshotter=sn, key="child"), metadata=NS)
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS
    code, _ = await code_of(
        stub.Prepare(
            pb.PrepareSnapshotRequest(snapshotter=sn, key="z", parent="missing"), metadata=NS
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    for key in ("child", "v", "base"):
        await stub.Remove(pb.RemoveSnapshotRequest(snapshotter=sn, key=key), metadata=NS)
    await stub.Cleanup(pb.CleanupRequest(snapshotter=sn), metadata=NS)
    assert await listed(stub, sn) == []


@pytest.mark.root
async def test_list_sends_batches_of_100_and_namespaces_are_separate(stub) -> None:
    for i in range(130):
        await stub.Prepare(
            pb.PrepareSnapshotRequest(snapshotter="native", key=f"k{i:03}"), metadata=NS
        )
    sizes = [
        len(r.info)
        async for r in stub.List(pb.ListSnapshotsRequest(snapshotter="native"), metadata=NS)
    ]
    assert sizes == [100, 30]
    other = (("containerd-namespace", "other"),)
    assert [
        r async for r in stub.List(pb.ListSnapshotsRequest(snapshotter="native"), metadata=other)
    ] == []
    code, _ = await code_of(stub.Stat(pb.StatSnapshotRequest(snapshotter="native", key="k000")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION  # no namespace
