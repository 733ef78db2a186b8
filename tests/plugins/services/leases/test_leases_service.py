"""gRPC containerd.services.leases.v1.Leases over a real in-process daemon."""

from __future__ import annotations

import re

import grpc
import pytest

from pycontainerd.api.containerd.services.leases.v1 import leases_pb2 as pb
from pycontainerd.api.containerd.services.leases.v1 import leases_pb2_grpc as pb_grpc
from pycontainerd.core import errdefs, leases, namespaces
from pycontainerd.core.content import digests
from pycontainerd.core.content.helpers import write_blob


async def code_of(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await call
    return ei.value.code().name


async def test_create_with_labels_list_filters_and_delete(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = pb_grpc.LeasesStub(md_daemon.channel)
    md = md_daemon.ns()
    r = await s.Create(
        pb.CreateRequest(id="l1", labels={"containerd.io/gc.expire": "2100-01-01T00:00:00Z"}),
        metadata=md,
    )
    assert r.lease.id == "l1" and r.lease.HasField("created_at")
    assert dict(r.lease.labels) == {"containerd.io/gc.expire": "2100-01-01T00:00:00Z"}
    await s.Create(pb.CreateRequest(id="l2", labels={"team": "a"}), metadata=md)
    listed = await s.List(pb.ListRequest(), metadata=md)
    assert [x.id for x in listed.leases] == ["l1", "l2"]
    assert listed.leases[0] == r.lease
    f = await s.List(pb.ListRequest(filters=["labels.team==a", "id==l1"]), metadata=md)
    assert [x.id for x in f.leases] == ["l1", "l2"]
    f = await s.List(pb.ListRequest(filters=['labels."containerd.io/gc.expire"']), metadata=md)
    assert [x.id for x in f.leases] == ["l1"]
    assert [x.id for x in (await s.List(pb.ListRequest(), metadata=md_daemon.ns("o"))).leases] == []
    await s.Delete(pb.DeleteRequest(id="l1"), metadata=md)
    await s.Delete(pb.DeleteRequest(id="l2", sync=True), metadata=md)
    assert list((await s.List(pb.ListRequest(), metadata=md)).leases) == []


async def test_create_without_id_gets_a_random_one_like_containerd(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = pb_grpc.LeasesStub(md_daemon.channel)
    md = md_daemon.ns()
    a = (await s.Create(pb.CreateRequest(), metadata=md)).lease.id
    b = (await s.Create(pb.CreateRequest(), metadata=md)).lease.id
    assert a != b
    assert re.fullmatch(r"\d+-[A-Za-z0-9_-]{4}", a), a


async def test_error_codes(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = pb_grpc.LeasesStub(md_daemon.channel)
    md = md_daemon.ns()
    await s.Create(pb.CreateRequest(id="x"), metadata=md)
    res = pb.Resource(id="sha256:" + "a" * 64, type="content")
    cases = [
        (s.Create(pb.CreateRequest(id="x"), metadata=md), "ALREADY_EXISTS"),
        (s.Delete(pb.DeleteRequest(id="nope"), metadata=md), "NOT_FOUND"),
        (s.Create(pb.CreateRequest(id="y")), "FAILED_PRECONDITION"),
        (s.AddResource(pb.AddResourceRequest(id="nope", resource=res), metadata=md), "NOT_FOUND"),
        (s.AddResource(pb.AddResourceRequest(id="x"), metadata=md), "INVALID_ARGUMENT"),
        (
            s.AddResource(
                pb.AddResourceRequest(id="x", resource=pb.Resource(id="k", type="snapshots")),
                metadata=md,
            ),
            "INVALID_ARGUMENT",
        ),
        (
            s.AddResource(
                pb.AddResourceRequest(id="x", resource=pb.Resource(id="k", type="volumes")),
                metadata=md,
            ),
            "UNIMPLEMENTED",
        ),
        (s.ListResources(pb.ListResourcesRequest(id="nope"), metadata=md), "NOT_FOUND"),
        (s.List(pb.ListRequest(filters=["id=="]), metadata=md), "INVALID_ARGUMENT"),
    ]
    for call, code in cases:
        assert await code_of(call) == code


async def test_resources_add_list_delete_and_what_they_protect(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = pb_grpc.LeasesStub(md_daemon.channel)
    md = md_daemon.ns()
    mdb = md_daemon.instance("io.containerd.metadata.v1.bolt")
    data = b"leased blob"
    dgst = digests.from_bytes(data)
    await s.Create(pb.CreateRequest(id="w"), metadata=md)
    await s.Create(pb.CreateRequest(id="hold"), metadata=md)
    with namespaces.use("default"), leases.use("w"):
        await write_blob(mdb.content_store, "r1", data, dgst)
    listed = await s.ListResources(pb.ListResourcesRequest(id="w"), metadata=md)
    assert [(r.type, r.id) for r in listed.resources] == [("content", dgst)]

    resources = [
        pb.Resource(id=dgst, type="content"),
        pb.Resource(id="docker.io/library/x:1", type="images"),
        pb.Resource(id="k1", type="snapshots/native"),
        pb.Resource(id="ingest-ref", type="ingests"),
    ]
    for r in resources:
        await s.AddResource(pb.AddResourceRequest(id="hold", resource=r), metadata=md)
    got = await s.ListResources(pb.ListResourcesRequest(id="hold"), metadata=md)
    assert sorted((r.type, r.id) for r in got.resources) == sorted(
        (r.type, r.id) for r in resources
    )

    # the blob survives the writer's lease going away: "hold" holds it
    await s.Delete(pb.DeleteRequest(id="w", sync=True), metadata=md)
    with namespaces.use("default"):
        await mdb.content_store.info(dgst)
    await s.DeleteResource(pb.DeleteResourceRequest(id="hold", resource=resources[0]), metadata=md)
    got = await s.ListResources(pb.ListResourcesRequest(id="hold"), metadata=md)
    assert dgst not in [r.id for r in got.resources]
    gc = md_daemon.instance("io.containerd.gc.v1.scheduler")
    await gc.schedule_and_wait()
    with namespaces.use("default"), pytest.raises(errdefs.NotFound):
        await mdb.content_store.info(dgst)


def test_registrations_match_containerd() -> None:
    from pycontainerd.plugins import builtins
    from pycontainerd.plugins.services.leases import plugin

    got = [(r.type, r.id, tuple(r.requires)) for r in plugin.pycontainerd_registrations()]
    assert got == [("io.containerd.grpc.v1", "leases", ("io.containerd.lease.v1",))]
    assert "pycontainerd.plugins.services.leases.plugin" in builtins.MODULES
