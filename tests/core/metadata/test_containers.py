from __future__ import annotations

import pytest

from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.metadata import events
from pycontainerd.core.metadata.containers import Container, ContainerStore, Runtime

SPEC = ("types.containerd.io/opencontainers/runtime-spec/1/Spec", b"{}")
RUNC = Runtime(name="io.containerd.runc.v2", options=("containerd.runc.v1.Options", b"\x01"))


def ctr(id="c1", **kw):
    kw.setdefault("runtime", RUNC)
    kw.setdefault("spec", SPEC)
    return Container(id=id, **kw)


async def test_create_get_roundtrip(db, ns):
    store = ContainerStore(db)
    c = ctr(
        labels={"a": "1"},
        image="docker.io/library/busybox:latest",
        snapshotter="overlayfs",
        snapshot_key="c1",
        extensions={"ext": ("t", b"\x00\xff")},
        sandbox="sb",
    )
    created = await store.create(c)
    got = await store.get("c1")
    assert got == created
    assert got.runtime.options == ("containerd.runc.v1.Options", b"\x01")
    assert got.extensions == {"ext": ("t", b"\x00\xff")}


@pytest.mark.parametrize(
    "bad",
    [
        ctr(id=""),
        ctr(id="bad id"),
        ctr(id="a" * 77),
        ctr(id="-x"),
        ctr(runtime=Runtime(name="")),
        ctr(spec=None),
        ctr(snapshot_key="k"),
        ctr(extensions={"": ("t", b"")}),
        ctr(labels={"k" * 4097: ""}),
    ],
)
async def test_invalid_containers_are_invalid_argument(db, ns, bad):
    with pytest.raises(errdefs.InvalidArgument):
        await ContainerStore(db).create(bad)
    assert await ContainerStore(db).list() == []


async def test_id_of_76_characters_is_accepted(db, ns):
    await ContainerStore(db).create(ctr(id="a" * 76))


async def test_duplicate_is_already_exists_and_other_namespace_is_independent(db, ns):
    store = ContainerStore(db)
    await store.create(ctr())
    with pytest.raises(errdefs.AlreadyExists):
        await store.create(ctr())
    with namespaces.use("other"):
        await store.create(ctr())


async def test_list_filters(db, ns):
    store = ContainerStore(db)
    await store.create(ctr("a", image="img1", labels={"io.k8s.pod": "p"}))
    await store.create(ctr("b", runtime=Runtime(name="io.containerd.pyrunc.v2")))

    async def ids(*fs):
        return [c.id for c in await store.list(list(fs))]

    assert await ids("id==b") == ["b"]
    assert await ids("runtime.name==io.containerd.pyrunc.v2") == ["b"]
    assert await ids("image==img1") == ["a"]
    assert await ids('labels."io.k8s.pod"==p') == ["a"]
    assert await ids("image") == ["a"]


async def test_update_field_paths(db, ns):
    store = ContainerStore(db)
    await store.create(ctr(labels={"a": "1", "b": "2"}, extensions={"x": ("t", b"1")}))
    change = ctr(
        labels={"a": "9"},
        image="new",
        spec=("t2", b"2"),
        extensions={"y": ("t", b"2")},
        snapshotter="overlayfs",
        snapshot_key="k2",
    )
    u = await store.update(change, ["labels.a", "labels.b", "extensions.y", "image", "spec"])
    assert u.labels == {"a": "9"}
    assert u.extensions == {"x": ("t", b"1"), "y": ("t", b"2")}
    assert (u.image, u.spec) == ("new", ("t2", b"2"))
    with pytest.raises(errdefs.InvalidArgument, match="cannot update"):
        await store.update(change, ["runtime"])
    with pytest.raises(errdefs.InvalidArgument, match="cannot update"):
        await store.update(change, ["snapshotter"])
    # snapshotkey without a snapshotter fails validation, leaving the container unchanged
    with pytest.raises(errdefs.InvalidArgument, match="validation"):
        await store.update(change, ["snapshotkey"])
    assert await store.get("c1") == u


async def test_update_without_paths_refuses_snapshotter_or_runtime_change(db, ns):
    store = ContainerStore(db)
    await store.create(ctr(snapshotter="native", snapshot_key="k"))
    with pytest.raises(errdefs.InvalidArgument, match="snapshotter field is immutable"):
        await store.update(ctr(snapshotter="overlayfs", snapshot_key="k"))
    with pytest.raises(errdefs.InvalidArgument, match="runtime.name field is immutable"):
        await store.update(ctr(snapshotter="native", runtime=Runtime(name="other")))
    u = await store.update(ctr(snapshotter="native", snapshot_key="k2", labels={"z": "1"}))
    assert (u.snapshot_key, u.labels) == ("k2", {"z": "1"})


async def test_update_and_delete_missing_are_not_found(db, ns):
    store = ContainerStore(db)
    with pytest.raises(errdefs.NotFound):
        await store.update(ctr(), ["labels"])
    with pytest.raises(errdefs.NotFound):
        await store.delete("c1")
    with pytest.raises(errdefs.NotFound):
        await store.get("c1")


async def test_delete_removes_extensions_and_marks_dirty(db, ns, publisher):
    store = ContainerStore(db)
    await store.create(ctr(extensions={"x": ("t", b"1")}))
    await store.delete("c1")
    assert db.dirty == 1
    assert await db.view(lambda tx: tx.all("SELECT * FROM extensions")) == []
    await store.create(ctr())
    assert (await store.get("c1")).extensions == {}
    topics = [t for _, t, _ in publisher.events]
    assert topics == [
        events.TOPIC_CONTAINER_CREATE,
        events.TOPIC_CONTAINER_DELETE,
        events.TOPIC_CONTAINER_CREATE,
    ]
