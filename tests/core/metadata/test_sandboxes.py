from __future__ import annotations

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.metadata.containers import Runtime
from pycontainerd.core.metadata.sandboxes import Sandbox, SandboxStore


async def test_crud_roundtrip(db, ns):
    store = SandboxStore(db)
    sb = Sandbox(
        id="sb1",
        runtime=Runtime(name="io.containerd.runc.v2", options=("t", b"o")),
        spec=("spec", b"s"),
        labels={"a": "1"},
        extensions={"e": ("t", b"x")},
        sandboxer="podsandbox",
    )
    created = await store.create(sb)
    assert await store.get("sb1") == created
    assert created.created_at is not None
    with pytest.raises(errdefs.AlreadyExists):
        await store.create(sb)
    await store.delete("sb1")
    with pytest.raises(errdefs.NotFound):
        await store.get("sb1")
    with pytest.raises(errdefs.NotFound):
        await store.delete("sb1")


async def test_invalid_id_is_invalid_argument(db, ns):
    with pytest.raises(errdefs.InvalidArgument):
        await SandboxStore(db).create(Sandbox(id="no/slash"))


async def test_list_filters(db, ns):
    store = SandboxStore(db)
    await store.create(Sandbox(id="a", labels={"k": "v"}))
    await store.create(Sandbox(id="b"))
    assert [s.id for s in await store.list(["labels.k==v"])] == ["a"]
    assert [s.id for s in await store.list(["id==b"])] == ["b"]
    assert [s.id for s in await store.list()] == ["a", "b"]


async def test_update_paths_and_immutable_runtime(db, ns):
    store = SandboxStore(db)
    await store.create(Sandbox(id="a", runtime=Runtime(name="r1"), labels={"x": "1"}))
    u = await store.update(
        Sandbox(id="a", labels={"y": "2"}, extensions={"e": ("t", b"1")}),
        ["labels.y", "extensions.e"],
    )
    assert u.labels == {"x": "1", "y": "2"} and u.extensions == {"e": ("t", b"1")}
    with pytest.raises(errdefs.InvalidArgument, match="immutable"):
        await store.update(Sandbox(id="a", runtime=Runtime(name="r2")))
    u = await store.update(Sandbox(id="a", runtime=Runtime(name="r2")), ["runtime"])
    assert u.runtime.name == "r2"
    with pytest.raises(errdefs.InvalidArgument):
        await store.update(Sandbox(id="a"), ["sandboxer"])
    with pytest.raises(errdefs.NotFound):
        await store.update(Sandbox(id="zz"), ["labels"])
