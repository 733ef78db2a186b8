from __future__ import annotations

import datetime
import json

import pytest

from pycontainerd.core import errdefs, leases, namespaces
from pycontainerd.core.content import digests
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.gc import Node, ResourceType, tricolor
from pycontainerd.core.leases import Resource
from pycontainerd.core.metadata.containers import Container, Runtime
from pycontainerd.core.metadata.images import Image
from pycontainerd.core.metadata.metadata import Metadata
from pycontainerd.plugins.content.local.store import LocalStore
from pycontainerd.plugins.snapshotters.native.snapshotter import NativeSnapshotter


@pytest.fixture
async def backends(tmp_path):
    content = await LocalStore.open(str(tmp_path / "content"))
    native = await NativeSnapshotter.open(str(tmp_path / "native"))
    yield content, native
    await native.close()


@pytest.fixture
async def md(tmp_path, backends):
    content, native = backends
    m = await Metadata.open(
        str(tmp_path / "meta" / "meta.db"), content=content, snapshotters={"native": native}
    )
    yield m
    await m.close()


@pytest.fixture
def ns():
    with namespaces.use("default"):
        yield "default"


async def put(md: Metadata, data: bytes, labels: dict[str, str] | None = None) -> str:
    """Write ``data`` through the namespaced content store; return its digest."""
    assert md.content_store is not None
    dgst = digests.from_bytes(data)
    w = await md.content_store.writer(f"ref-{dgst}", total=len(data), expected=dgst)
    offset = w.status().offset  # resumable, or already in the backend (shared policy)
    if offset < len(data):
        await w.write(data[offset:])
    await w.commit(len(data), dgst, labels)
    return dgst


async def image_tree(md: Metadata, tag: str = "x") -> dict[str, str]:
    """Blobs of a small multi-arch image (index -> manifest -> config + 2 layers), linked with
    the gc.ref.content labels clients set; returns their digests by role."""
    layer0 = await put(md, f"layer0-{tag}".encode())
    layer1 = await put(md, f"layer1-{tag}".encode())
    config = await put(md, json.dumps({"tag": tag}).encode())
    manifest = await put(
        md,
        json.dumps({"config": config, "layers": [layer0, layer1]}).encode(),
        {
            "containerd.io/gc.ref.content.config": config,
            "containerd.io/gc.ref.content.l.0": layer0,
            "containerd.io/gc.ref.content.l.1": layer1,
        },
    )
    index = await put(
        md,
        json.dumps({"manifests": [manifest], "tag": tag}).encode(),
        {"containerd.io/gc.ref.content.m.0": manifest},
    )
    return {"index": index, "manifest": manifest, "config": config, "l0": layer0, "l1": layer1}


async def backend_blobs(content: LocalStore) -> set[str]:
    return {i.digest async for i in content.walk()}


async def visible_blobs(md: Metadata) -> set[str]:
    assert md.content_store is not None
    return {i.digest async for i in md.content_store.walk()}


@pytest.fixture
def publisher_events(md):
    recorded: list[tuple[str | None, str, object]] = []

    class Recorder:
        async def publish(self, topic: str, event: object) -> None:
            recorded.append((namespaces.get(), topic, event))

    md.db.publisher = Recorder()
    return recorded


INDEX = "application/vnd.oci.image.index.v1+json"
PAST = "2000-01-01T00:00:00Z"
FUTURE = "2999-01-01T00:00:00Z"


async def make_image(md, name, index, labels=None):
    return await md.images.create(
        Image(name=name, target=Descriptor(media_type=INDEX, digest=index, size=1), labels=labels)
    )


def test_tricolor_follows_references_and_strips_flat_bit():
    a, b, c, d = (Node(1, "ns", k) for k in "abcd")
    graph = {a: [b], b: [c], c: [], d: [a]}
    assert tricolor([a], lambda n: graph.get(n.stripped(), [])) == {a, b, c}
    assert tricolor([a.flat()], lambda n: []) == {a}


async def test_image_tree_is_kept_and_unreferenced_blob_removed(md, ns, backends):
    tree = await image_tree(md)
    stray = await put(md, b"nobody wants me")
    await make_image(md, "docker.io/library/x:latest", tree["index"])

    stats = await md.garbage_collect()

    assert await visible_blobs(md) == set(tree.values())
    assert await backend_blobs(backends[0]) == set(tree.values())
    assert stats.removed == [Node(ResourceType.CONTENT, ns, stray)]


async def test_deleting_the_image_lets_gc_remove_the_whole_tree(md, ns, backends):
    tree = await image_tree(md)
    await make_image(md, "x", tree["index"])
    await md.images.delete("x")
    assert md.db.dirty == 1

    await md.garbage_collect()

    assert await visible_blobs(md) == set()
    assert await backend_blobs(backends[0]) == set()
    assert md.db.dirty == 0


async def test_blob_stays_in_backend_while_another_namespace_references_it(md, backends):
    with namespaces.use("one"):
        shared = await put(md, b"common")
    with namespaces.use("two"):
        assert await put(md, b"common") == shared
        await put(md, b"only two")  # unreferenced in "two"
    await md.garbage_collect()
    assert await backend_blobs(backends[0]) == set()  # nothing is a root anywhere

    with namespaces.use("one"):
        shared = await put(md, b"common", {"containerd.io/gc.root": "yes"})
    with namespaces.use("two"):
        await put(md, b"common")
    await md.garbage_collect()
    with namespaces.use("one"):
        assert await visible_blobs(md) == {shared}
    with namespaces.use("two"):
        assert await visible_blobs(md) == set()
    assert await backend_blobs(backends[0]) == {shared}


async def test_leased_content_stays_until_the_lease_goes(md, ns, backends):
    await md.leases.create("pull")
    with leases.use("pull"):
        tree = await image_tree(md)
    assert {r.id for r in await md.leases.list_resources("pull")} == set(tree.values())
    await md.garbage_collect()
    assert await visible_blobs(md) == set(tree.values())

    await md.leases.delete("pull")
    await md.garbage_collect()
    assert await backend_blobs(backends[0]) == set()


async def test_lease_holding_only_the_index_keeps_its_references_unless_flat(md, ns):
    tree = await image_tree(md)
    await md.leases.create("deep")
    await md.leases.add_resource("deep", Resource(id=tree["index"], type="content"))
    await md.leases.create("flat", {"containerd.io/gc.flat": "true"})
    await md.leases.add_resource("flat", Resource(id=tree["index"], type="content"))

    await md.garbage_collect()
    assert await visible_blobs(md) == set(tree.values())

    await md.leases.delete("deep")
    await md.garbage_collect()
    assert await visible_blobs(md) == {tree["index"]}


async def test_expired_lease_is_removed_with_what_only_it_held(md, ns):
    await md.leases.create("old", {"containerd.io/gc.expire": PAST})
    await md.leases.create("new", {"containerd.io/gc.expire": FUTURE})
    with leases.use("old"):
        old = await put(md, b"old")
    with leases.use("new"):
        new = await put(md, b"new")

    stats = await md.garbage_collect()

    assert [lease.id for lease in await md.leases.list()] == ["new"]
    assert await visible_blobs(md) == {new}
    assert Node(ResourceType.LEASE, ns, "old") in stats.removed
    assert Node(ResourceType.CONTENT, ns, old) in stats.removed


async def test_invalid_expiry_label_is_ignored_and_the_lease_kept(md, ns):
    await md.leases.create("odd", {"containerd.io/gc.expire": "tomorrow-ish"})
    await md.garbage_collect()
    assert [lease.id for lease in await md.leases.list()] == ["odd"]


async def test_image_with_expired_gc_expire_is_collected(md, ns, publisher_events):
    t1 = await image_tree(md, "one")
    t2 = await image_tree(md, "two")
    await make_image(md, "keep", t1["index"], {"containerd.io/gc.expire": FUTURE})
    await make_image(md, "drop", t2["index"], {"containerd.io/gc.expire": PAST})

    await md.garbage_collect()

    assert [i.name for i in await md.images.list()] == ["keep"]
    assert await visible_blobs(md) == set(t1.values())
    assert ("default", "/images/delete") in [(n, t) for n, t, _ in publisher_events]


async def test_image_reference_label_keeps_another_image(md, ns):
    t1 = await image_tree(md, "one")
    await make_image(md, "child", t1["index"], {"containerd.io/gc.expire": PAST})
    holder = await put(
        md, b"holder", {"containerd.io/gc.ref.image": "child", "containerd.io/gc.root": "1"}
    )
    await md.garbage_collect()
    assert [i.name for i in await md.images.list()] == ["child"]
    assert await visible_blobs(md) == set(t1.values()) | {holder}


async def test_snapshot_chain_is_kept_by_config_label_then_removed_children_first(md, ns, backends):
    sn = md.snapshotters["native"]
    parent = ""
    for i in range(3):
        await sn.prepare(f"extract-{i}", parent)
        await sn.commit(f"layer-{i}", f"extract-{i}")
        parent = f"layer-{i}"
    await sn.prepare("scratch", "")  # unreferenced active snapshot
    config = await put(md, b"config", {"containerd.io/gc.ref.snapshot.native": "layer-2"})
    manifest = await put(md, b"manifest", {"containerd.io/gc.ref.content.config": config})
    await make_image(md, "img", manifest)

    await md.garbage_collect()
    assert sorted([i.name async for i in sn.walk()]) == ["layer-0", "layer-1", "layer-2"]
    assert len([i async for i in backends[1].walk()]) == 3

    await md.images.delete("img")
    stats = await md.garbage_collect()
    assert [i async for i in sn.walk()] == []
    assert [i async for i in backends[1].walk()] == []  # backend removals succeeded in order
    assert {n.key for n in stats.removed_of(ResourceType.SNAPSHOT)} == {
        "native/layer-0",
        "native/layer-1",
        "native/layer-2",
    }


async def test_container_keeps_its_snapshot_and_the_parents(md, ns):
    sn = md.snapshotters["native"]
    await sn.prepare("base-x", "")
    await sn.commit("base", "base-x")
    await sn.prepare("rootfs", "base")
    await md.containers.create(
        Container(
            id="c1",
            runtime=Runtime(name="r"),
            spec=("t", b""),
            snapshotter="native",
            snapshot_key="rootfs",
        )
    )
    await md.garbage_collect()
    assert sorted([i.name async for i in sn.walk()]) == ["base", "rootfs"]
    await md.containers.delete("c1")
    await md.garbage_collect()
    assert [i.name async for i in sn.walk()] == []


async def test_leased_snapshot_is_kept(md, ns):
    sn = md.snapshotters["native"]
    await md.leases.create("unpack")
    with leases.use("unpack"):
        await sn.prepare("work", "")
    assert await md.leases.list_resources("unpack") == [
        Resource(id="work", type="snapshots/native")
    ]
    await md.garbage_collect()
    assert [i.name async for i in sn.walk()] == ["work"]


async def test_ingest_is_kept_until_it_expires_then_aborted_in_the_backend(md, ns, backends):
    w = await md.content_store.writer("half-done", total=10)
    await w.write(b"12345")
    await w.close()
    await md.garbage_collect()
    assert [s.ref for s in await md.content_store.list_statuses()] == ["half-done"]

    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=25)
    stats = await md.garbage_collect(now=later)
    assert stats.removed == [Node(ResourceType.INGEST, ns, "half-done")]
    assert await md.content_store.list_statuses() == []
    assert await backends[0].list_statuses() == []


async def test_leased_ingest_has_no_expiry_and_stays_with_the_lease(md, ns):
    await md.leases.create("l")
    with leases.use("l"):
        w = await md.content_store.writer("ing", total=3)
        await w.write(b"abc")
        await w.close()
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)
    await md.garbage_collect(now=later)
    assert [s.ref for s in await md.content_store.list_statuses()] == ["ing"]
    await md.leases.delete("l")
    await md.garbage_collect(now=later)
    assert await md.content_store.list_statuses() == []


async def test_first_collection_cleans_backend_objects_without_records(md, ns, backends):
    content, native = backends
    w = await content.writer("orphan", total=0)
    await w.write(b"orphan blob")
    await w.commit()
    await native.prepare("orphan-snap", "")
    await md.garbage_collect()
    assert await backend_blobs(content) == set()
    assert [i async for i in native.walk()] == []


async def test_collection_keeps_objects_committed_while_it_runs(md, ns):
    import asyncio

    tree = await image_tree(md)
    await make_image(md, "x", tree["index"])
    results = await asyncio.gather(
        md.garbage_collect(), put(md, b"late", {"containerd.io/gc.root": "1"})
    )
    assert results[1] in await visible_blobs(md)
    assert digests.from_bytes(b"late") == results[1]


async def test_writer_for_existing_blob_is_already_exists_and_joins_the_lease(md, ns):
    dgst = await put(md, b"present")
    await md.leases.create("l")
    with leases.use("l"), pytest.raises(errdefs.AlreadyExists):
        await md.content_store.writer("again", total=7, expected=dgst)
    assert await md.leases.list_resources("l") == [Resource(id=dgst, type="content")]
