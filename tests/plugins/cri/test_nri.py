"""The CRI's NRI call points (plugins.cri.nri) against a real in-process NRI adaptation with
a built-in plugin: conversion of CRI pods/containers to NRI values, the adjustment applied to
the spec at create, conflicts named, sync listing the stores, resources both ways, and every
call point doing nothing without NRI (or after NRI failed to start)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as cri
from pycontainerd.core import errdefs
from pycontainerd.core.nri import NRI, Config, pb
from pycontainerd.core.nri.plugin import BuiltinPlugin
from pycontainerd.plugins.cri.container.store import Container, Metadata
from pycontainerd.plugins.cri.nri import CRINRI, resources_to_cri, resources_to_nri
from pycontainerd.plugins.cri.sandbox.store import Metadata as SandboxMetadata
from pycontainerd.plugins.cri.sandbox.store import Sandbox, SandboxStore, State


def _sandbox() -> Sandbox:
    config = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name="web", uid="u1", namespace="ns"),
        labels={"app": "web"},
        annotations={"a": "b"},
    )
    config.linux.cgroup_parent = "/kubepods/pod-u1"
    sb = Sandbox(
        metadata=SandboxMetadata(
            id="sb1",
            name="web_ns_u1_0",
            config=config,
            runtime_handler="runc",
            netns_path="/var/run/netns/cni-1",
            ip="10.0.0.2",
            additional_ips=["fd00::2"],
        )
    )
    sb.status.state = State.READY
    sb.status.pid = 42
    return sb


def _container(spec: dict[str, Any] | None = None) -> Container:
    config = cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name="app"), labels={"tier": "front"}
    )
    c = Container(
        metadata=Metadata(id="c1", name="app_web", sandbox_id="sb1", config=config),
        spec_json=spec or {"process": {"args": ["sh"], "env": ["A=1"]}},
    )
    c.status.created_at = 5
    c.status.started_at = 6
    c.status.pid = 77
    return c


def _service(sandboxes: list[Sandbox], containers: list[Container]) -> Any:
    store = SandboxStore()
    for sb in sandboxes:
        store.add(sb)

    async def load_spec(c: Container) -> Any:
        return c.spec_json

    ctr_store = SimpleNamespace(list=lambda: list(containers))
    return SimpleNamespace(
        sandboxes=SimpleNamespace(store=store),
        container_manager=SimpleNamespace(store=ctr_store, _load_spec=load_spec),
    )


class Adjuster:
    def __init__(self, env: str, limit: int = 0) -> None:
        self.env, self.limit = env, limit
        self.seen: list[Any] = []

    def synchronize(self, pods: Any, containers: Any) -> None:
        self.seen.append(("sync", [p.id for p in pods], [c.id for c in containers]))

    def create_container(self, pod: Any, container: Any) -> Any:
        self.seen.append(("create", pod.id, pod.name, list(pod.ips), container.name))
        adj = pb.ContainerAdjustment()
        adj.env.add(key=self.env, value="yes")
        adj.annotations["nri/" + self.env] = "1"
        if self.limit:
            adj.linux.resources.memory.limit.value = self.limit
        return adj

    def update_container(self, pod: Any, container: Any, resources: Any) -> Any:
        up = pb.ContainerUpdate(container_id=container.id)
        up.linux.resources.cpu.shares.value = 256
        return [up]


async def _nri(tmp_path: Any, *plugins: tuple[str, tuple[str, Adjuster]]) -> NRI:
    builtin = [
        BuiltinPlugin(
            kind="builtin",
            index=idx,
            base=name,
            handlers={
                "Synchronize": h.synchronize,
                "CreateContainer": h.create_container,
                "UpdateContainer": h.update_container,
            },
        )
        for idx, (name, h) in plugins
    ]
    return NRI(
        Config(
            socket_path=str(tmp_path / "nri.sock"),
            plugin_path=str(tmp_path / "none"),
            disable_connections=True,
        ),
        builtin=builtin,
    )


def test_pod_and_container_conversion() -> None:
    sb, c = _sandbox(), _container()
    adapter = CRINRI(c=_service([sb], [c]))
    pod = adapter.pod(sb).to_proto()
    assert (pod.id, pod.name, pod.uid, pod.namespace) == ("sb1", "web", "u1", "ns")
    assert list(pod.ips) == ["10.0.0.2", "fd00::2"] and pod.pid == 42
    assert pod.runtime_handler == "runc" and dict(pod.labels) == {"app": "web"}
    assert pod.linux.cgroup_parent == "/kubepods/pod-u1"
    assert [(n.type, n.path) for n in pod.linux.namespaces] == [("network", "/var/run/netns/cni-1")]
    # the container code's sandbox view is looked up in the store
    assert adapter.pod(SimpleNamespace(id="sb1")).to_proto() == pod
    ctr = adapter.container(c).to_proto()
    assert (ctr.id, ctr.pod_sandbox_id, ctr.name) == ("c1", "sb1", "app")
    assert ctr.state == pb.CONTAINER_RUNNING and ctr.pid == 77
    assert list(ctr.args) == ["sh"] and list(ctr.env) == ["A=1"]
    assert dict(ctr.labels) == {"tier": "front"}


async def test_without_nri_every_call_point_does_nothing() -> None:
    sb, c = _sandbox(), _container()
    adapter = CRINRI(c=_service([sb], [c]))
    assert not adapter.enabled
    await adapter.start()
    spec = {"process": {"env": ["A=1"]}}
    md = c.metadata
    assert await adapter.cri_create_container(sandbox=sb, metadata=md, spec=spec) is spec
    assert spec == {"process": {"env": ["A=1"]}}
    res = cri.LinuxContainerResources(cpu_shares=2)
    assert await adapter.cri_update_container(container=c, resources=res) is res
    await adapter.cri_run_pod_sandbox(sb)
    for hook in ("post_create", "start", "post_start", "stop", "remove", "post_update"):
        await getattr(adapter, f"cri_{hook}_container")(container=c)
    await adapter.cri_stop_pod_sandbox(sb)
    await adapter.cri_remove_pod_sandbox(sb)


async def test_failed_start_leaves_the_cri_without_nri() -> None:
    class Broken:
        closed = False

        async def start(self, **kw: Any) -> None:
            raise errdefs.FailedPrecondition("cannot listen")

        async def close(self) -> None:
            self.closed = True

    broken = Broken()
    adapter = CRINRI(c=_service([], []), api=broken)
    await adapter.start()
    assert not adapter.enabled and broken.closed


async def test_create_applies_the_merged_adjustment_and_sync_lists_the_stores(tmp_path) -> None:
    sb, c = _sandbox(), _container()
    a, b = Adjuster("FIRST", limit=1 << 26), Adjuster("SECOND")
    api = await _nri(tmp_path, ("10", ("first", a)), ("20", ("second", b)))
    adapter = CRINRI(c=_service([sb], [c]), api=api)
    await adapter.start()
    try:
        assert a.seen[0] == ("sync", ["sb1"], ["c1"])
        spec = {"process": {"env": ["A=1"]}, "annotations": {}}
        new = _container().metadata
        out = await adapter.cri_create_container(sandbox=sb, metadata=new, spec=spec)
        assert out["process"]["env"] == ["A=1", "FIRST=yes", "SECOND=yes"]
        assert out["annotations"] == {"nri/FIRST": "1", "nri/SECOND": "1"}
        assert out["linux"]["resources"]["memory"]["limit"] == 1 << 26
        assert b.seen[-1] == ("create", "sb1", "web", ["10.0.0.2", "fd00::2"], "app")
    finally:
        await api.close()


async def test_two_plugins_setting_one_field_fail_create_naming_both(tmp_path) -> None:
    sb = _sandbox()
    a, b = Adjuster("X", limit=1 << 26), Adjuster("Y", limit=1 << 27)
    api = await _nri(tmp_path, ("10", ("first", a)), ("20", ("second", b)))
    adapter = CRINRI(c=_service([sb], []), api=api)
    await adapter.start()
    try:
        with pytest.raises(errdefs.FailedPrecondition) as exc:
            await adapter.cri_create_container(sandbox=sb, metadata=_container().metadata, spec={})
        assert '"10-first"' in str(exc.value) and '"20-second"' in str(exc.value)
    finally:
        await api.close()


async def test_update_takes_the_plugins_resources(tmp_path) -> None:
    sb, c = _sandbox(), _container()
    api = await _nri(tmp_path, ("10", ("first", Adjuster("X"))))
    adapter = CRINRI(c=_service([sb], [c]), api=api)
    await adapter.start()
    try:
        res = cri.LinuxContainerResources(cpu_shares=1024, memory_limit_in_bytes=1 << 26)
        out = await adapter.cri_update_container(container=c, resources=res)
        assert out.cpu_shares == 256 and out.memory_limit_in_bytes == 1 << 26
    finally:
        await api.close()


def test_resources_round_trip() -> None:
    res = cri.LinuxContainerResources(
        cpu_period=100000,
        cpu_quota=50000,
        cpu_shares=512,
        memory_limit_in_bytes=1 << 26,
        memory_swap_limit_in_bytes=1 << 27,
        cpuset_cpus="0-1",
        cpuset_mems="0",
        unified={"memory.high": "100"},
        hugepage_limits=[cri.HugepageLimit(page_size="2MB", limit=1 << 21)],
    )
    assert resources_to_cri(resources_to_nri(res), cri.LinuxContainerResources()) == res
