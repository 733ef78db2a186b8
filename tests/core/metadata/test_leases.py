from __future__ import annotations

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.leases import Resource
from pycontainerd.core.metadata.leases import LeaseManager

DIGEST = "sha256:" + "b" * 64


async def test_create_list_delete(db, ns):
    lm = LeaseManager(db)
    l1 = await lm.create("l1", {"a": "1"})
    assert l1.created_at is not None
    await lm.create("l2")
    assert [lease.id for lease in await lm.list()] == ["l1", "l2"]
    assert (await lm.list(["labels.a==1"]))[0] == l1
    assert [lease.id for lease in await lm.list(["id==l2"])] == ["l2"]
    await lm.delete("l1")
    assert db.dirty == 1
    with pytest.raises(errdefs.NotFound):
        await lm.delete("l1")


async def test_create_needs_id_and_refuses_duplicates(db, ns):
    lm = LeaseManager(db)
    with pytest.raises(errdefs.InvalidArgument):
        await lm.create("")
    await lm.create("l1")
    with pytest.raises(errdefs.AlreadyExists):
        await lm.create("l1")


async def test_resources_add_list_delete(db, ns):
    lm = LeaseManager(db)
    await lm.create("l1")
    for r in (
        Resource(id=DIGEST, type="content"),
        Resource(id="ref1", type="ingests"),
        Resource(id="img", type="images"),
        Resource(id="k1", type="snapshots/overlayfs"),
    ):
        await lm.add_resource("l1", r)
    await lm.add_resource("l1", Resource(id=DIGEST, type="content"))  # idempotent
    assert await lm.list_resources("l1") == [
        Resource(id=DIGEST, type="content"),
        Resource(id="img", type="images"),
        Resource(id="ref1", type="ingests"),
        Resource(id="k1", type="snapshots/overlayfs"),
    ]
    await lm.delete_resource("l1", Resource(id="k1", type="snapshots/overlayfs"))
    assert Resource(id="k1", type="snapshots/overlayfs") not in await lm.list_resources("l1")


async def test_deleting_a_lease_drops_its_resources(db, ns):
    lm = LeaseManager(db)
    await lm.create("l1")
    await lm.add_resource("l1", Resource(id="img", type="images"))
    await lm.delete("l1")
    await lm.create("l1")
    assert await lm.list_resources("l1") == []


@pytest.mark.parametrize(
    ("resource", "error"),
    [
        (Resource(id="not-a-digest", type="content"), errdefs.InvalidArgument),
        (Resource(id="k", type="snapshots"), errdefs.InvalidArgument),
        (Resource(id="k", type="snapshots/a/b"), errdefs.InvalidArgument),
        (Resource(id="x", type="content/extra"), errdefs.InvalidArgument),
        (Resource(id="x", type="containers"), errdefs.NotImplemented_),
    ],
)
async def test_bad_resources_are_refused(db, ns, resource, error):
    lm = LeaseManager(db)
    await lm.create("l1")
    with pytest.raises(error):
        await lm.add_resource("l1", resource)


async def test_resources_of_missing_lease_are_not_found(db, ns):
    lm = LeaseManager(db)
    with pytest.raises(errdefs.NotFound):
        await lm.add_resource("nope", Resource(id="img", type="images"))
    with pytest.raises(errdefs.NotFound):
        await lm.list_resources("nope")
