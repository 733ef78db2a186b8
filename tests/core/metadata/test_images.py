from __future__ import annotations

import pytest

from pycontainerd.core import errdefs, leases, namespaces
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.leases import Resource
from pycontainerd.core.metadata import events
from pycontainerd.core.metadata.images import Image, ImageStore
from pycontainerd.core.metadata.leases import LeaseManager

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def img(name="docker.io/library/busybox:latest", digest=D1, media_type=INDEX, **kw):
    return Image(
        name=name,
        target=Descriptor(
            media_type=media_type, digest=digest, size=100, annotations=kw.pop("annotations", {})
        ),
        **kw,
    )


async def test_create_get_roundtrip_sets_times(db, ns):
    store = ImageStore(db)
    created = await store.create(img(labels={"a": "1"}, annotations={"x": "y"}))
    got = await store.get(created.name)
    assert got == created
    assert got.created_at is not None and got.created_at == got.updated_at
    assert got.target.annotations == {"x": "y"}


async def test_create_duplicate_is_already_exists(db, ns):
    store = ImageStore(db)
    await store.create(img())
    with pytest.raises(errdefs.AlreadyExists):
        await store.create(img())


@pytest.mark.parametrize(
    "bad",
    [
        img(name=""),
        img(digest="sha256:short"),
        img(media_type=""),
        Image(name="x", target=Descriptor(media_type="m", digest=D1, size=0)),
        img(labels={"k": "v" * 5000}),
    ],
)
async def test_invalid_images_are_invalid_argument(db, ns, bad):
    with pytest.raises(errdefs.InvalidArgument):
        await ImageStore(db).create(bad)


async def test_images_are_namespaced(db):
    store = ImageStore(db)
    with namespaces.use("one"):
        await store.create(img())
    with namespaces.use("two"):
        assert await store.list() == []
        with pytest.raises(errdefs.NotFound):
            await store.get(img().name)


async def test_without_namespace_is_failed_precondition(db):
    with pytest.raises(errdefs.FailedPrecondition, match="namespace is required"):
        await ImageStore(db).list()


async def test_list_filters(db, ns):
    store = ImageStore(db)
    await store.create(img(name="a", labels={"env": "prod"}, annotations={"org.x": "1"}))
    await store.create(img(name="b", digest=D2, media_type=MANIFEST))

    async def names(*fs):
        return [i.name for i in await store.list(list(fs))]

    assert await names() == ["a", "b"]
    assert await names("name==b") == ["b"]
    assert await names(f"target.digest=={D2}") == ["b"]
    assert await names(f"target.mediatype=={INDEX}") == ["a"]
    assert await names("labels.env==prod") == ["a"]
    assert await names('annotations."org.x"') == ["a"]
    assert await names("name==a", "name==b") == ["a", "b"]
    with pytest.raises(errdefs.InvalidArgument):
        await store.list(["name=="])


async def test_update_field_paths(db, ns):
    store = ImageStore(db)
    created = await store.create(img(labels={"a": "1", "b": "2"}, annotations={"x": "1"}))
    change = img(labels={"a": "9", "c": "3"}, digest=D2, annotations={"y": "2"})
    u = await store.update(change, ["labels.a", "labels.b"])
    assert u.labels == {"a": "9"} and u.target.digest == D1
    u = await store.update(change, ["annotations.y"])
    assert u.target.annotations == {"x": "1", "y": "2"}
    u = await store.update(change, ["target"])
    assert u.target.digest == D2 and u.target.annotations == {"y": "2"}
    assert u.created_at == created.created_at and u.updated_at > created.updated_at
    with pytest.raises(errdefs.InvalidArgument, match="cannot update"):
        await store.update(change, ["name"])


async def test_update_without_paths_replaces_all_but_creation_time(db, ns):
    store = ImageStore(db)
    created = await store.create(img(labels={"a": "1"}))
    u = await store.update(img(digest=D2, labels={"b": "2"}))
    assert (u.labels, u.target.digest, u.created_at) == ({"b": "2"}, D2, created.created_at)


async def test_update_missing_is_not_found_and_invalid_update_changes_nothing(db, ns):
    store = ImageStore(db)
    with pytest.raises(errdefs.NotFound):
        await store.update(img(), ["labels"])
    created = await store.create(img())
    with pytest.raises(errdefs.InvalidArgument):
        await store.update(img(digest="nope"), ["target"])
    assert await store.get(created.name) == created


async def test_delete_with_target_checks_digest(db, ns, publisher):
    store = ImageStore(db)
    await store.create(img())
    with pytest.raises(errdefs.NotFound, match="has target"):
        await store.delete(img().name, target=D2)
    await store.delete(img().name, target=D1)
    with pytest.raises(errdefs.NotFound):
        await store.delete(img().name)
    assert db.dirty == 1
    assert [t for _, t, _ in publisher.events] == [
        events.TOPIC_IMAGE_CREATE,
        events.TOPIC_IMAGE_DELETE,
    ]
    assert publisher.events[-1][2] == events.ImageDelete(name=img().name)


async def test_only_expiring_images_join_the_current_lease(db, ns):
    lm = LeaseManager(db)
    await lm.create("l1")
    store = ImageStore(db)
    with leases.use("l1"):
        await store.create(img(name="plain"))
        await store.create(
            img(name="temp", labels={leases.LABEL_GC_EXPIRE: "2099-01-01T00:00:00Z"})
        )
    assert await lm.list_resources("l1") == [Resource(id="temp", type="images")]


async def test_create_under_missing_lease_fails_and_creates_nothing(db, ns):
    store = ImageStore(db)
    with leases.use("ghost"):
        with pytest.raises(errdefs.NotFound, match="lease"):
            await store.create(img(labels={leases.LABEL_GC_EXPIRE: "2099-01-01T00:00:00Z"}))
    assert await store.list() == []
