"""gRPC containerd.services.images.v1.Images over a real in-process daemon (metadata SQLite,
local content store, GC scheduler)."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from google.protobuf import field_mask_pb2

from pycontainerd.api.containerd.events import image_pb2 as ev_pb
from pycontainerd.api.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from pycontainerd.api.containerd.services.images.v1 import images_pb2 as pb
from pycontainerd.api.containerd.services.images.v1 import images_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from pycontainerd.api.containerd.types import descriptor_pb2
from pycontainerd.core import errdefs, leases, namespaces
from pycontainerd.core.content import digests
from pycontainerd.core.content.helpers import write_blob

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"


async def put(d, data: bytes, labels=None, ns="default", lease=None) -> str:  # type: ignore[no-untyped-def]
    md = d.instance("io.containerd.metadata.v1.bolt")
    dgst = digests.from_bytes(data)
    with namespaces.use(ns), leases.use(lease):
        await write_blob(md.content_store, f"ref-{dgst}", data, dgst, labels)
    return dgst


async def exists(d, dgst: str, ns="default") -> bool:  # type: ignore[no-untyped-def]
    md = d.instance("io.containerd.metadata.v1.bolt")
    with namespaces.use(ns):
        try:
            await md.content_store.info(dgst)
        except errdefs.NotFound:
            return False
    return True


def image(name: str, dgst: str, size: int = 10, labels=None) -> pb.Image:  # type: ignore[no-untyped-def]
    return pb.Image(
        name=name,
        labels=labels or {},
        target=descriptor_pb2.Descriptor(media_type=MANIFEST, digest=dgst, size=size),
    )


async def code_of(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await call
    return ei.value.code().name


D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


async def test_create_get_list_filters_and_timestamps(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = pb_grpc.ImagesStub(md_daemon.channel)
    md = md_daemon.ns()
    created = await s.Create(
        pb.CreateImageRequest(image=image("docker.io/library/a:1", D1, labels={"x.y/z": "1"})),
        metadata=md,
    )
    assert created.image.HasField("created_at") and created.image.HasField("updated_at")
    assert created.image.target.digest == D1
    await s.Create(pb.CreateImageRequest(image=image("registry.k8s.io/b:2", D2)), metadata=md)
    got = await s.Get(pb.GetImageRequest(name="docker.io/library/a:1"), metadata=md)
    assert got.image == created.image

    async def names(*filters: str) -> list[str]:
        r = await s.List(pb.ListImagesRequest(filters=list(filters)), metadata=md)
        return [i.name for i in r.images]

    assert await names() == ["docker.io/library/a:1", "registry.k8s.io/b:2"]
    assert await names('labels."x.y/z"==1') == ["docker.io/library/a:1"]
    assert await names("name~=^registry") == ["registry.k8s.io/b:2"]
    assert await names(f"target.digest=={D2}", "name==docker.io/library/a:1") == [
        "docker.io/library/a:1",
        "registry.k8s.io/b:2",
    ]
    # namespaced
    other = await s.List(pb.ListImagesRequest(), metadata=md_daemon.ns("other"))
    assert list(other.images) == []
    assert await code_of(s.List(pb.ListImagesRequest(filters=["name=="]), metadata=md)) == (
        "INVALID_ARGUMENT"
    )


async def test_error_codes(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = pb_grpc.ImagesStub(md_daemon.channel)
    md = md_daemon.ns()
    await s.Create(pb.CreateImageRequest(image=image("a", D1)), metadata=md)
    assert await code_of(s.Create(pb.CreateImageRequest(image=image("a", D1)), metadata=md)) == (
        "ALREADY_EXISTS"
    )
    assert await code_of(s.Create(pb.CreateImageRequest(image=image("", D1)), metadata=md)) == (
        "INVALID_ARGUMENT"
    )
    assert await code_of(
        s.Create(pb.CreateImageRequest(image=image("b", "sha256:nothex")), metadata=md)
    ) == ("INVALID_ARGUMENT")
    assert await code_of(s.Get(pb.GetImageRequest(name="nope"), metadata=md)) == "NOT_FOUND"
    assert await code_of(s.Delete(pb.DeleteImageRequest(name="nope"), metadata=md)) == "NOT_FOUND"
    assert await code_of(s.Get(pb.GetImageRequest(name="a"))) == "FAILED_PRECONDITION"
    # delete with a target the image no longer points at: not found, image kept
    wrong = descriptor_pb2.Descriptor(media_type=MANIFEST, digest=D2, size=10)
    assert (
        await code_of(s.Delete(pb.DeleteImageRequest(name="a", target=wrong), metadata=md))
        == "NOT_FOUND"
    )
    await s.Get(pb.GetImageRequest(name="a"), metadata=md)
    right = descriptor_pb2.Descriptor(media_type=MANIFEST, digest=D1, size=10)
    await s.Delete(pb.DeleteImageRequest(name="a", target=right), metadata=md)
    assert await code_of(s.Get(pb.GetImageRequest(name="a"), metadata=md)) == "NOT_FOUND"


async def test_update_with_and_without_mask(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = pb_grpc.ImagesStub(md_daemon.channel)
    md = md_daemon.ns()
    first = await s.Create(
        pb.CreateImageRequest(image=image("u", D1, labels={"a": "1", "b": "2"})), metadata=md
    )
    r = await s.Update(
        pb.UpdateImageRequest(
            image=pb.Image(name="u", labels={"c": "3"}),
            update_mask=field_mask_pb2.FieldMask(paths=["labels.c", "labels.a"]),
        ),
        metadata=md,
    )
    assert dict(r.image.labels) == {"b": "2", "c": "3"}
    assert r.image.target.digest == D1
    assert r.image.created_at == first.image.created_at
    r = await s.Update(
        pb.UpdateImageRequest(
            image=image("u", D2, size=20), update_mask=field_mask_pb2.FieldMask(paths=["target"])
        ),
        metadata=md,
    )
    assert (r.image.target.digest, r.image.target.size) == (D2, 20)
    assert dict(r.image.labels) == {"b": "2", "c": "3"}
    r = await s.Update(pb.UpdateImageRequest(image=image("u", D1, labels={"z": "9"})), metadata=md)
    assert dict(r.image.labels) == {"z": "9"} and r.image.target.digest == D1
    assert (
        await code_of(
            s.Update(
                pb.UpdateImageRequest(
                    image=pb.Image(name="u"), update_mask=field_mask_pb2.FieldMask(paths=["name"])
                ),
                metadata=md,
            )
        )
        == "INVALID_ARGUMENT"
    )
    assert await code_of(s.Update(pb.UpdateImageRequest(image=image("v", D1)), metadata=md)) == (
        "NOT_FOUND"
    )
    assert await code_of(s.Update(pb.UpdateImageRequest(image=image("", D1)), metadata=md)) == (
        "INVALID_ARGUMENT"
    )


async def test_sync_delete_collects_unreferenced_content_but_not_leased(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = pb_grpc.ImagesStub(md_daemon.channel)
    md = md_daemon.ns()
    ls = leases_pb2_grpc.LeasesStub(md_daemon.channel)
    # as clients do: write under a temporary lease until the image holds the content
    await ls.Create(leases_pb2.CreateRequest(id="pull"), metadata=md)
    await ls.Create(leases_pb2.CreateRequest(id="keep"), metadata=md)
    layer = b"layer-bytes" * 100
    layer_d = await put(md_daemon, layer, lease="pull")
    held = b"held by a lease"
    held_d = await put(md_daemon, held, lease="keep")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "layers": [
                {"mediaType": LAYER, "digest": layer_d, "size": len(layer)},
                {"mediaType": LAYER, "digest": held_d, "size": len(held)},
            ],
        }
    ).encode()
    manifest_d = await put(
        md_daemon,
        manifest,
        labels={
            "containerd.io/gc.ref.content.l.0": layer_d,
            "containerd.io/gc.ref.content.l.1": held_d,
        },
        lease="pull",
    )
    await s.Create(
        pb.CreateImageRequest(image=image("img", manifest_d, len(manifest))), metadata=md
    )
    await ls.Delete(leases_pb2.DeleteRequest(id="pull", sync=True), metadata=md)
    assert await exists(md_daemon, manifest_d) and await exists(md_daemon, layer_d)

    await s.Delete(pb.DeleteImageRequest(name="img", sync=True), metadata=md)
    # sync: collection has happened when Delete returns
    assert not await exists(md_daemon, manifest_d)
    assert not await exists(md_daemon, layer_d)
    assert await exists(md_daemon, held_d)


async def test_image_events_are_containerd_image_events(md_daemon) -> None:  # type: ignore[no-untyped-def]
    exchange = md_daemon.instance("io.containerd.event.v1.exchange")
    call = events_pb2_grpc.EventsStub(md_daemon.channel).Subscribe(
        events_pb2.SubscribeRequest(filters=['topic~="^/images/"'])
    )
    async with asyncio.timeout(5):
        while exchange.subscriber_count == 0:
            await asyncio.sleep(0.01)
    s = pb_grpc.ImagesStub(md_daemon.channel)
    md = md_daemon.ns("evimg")
    await s.Create(pb.CreateImageRequest(image=image("e:1", D1, labels={"l": "v"})), metadata=md)
    await s.Update(pb.UpdateImageRequest(image=image("e:1", D2)), metadata=md)
    await s.Delete(pb.DeleteImageRequest(name="e:1"), metadata=md)
    got = []
    async with asyncio.timeout(5):
        for _ in range(3):
            got.append(await call.read())
    call.cancel()
    assert [(e.topic, e.namespace, e.event.type_url) for e in got] == [
        ("/images/create", "evimg", "containerd.services.images.v1.ImageCreate"),
        ("/images/update", "evimg", "containerd.services.images.v1.ImageUpdate"),
        ("/images/delete", "evimg", "containerd.services.images.v1.ImageDelete"),
    ]
    create = ev_pb.ImageCreate()
    create.ParseFromString(got[0].event.value)
    assert create == ev_pb.ImageCreate(name="e:1", labels={"l": "v"})


def test_registrations_match_containerd() -> None:
    from pycontainerd.plugins import builtins
    from pycontainerd.plugins.services.images import plugin

    got = [(r.type, r.id, tuple(r.requires)) for r in plugin.pycontainerd_registrations()]
    assert got == [
        (
            "io.containerd.service.v1",
            "images-service",
            ("io.containerd.metadata.v1", "io.containerd.gc.v1", "io.containerd.warning.v1"),
        ),
        ("io.containerd.grpc.v1", "images", ("io.containerd.service.v1",)),
    ]
    assert "pycontainerd.plugins.services.images.plugin" in builtins.MODULES
