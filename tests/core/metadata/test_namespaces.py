from __future__ import annotations

import pytest

from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.metadata import events
from pycontainerd.core.metadata.containers import Container, ContainerStore, Runtime
from pycontainerd.core.metadata.images import Image, ImageStore
from pycontainerd.core.metadata.leases import LeaseManager
from pycontainerd.core.metadata.namespaces import NamespaceStore
from pycontainerd.core.metadata.sandboxes import Sandbox, SandboxStore

DIGEST = "sha256:" + "a" * 64


async def test_create_get_list_and_labels(db):
    store = NamespaceStore(db)
    await store.create("b", {"x": "1"})
    await store.create("a")
    assert await store.list() == ["a", "b"]
    assert await store.get("b") == {"x": "1"}
    await store.set_label("b", "y", "2")
    await store.set_label("b", "x", "")
    assert await store.get("b") == {"y": "2"}


async def test_create_twice_is_already_exists(db):
    store = NamespaceStore(db)
    await store.create("a")
    with pytest.raises(errdefs.AlreadyExists):
        await store.create("a")


@pytest.mark.parametrize("name", ["", "-a", "a..b", "a/b", "x" * 77])
async def test_invalid_names_are_invalid_argument(db, name):
    with pytest.raises(errdefs.InvalidArgument):
        await NamespaceStore(db).create(name)


async def test_oversized_label_is_invalid_argument(db):
    with pytest.raises(errdefs.InvalidArgument, match="greater than maximum size"):
        await NamespaceStore(db).create("a", {"k": "v" * 4096})


async def test_get_missing_is_not_found(db):
    with pytest.raises(errdefs.NotFound):
        await NamespaceStore(db).get("nope")


async def test_update_without_paths_replaces_labels_and_with_paths_sets_one(db):
    store = NamespaceStore(db)
    await store.create("a", {"x": "1", "y": "2"})
    assert await store.update("a", {"z": "3"}) == {"z": "3"}
    assert await store.update("a", {"w": "4", "q": "5"}, ["labels.w", "labels.z"]) == {"w": "4"}
    with pytest.raises(errdefs.InvalidArgument):
        await store.update("a", {}, ["name"])


async def test_objects_bring_their_namespace_into_existence(db):
    with namespaces.use("implicit"):
        await LeaseManager(db).create("l1")
    assert "implicit" in await NamespaceStore(db).list()


async def test_delete_refused_while_namespace_holds_objects_naming_them(db):
    store = NamespaceStore(db)
    await store.create("busy")
    with namespaces.use("busy"):
        await ImageStore(db).create(
            Image(name="img", target=Descriptor(media_type="m", digest=DIGEST, size=1))
        )
        await ContainerStore(db).create(
            Container(id="c", runtime=Runtime(name="r"), spec=("t", b""))
        )
        await LeaseManager(db).create("l")
        await SandboxStore(db).create(Sandbox(id="s"))
        await db.update(
            lambda tx: tx.execute(
                "INSERT INTO snapshots(namespace, snapshotter, key, backend_key, created_at, "
                "updated_at) VALUES ('busy', 'native', 'k', 'busy/1/k', 0, 0)"
            )
        )
    with pytest.raises(errdefs.FailedPrecondition) as info:
        await store.delete("busy")
    msg = str(info.value)
    for what in (
        "images",
        "containers",
        'snapshots on "native" snapshotter',
        "leases",
        "sandboxes",
    ):
        assert what in msg
    assert "busy" in await store.list()


async def test_delete_empty_namespace_and_missing_is_not_found(db, publisher):
    store = NamespaceStore(db)
    await store.create("a")
    await store.delete("a")
    assert await store.list() == []
    with pytest.raises(errdefs.NotFound):
        await store.delete("a")
    assert [(n, t) for n, t, _ in publisher.events] == [
        ("a", events.TOPIC_NAMESPACE_CREATE),
        ("a", events.TOPIC_NAMESPACE_DELETE),
    ]
