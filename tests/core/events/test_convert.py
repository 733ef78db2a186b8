"""Metadata event payloads become containerd's proto events, packed the way containerd packs
them (type URL = the message's full name), so that ``ctr events`` can decode them."""

from __future__ import annotations

import attrs
import pytest
from google.protobuf import any_pb2

from pycontainerd.api.containerd.events import (
    container_pb2,
    content_pb2,
    image_pb2,
    namespace_pb2,
    snapshot_pb2,
)
from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.events import convert
from pycontainerd.core.events.exchange import Exchange
from pycontainerd.core.metadata import events as ev

CASES = [
    (
        ev.NamespaceCreate(name="n", labels={"a": "b"}),
        namespace_pb2.NamespaceCreate(name="n", labels={"a": "b"}),
    ),
    (
        ev.NamespaceUpdate(name="n", labels={"x": "y"}),
        namespace_pb2.NamespaceUpdate(name="n", labels={"x": "y"}),
    ),
    (ev.NamespaceDelete(name="n"), namespace_pb2.NamespaceDelete(name="n")),
    (
        ev.ImageCreate(name="i", labels={"k": "v"}),
        image_pb2.ImageCreate(name="i", labels={"k": "v"}),
    ),
    (ev.ImageUpdate(name="i"), image_pb2.ImageUpdate(name="i")),
    (ev.ImageDelete(name="i"), image_pb2.ImageDelete(name="i")),
    (
        ev.ContainerCreate(
            id="c",
            image="img",
            runtime=ev.ContainerRuntime(name="io.containerd.runc.v2", options=("t/o", b"\x01")),
        ),
        container_pb2.ContainerCreate(
            id="c",
            image="img",
            runtime=container_pb2.ContainerCreate.Runtime(
                name="io.containerd.runc.v2", options=any_pb2.Any(type_url="t/o", value=b"\x01")
            ),
        ),
    ),
    (
        ev.ContainerCreate(id="c", runtime=ev.ContainerRuntime(name="r")),
        container_pb2.ContainerCreate(
            id="c", runtime=container_pb2.ContainerCreate.Runtime(name="r")
        ),
    ),
    (
        ev.ContainerUpdate(id="c", image="i", labels={"l": "1"}, snapshot_key="k"),
        container_pb2.ContainerUpdate(id="c", image="i", labels={"l": "1"}, snapshot_key="k"),
    ),
    (ev.ContainerDelete(id="c"), container_pb2.ContainerDelete(id="c")),
    (
        ev.ContentCreate(digest="sha256:ab", size=3),
        content_pb2.ContentCreate(digest="sha256:ab", size=3),
    ),
    (ev.ContentDelete(digest="sha256:ab"), content_pb2.ContentDelete(digest="sha256:ab")),
    (
        ev.SnapshotPrepare(key="k", parent="p", snapshotter="overlayfs"),
        snapshot_pb2.SnapshotPrepare(key="k", parent="p", snapshotter="overlayfs"),
    ),
    (
        ev.SnapshotCommit(key="k", name="n", snapshotter="native"),
        snapshot_pb2.SnapshotCommit(key="k", name="n", snapshotter="native"),
    ),
    (
        ev.SnapshotRemove(key="k", snapshotter="native"),
        snapshot_pb2.SnapshotRemove(key="k", snapshotter="native"),
    ),
]


@pytest.mark.parametrize(("payload", "expected"), CASES, ids=lambda x: type(x).__name__)
def test_payload_converts_field_for_field(payload: object, expected: object) -> None:
    assert convert.to_proto(payload) == expected


def test_every_metadata_event_class_has_a_message() -> None:
    classes = [
        v
        for v in vars(ev).values()
        if isinstance(v, type) and attrs.has(v) and v is not ev.ContainerRuntime
    ]
    assert classes
    covered = {type(p).__name__ for p, _ in CASES}
    assert {c.__name__ for c in classes} <= covered


def test_type_url_is_the_full_message_name_as_containerd_typeurl() -> None:
    assert (
        convert.to_any(ev.NamespaceCreate(name="n")).type_url == "containerd.events.NamespaceCreate"
    )
    # image events are declared in the images service package upstream
    assert (
        convert.to_any(ev.ImageCreate(name="i")).type_url
        == "containerd.services.images.v1.ImageCreate"
    )


def test_packed_any_unpacks_to_the_message() -> None:
    packed = convert.to_any(
        ev.ImageUpdate(name="docker.io/library/busybox:latest", labels={"a": "b"})
    )
    out = image_pb2.ImageUpdate()
    out.ParseFromString(packed.value)
    assert out.name == "docker.io/library/busybox:latest"
    assert dict(out.labels) == {"a": "b"}


def test_protos_and_anys_pass_through() -> None:
    msg = namespace_pb2.NamespaceDelete(name="x")
    assert convert.to_proto(msg) is msg
    a = any_pb2.Any(type_url="x.Y", value=b"1")
    assert convert.to_any(a) is a
    assert convert.to_any(msg).type_url == "containerd.events.NamespaceDelete"


def test_unknown_payload_is_invalid_argument() -> None:
    @attrs.frozen
    class Mystery:
        name: str

    with pytest.raises(errdefs.InvalidArgument, match="Mystery"):
        convert.to_any(Mystery("x"))
    with pytest.raises(errdefs.InvalidArgument, match="dict"):
        convert.to_any({"name": "x"})


async def test_proto_publisher_delivers_packed_events_with_filters_on_event_fields() -> None:
    exchange = Exchange()
    publisher = convert.ProtoPublisher(exchange)
    sub = exchange.subscribe('topic=="/namespaces/create",event.name=="ns1"')
    with namespaces.use("ns1"):
        await publisher.publish("/namespaces/create", ev.NamespaceCreate(name="ns0"))
        await publisher.publish(
            "/namespaces/create", ev.NamespaceCreate(name="ns1", labels={"a": "b"})
        )
    env = await anext(sub)
    await sub.aclose()
    assert env.namespace == "ns1"
    assert isinstance(env.event, any_pb2.Any)
    assert env.event.type_url == "containerd.events.NamespaceCreate"
    got = namespace_pb2.NamespaceCreate()
    got.ParseFromString(env.event.value)
    assert got == namespace_pb2.NamespaceCreate(name="ns1", labels={"a": "b"})
