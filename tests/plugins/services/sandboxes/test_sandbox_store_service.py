"""``io.containerd.sandbox.store.v1.local`` and gRPC containerd.services.sandbox.v1.Store over
a real in-process daemon."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2

from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2 as pb
from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import sandbox_pb2 as types_pb
from pycontainerd.core.metadata.sandboxes import SandboxStore

SPEC = any_pb2.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/Spec", value=b"{}")


def sandbox(id: str, **kw) -> types_pb.Sandbox:  # type: ignore[no-untyped-def]  # noqa: A002
    kw.setdefault("runtime", types_pb.Sandbox.Runtime(name="io.containerd.runc.v2"))
    return types_pb.Sandbox(sandbox_id=id, **kw)


async def code_of(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await call
    return ei.value.code().name


def test_local_store_plugin_is_the_metadata_sandbox_store(md_daemon) -> None:  # type: ignore[no-untyped-def]
    store = md_daemon.instance("io.containerd.sandbox.store.v1.local")
    assert isinstance(store, SandboxStore)
    assert store is md_daemon.instance("io.containerd.metadata.v1.bolt").sandboxes


async def test_create_get_list_update_delete(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = pb_grpc.StoreStub(md_daemon.channel)
    md = md_daemon.ns()
    want = sandbox(
        "sb1",
        runtime=types_pb.Sandbox.Runtime(
            name="io.containerd.runc.v2", options=any_pb2.Any(type_url="o", value=b"\x01")
        ),
        spec=SPEC,
        labels={"a": "1"},
        extensions={"e": any_pb2.Any(type_url="x.E", value=b"\x02")},
        sandboxer="podsandbox",
    )
    created = (await s.Create(pb.StoreCreateRequest(sandbox=want), metadata=md)).sandbox
    assert created.HasField("created_at") and created.HasField("updated_at")
    got = (await s.Get(pb.StoreGetRequest(sandbox_id="sb1"), metadata=md)).sandbox
    assert got == created
    got.ClearField("created_at")
    got.ClearField("updated_at")
    assert got == want

    await s.Create(pb.StoreCreateRequest(sandbox=sandbox("sb2", labels={"a": "2"})), metadata=md)
    listed = await s.List(pb.StoreListRequest(filters=["labels.a==2"]), metadata=md)
    assert [x.sandbox_id for x in listed.list] == ["sb2"]
    assert len((await s.List(pb.StoreListRequest(), metadata=md)).list) == 2

    updated = (
        await s.Update(
            pb.StoreUpdateRequest(sandbox=sandbox("sb1", labels={"b": "2"}), fields=["labels.b"]),
            metadata=md,
        )
    ).sandbox
    assert dict(updated.labels) == {"a": "1", "b": "2"}
    assert updated.sandboxer == "podsandbox" and updated.spec == SPEC
    await s.Delete(pb.StoreDeleteRequest(sandbox_id="sb1"), metadata=md)
    assert await code_of(s.Get(pb.StoreGetRequest(sandbox_id="sb1"), metadata=md)) == "NOT_FOUND"


async def test_error_codes(md_daemon) -> None:  # type: ignore[no-untyped-def]
    s = pb_grpc.StoreStub(md_daemon.channel)
    md = md_daemon.ns()
    await s.Create(pb.StoreCreateRequest(sandbox=sandbox("x")), metadata=md)
    assert await code_of(s.Create(pb.StoreCreateRequest(sandbox=sandbox("x")), metadata=md)) == (
        "ALREADY_EXISTS"
    )
    assert (
        await code_of(s.Create(pb.StoreCreateRequest(sandbox=sandbox("bad id")), metadata=md))
        == "INVALID_ARGUMENT"
    )
    assert await code_of(s.Delete(pb.StoreDeleteRequest(sandbox_id="nope"), metadata=md)) == (
        "NOT_FOUND"
    )
    assert (
        await code_of(
            s.Update(pb.StoreUpdateRequest(sandbox=sandbox("x"), fields=["sandboxer"]), metadata=md)
        )
        == "INVALID_ARGUMENT"
    )
    assert await code_of(s.Get(pb.StoreGetRequest(sandbox_id="x"))) == "FAILED_PRECONDITION"


def test_registrations_match_containerd() -> None:
    from pycontainerd.plugins import builtins
    from pycontainerd.plugins.services.sandboxes import plugin

    got = [(r.type, r.id, tuple(r.requires)) for r in plugin.pycontainerd_registrations()]
    assert got == [
        ("io.containerd.sandbox.store.v1", "local", ("io.containerd.metadata.v1",)),
        ("io.containerd.grpc.v1", "sandboxes", ("io.containerd.sandbox.store.v1",)),
    ]
    assert "pycontainerd.plugins.services.sandboxes.plugin" in builtins.MODULES
