"""gRPC containerd.services.namespaces.v1.Namespaces over a real in-process daemon."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import any_pb2, field_mask_pb2

from pycontainerd.api.containerd.events import namespace_pb2 as ev_pb
from pycontainerd.api.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from pycontainerd.api.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from pycontainerd.api.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from pycontainerd.api.containerd.services.namespaces.v1 import namespace_pb2 as pb
from pycontainerd.api.containerd.services.namespaces.v1 import namespace_pb2_grpc as pb_grpc


def stub(d):  # type: ignore[no-untyped-def]
    return pb_grpc.NamespacesStub(d.channel)


async def test_create_get_list_with_labels(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = stub(md_daemon)
    resp = await s.Create(
        pb.CreateNamespaceRequest(namespace=pb.Namespace(name="ns1", labels={"a": "1"}))
    )
    assert resp.namespace == pb.Namespace(name="ns1", labels={"a": "1"})
    await s.Create(pb.CreateNamespaceRequest(namespace=pb.Namespace(name="ns2")))
    got = await s.Get(pb.GetNamespaceRequest(name="ns1"))
    assert dict(got.namespace.labels) == {"a": "1"}
    listed = await s.List(pb.ListNamespacesRequest())
    assert [(n.name, dict(n.labels)) for n in listed.namespaces] == [
        ("ns1", {"a": "1"}),
        ("ns2", {}),
    ]


async def test_errors_have_containerd_codes(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = stub(md_daemon)
    await s.Create(pb.CreateNamespaceRequest(namespace=pb.Namespace(name="dup")))
    cases = [
        (s.Create(pb.CreateNamespaceRequest(namespace=pb.Namespace(name="dup"))), "ALREADY_EXISTS"),
        (
            s.Create(pb.CreateNamespaceRequest(namespace=pb.Namespace(name="bad/name"))),
            "INVALID_ARGUMENT",
        ),
        (s.Get(pb.GetNamespaceRequest(name="missing")), "NOT_FOUND"),
        (s.Delete(pb.DeleteNamespaceRequest(name="missing")), "NOT_FOUND"),
        (
            s.Update(
                pb.UpdateNamespaceRequest(namespace=pb.Namespace(name="missing", labels={"a": "b"}))
            ),
            "NOT_FOUND",
        ),
        (
            s.Update(
                pb.UpdateNamespaceRequest(
                    namespace=pb.Namespace(name="dup"),
                    update_mask=field_mask_pb2.FieldMask(paths=["name"]),
                )
            ),
            "INVALID_ARGUMENT",
        ),
    ]
    for call, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await call
        assert ei.value.code().name == code, ei.value.details()


async def test_update_with_mask_sets_and_removes_single_labels(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = stub(md_daemon)
    await s.Create(
        pb.CreateNamespaceRequest(namespace=pb.Namespace(name="u", labels={"a": "1", "b": "2"}))
    )
    resp = await s.Update(
        pb.UpdateNamespaceRequest(
            namespace=pb.Namespace(name="u", labels={"c": "3", "a": "ignored"}),
            update_mask=field_mask_pb2.FieldMask(paths=["labels.c", "labels.b"]),
        )
    )
    # labels.b is in the mask but not in the request: removed; a is not in the mask: kept.
    assert dict(resp.namespace.labels) == {"a": "1", "c": "3"}
    got = await s.Get(pb.GetNamespaceRequest(name="u"))
    assert dict(got.namespace.labels) == {"a": "1", "c": "3"}


async def test_update_without_mask_replaces_all_labels(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = stub(md_daemon)
    await s.Create(pb.CreateNamespaceRequest(namespace=pb.Namespace(name="r", labels={"a": "1"})))
    await s.Update(pb.UpdateNamespaceRequest(namespace=pb.Namespace(name="r", labels={"z": "9"})))
    got = await s.Get(pb.GetNamespaceRequest(name="r"))
    assert dict(got.namespace.labels) == {"z": "9"}


async def test_delete_refuses_a_namespace_that_still_holds_objects(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = stub(md_daemon)
    md = md_daemon.ns("busy")
    await containers_pb2_grpc.ContainersStub(md_daemon.channel).Create(
        containers_pb2.CreateContainerRequest(
            container=containers_pb2.Container(
                id="c1",
                runtime=containers_pb2.Container.Runtime(name="io.containerd.runc.v2"),
                spec=any_pb2.Any(
                    type_url="types.containerd.io/opencontainers/runtime-spec/1/Spec", value=b"{}"
                ),
            )
        ),
        metadata=md,
    )
    await leases_pb2_grpc.LeasesStub(md_daemon.channel).Create(
        leases_pb2.CreateRequest(id="l1"), metadata=md
    )
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await s.Delete(pb.DeleteNamespaceRequest(name="busy"))
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "containers" in ei.value.details() and "leases" in ei.value.details()
    # still there
    await s.Get(pb.GetNamespaceRequest(name="busy"))
    await s.Create(pb.CreateNamespaceRequest(namespace=pb.Namespace(name="empty")))
    await s.Delete(pb.DeleteNamespaceRequest(name="empty"))
    listed = await s.List(pb.ListNamespacesRequest())
    assert [n.name for n in listed.namespaces] == ["busy"]


async def test_namespace_events_reach_subscribers_as_containerd_events(md_daemon) -> None:  # type: ignore[no-untyped-def]
    exchange = md_daemon.instance("io.containerd.event.v1.exchange")
    call = events_pb2_grpc.EventsStub(md_daemon.channel).Subscribe(
        events_pb2.SubscribeRequest(filters=['topic~="/namespaces/"'])
    )
    async with asyncio.timeout(5):
        while exchange.subscriber_count == 0:
            await asyncio.sleep(0.01)
    s = stub(md_daemon)
    await s.Create(
        pb.CreateNamespaceRequest(namespace=pb.Namespace(name="evns", labels={"k": "v"}))
    )
    await s.Update(
        pb.UpdateNamespaceRequest(
            namespace=pb.Namespace(name="evns", labels={"k2": "v2"}),
            update_mask=field_mask_pb2.FieldMask(paths=["labels.k2"]),
        )
    )
    await s.Delete(pb.DeleteNamespaceRequest(name="evns"))
    got = []
    async with asyncio.timeout(5):
        for _ in range(3):
            got.append(await call.read())
    call.cancel()
    assert [(e.topic, e.namespace, e.event.type_url) for e in got] == [
        ("/namespaces/create", "evns", "containerd.events.NamespaceCreate"),
        ("/namespaces/update", "evns", "containerd.events.NamespaceUpdate"),
        ("/namespaces/delete", "evns", "containerd.events.NamespaceDelete"),
    ]
    create = ev_pb.NamespaceCreate()
    create.ParseFromString(got[0].event.value)
    assert create == ev_pb.NamespaceCreate(name="evns", labels={"k": "v"})
    update = ev_pb.NamespaceUpdate()
    update.ParseFromString(got[1].event.value)
    assert dict(update.labels) == {"k": "v", "k2": "v2"}


def test_registrations_match_containerd() -> None:
    from pycontainerd.plugins import builtins
    from pycontainerd.plugins.services.namespaces import plugin

    got = [(r.type, r.id, tuple(r.requires)) for r in plugin.pycontainerd_registrations()]
    assert got == [
        (
            "io.containerd.service.v1",
            "namespaces-service",
            ("io.containerd.event.v1", "io.containerd.metadata.v1"),
        ),
        ("io.containerd.grpc.v1", "namespaces", ("io.containerd.service.v1",)),
    ]
    assert "pycontainerd.plugins.services.namespaces.plugin" in builtins.MODULES
