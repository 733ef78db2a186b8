"""gRPC containerd.services.containers.v1.Containers over a real in-process daemon."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import any_pb2, field_mask_pb2

from pycontainerd.api.containerd.events import container_pb2 as ev_pb
from pycontainerd.api.containerd.services.containers.v1 import containers_pb2 as pb
from pycontainerd.api.containerd.services.containers.v1 import containers_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.services.events.v1 import events_pb2, events_pb2_grpc

SPEC_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
OPTS = any_pb2.Any(type_url="containerd.runc.v1.Options", value=b"\x0a\x04runc")


def container(id: str, **kw) -> pb.Container:  # type: ignore[no-untyped-def]  # noqa: A002
    kw.setdefault("runtime", pb.Container.Runtime(name="io.containerd.runc.v2", options=OPTS))
    kw.setdefault("spec", any_pb2.Any(type_url=SPEC_URL, value=b'{"ociVersion":"1.1.0"}'))
    return pb.Container(id=id, **kw)


async def code_of(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await call
    return ei.value.code().name


async def test_create_get_round_trips_every_field(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = pb_grpc.ContainersStub(md_daemon.channel)
    md = md_daemon.ns()
    want = container(
        "c1",
        labels={"io.kubernetes.pod.name": "p"},
        image="docker.io/library/busybox:latest",
        snapshotter="overlayfs",
        snapshot_key="c1",
        extensions={"ext": any_pb2.Any(type_url="x.Ext", value=b"\x01\x02")},
        sandbox="sb1",
    )
    created = (await s.Create(pb.CreateContainerRequest(container=want), metadata=md)).container
    assert created.HasField("created_at") and created.updated_at == created.created_at
    got = (await s.Get(pb.GetContainerRequest(id="c1"), metadata=md)).container
    assert got == created
    stripped = pb.Container()
    stripped.CopyFrom(got)
    stripped.ClearField("created_at")
    stripped.ClearField("updated_at")
    assert stripped == want


async def test_list_and_list_stream_with_filters(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = pb_grpc.ContainersStub(md_daemon.channel)
    md = md_daemon.ns()
    for i, img in enumerate(["a", "b", "a"]):
        await s.Create(
            pb.CreateContainerRequest(
                container=container(f"c{i}", image=img, labels={"n": str(i)})
            ),
            metadata=md,
        )
    listed = await s.List(pb.ListContainersRequest(filters=["image==a"]), metadata=md)
    assert [c.id for c in listed.containers] == ["c0", "c2"]
    streamed = [
        m.container.id
        async for m in s.ListStream(
            pb.ListContainersRequest(filters=["labels.n==1", "id==c2"]), metadata=md
        )
    ]
    assert streamed == ["c1", "c2"]
    all_ = [m.container.id async for m in s.ListStream(pb.ListContainersRequest(), metadata=md)]
    assert all_ == ["c0", "c1", "c2"]
    runtime = await s.List(
        pb.ListContainersRequest(filters=["runtime.name==io.containerd.runc.v2"]), metadata=md
    )
    assert len(runtime.containers) == 3
    assert [
        m async for m in s.ListStream(pb.ListContainersRequest(), metadata=md_daemon.ns("empty"))
    ] == []
    assert await code_of(s.List(pb.ListContainersRequest(filters=["id=="]), metadata=md)) == (
        "INVALID_ARGUMENT"
    )


async def test_update_masks_and_immutable_fields(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = pb_grpc.ContainersStub(md_daemon.channel)
    md = md_daemon.ns()
    await s.Create(
        pb.CreateContainerRequest(
            container=container("u", labels={"a": "1", "b": "2"}, snapshotter="native")
        ),
        metadata=md,
    )
    r = await s.Update(
        pb.UpdateContainerRequest(
            container=pb.Container(id="u", labels={"c": "3"}, image="new"),
            update_mask=field_mask_pb2.FieldMask(paths=["labels.c", "labels.a", "image"]),
        ),
        metadata=md,
    )
    assert dict(r.container.labels) == {"b": "2", "c": "3"}
    assert r.container.image == "new" and r.container.snapshotter == "native"
    assert r.container.updated_at.ToDatetime() >= r.container.created_at.ToDatetime()
    # no mask: everything mutable replaced; snapshotter and runtime name must not change
    assert (
        await code_of(
            s.Update(
                pb.UpdateContainerRequest(container=container("u", snapshotter="overlayfs")),
                metadata=md,
            )
        )
        == "INVALID_ARGUMENT"
    )
    r = await s.Update(
        pb.UpdateContainerRequest(
            container=container("u", snapshotter="native", labels={"z": "1"})
        ),
        metadata=md,
    )
    assert dict(r.container.labels) == {"z": "1"} and r.container.image == ""
    assert (
        await code_of(
            s.Update(
                pb.UpdateContainerRequest(
                    container=pb.Container(id="u"),
                    update_mask=field_mask_pb2.FieldMask(paths=["snapshotter"]),
                ),
                metadata=md,
            )
        )
        == "INVALID_ARGUMENT"
    )
    assert (
        await code_of(s.Update(pb.UpdateContainerRequest(container=pb.Container()), metadata=md))
        == "INVALID_ARGUMENT"
    )
    assert (
        await code_of(s.Update(pb.UpdateContainerRequest(container=container("nope")), metadata=md))
        == "NOT_FOUND"
    )


async def test_error_codes(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = pb_grpc.ContainersStub(md_daemon.channel)
    md = md_daemon.ns()
    await s.Create(pb.CreateContainerRequest(container=container("e")), metadata=md)
    assert (
        await code_of(s.Create(pb.CreateContainerRequest(container=container("e")), metadata=md))
        == "ALREADY_EXISTS"
    )
    assert (
        await code_of(
            s.Create(pb.CreateContainerRequest(container=container("bad id")), metadata=md)
        )
        == "INVALID_ARGUMENT"
    )
    assert (
        await code_of(
            s.Create(
                pb.CreateContainerRequest(container=pb.Container(id="noruntime", spec=OPTS)),
                metadata=md,
            )
        )
        == "INVALID_ARGUMENT"
    )
    assert await code_of(s.Get(pb.GetContainerRequest(id="nope"), metadata=md)) == "NOT_FOUND"
    assert await code_of(s.Delete(pb.DeleteContainerRequest(id="nope"), metadata=md)) == (
        "NOT_FOUND"
    )
    assert await code_of(s.Get(pb.GetContainerRequest(id="e"))) == "FAILED_PRECONDITION"
    await s.Delete(pb.DeleteContainerRequest(id="e"), metadata=md)
    assert await code_of(s.Get(pb.GetContainerRequest(id="e"), metadata=md)) == "NOT_FOUND"


async def test_container_events(md_daemon) -> None:  # type: ignore[no-untyped-def]
    exchange = md_daemon.instance("io.containerd.event.v1.exchange")
    call = events_pb2_grpc.EventsStub(md_daemon.channel).Subscribe(
        events_pb2.SubscribeRequest(filters=['topic~="^/containers/"'])
    )
    async with asyncio.timeout(5):
        while exchange.subscriber_count == 0:
            await asyncio.sleep(0.01)
    s = pb_grpc.ContainersStub(md_daemon.channel)
    md = md_daemon.ns("evc")
    await s.Create(pb.CreateContainerRequest(container=container("x", image="img")), metadata=md)
    await s.Update(
        pb.UpdateContainerRequest(
            container=pb.Container(id="x", labels={"k": "v"}),
            update_mask=field_mask_pb2.FieldMask(paths=["labels"]),
        ),
        metadata=md,
    )
    await s.Delete(pb.DeleteContainerRequest(id="x"), metadata=md)
    got = []
    async with asyncio.timeout(5):
        for _ in range(3):
            got.append(await call.read())
    call.cancel()
    assert [(e.topic, e.namespace, e.event.type_url) for e in got] == [
        ("/containers/create", "evc", "containerd.events.ContainerCreate"),
        ("/containers/update", "evc", "containerd.events.ContainerUpdate"),
        ("/containers/delete", "evc", "containerd.events.ContainerDelete"),
    ]
    create = ev_pb.ContainerCreate()
    create.ParseFromString(got[0].event.value)
    assert create == ev_pb.ContainerCreate(
        id="x",
        image="img",
        runtime=ev_pb.ContainerCreate.Runtime(name="io.containerd.runc.v2", options=OPTS),
    )
    update = ev_pb.ContainerUpdate()
    update.ParseFromString(got[1].event.value)
    assert dict(update.labels) == {"k": "v"} and update.image == "img"


def test_registrations_match_containerd() -> None:
    from pycontainerd.plugins import builtins
    from pycontainerd.plugins.services.containers import plugin

    got = [(r.type, r.id, tuple(r.requires)) for r in plugin.pycontainerd_registrations()]
    assert got == [
        (
            "io.containerd.service.v1",
            "containers-service",
            ("io.containerd.event.v1", "io.containerd.metadata.v1"),
        ),
        ("io.containerd.grpc.v1", "containers", ("io.containerd.service.v1",)),
    ]
    assert "pycontainerd.plugins.services.containers.plugin" in builtins.MODULES
