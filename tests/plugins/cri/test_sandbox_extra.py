"""StreamPodSandboxes, ListMetricDescriptors, List/StreamPodSandboxMetrics,
UpdatePodSandboxResources and CheckpointContainer over CRI (in-process daemon; sandboxes and
containers are put in the stores directly, pod usage comes from a fake cgroup v2 tree)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cri_metrics
import grpc
import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as pb
from pycontainerd.plugins.cri.container.store import Container
from pycontainerd.plugins.cri.container.store import Metadata as ContainerMetadata
from pycontainerd.plugins.cri.container.store import Status as ContainerStatus
from pycontainerd.plugins.cri.sandbox import extra, metrics
from pycontainerd.plugins.cri.sandbox.store import Metadata, Sandbox, State


def _sandbox(id_: str, name: str, state: State = State.READY, parent: str = "") -> Sandbox:
    config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid="u-" + name, namespace="ns"),
        labels={"app": name},
    )
    if parent:
        config.linux.cgroup_parent = parent
    sb = Sandbox(metadata=Metadata(id=id_, name=name, config=config))
    sb.status.state = state
    return sb


def _container(id_: str, sandbox_id: str, name: str, pid: int = 0, started_at: int = 0):
    config = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image="busybox")
    )
    md = ContainerMetadata(id=id_, name=name, sandbox_id=sandbox_id, config=config)
    return Container(
        metadata=md, status=ContainerStatus(created_at=1, pid=pid, started_at=started_at)
    )


async def _add(cri_daemon: Any, *sandboxes: Sandbox) -> None:
    m = cri_daemon.service.sandboxes
    await m.wait_started()
    for sb in sandboxes:
        m.store.add(sb)


def _fake_pod_cgroup(root: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(metrics, "CGROUP_ROOT", root)
    (root / name).mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / name / "cpu.stat").write_text("usage_usec 7500000\n")
    (root / name / "memory.current").write_text("10000\n")
    (root / name / "memory.max").write_text("max\n")
    (root / name / "memory.stat").write_text(
        "anon 6000\ninactive_file 4000\npgfault 11\npgmajfault 3\n"
    )
    (root / name / "pids.current").write_text("5\n")


async def test_stream_pod_sandboxes_is_list_pod_sandbox_streamed(cri_daemon):
    await _add(cri_daemon, _sandbox("a" * 64, "web"), _sandbox("b" * 64, "db", State.NOTREADY))
    rt = cri_daemon.cri.runtime
    flt = pb.PodSandboxFilter(label_selector={"app": "web"})
    got = [r async for r in rt.StreamPodSandboxes(pb.StreamPodSandboxesRequest(filter=flt))]
    listed = await rt.ListPodSandbox(pb.ListPodSandboxRequest(filter=flt))
    assert [list(r.pod_sandboxes) for r in got] == [list(listed.items)]
    assert [s.id for s in listed.items] == ["a" * 64]
    everything = [r async for r in rt.StreamPodSandboxes(pb.StreamPodSandboxesRequest())]
    assert sorted(s.id for r in everything for s in r.pod_sandboxes) == ["a" * 64, "b" * 64]
    ready = pb.PodSandboxFilter(state=pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY))
    only = [r async for r in rt.StreamPodSandboxes(pb.StreamPodSandboxesRequest(filter=ready))]
    assert [s.id for r in only for s in r.pod_sandboxes] == ["b" * 64]


async def test_list_metric_descriptors_are_the_metrics_modules(cri_daemon):
    resp = await cri_daemon.cri.runtime.ListMetricDescriptors(pb.ListMetricDescriptorsRequest())
    assert list(resp.descriptors) == metrics.descriptors()
    assert cri_metrics.descriptor_problems(resp.descriptors) == []
    by_name = {d.name: d for d in resp.descriptors}
    cpu = by_name["container_cpu_usage_seconds_total"]
    assert list(cpu.label_keys) == ["pod", "namespace", "container", "id", "image"]
    assert cpu.help


def _values(metrics_: Any) -> dict[tuple[str, ...], int]:
    return {(m.name, *m.label_values): m.value.value for m in metrics_}


async def test_pod_sandbox_metrics_from_the_pod_cgroup(cri_daemon, tmp_path, monkeypatch):
    _fake_pod_cgroup(tmp_path, monkeypatch, "kubepods/podw")
    await _add(
        cri_daemon,
        _sandbox("c" * 64, "web", parent="/kubepods/podw"),
        _sandbox("d" * 64, "gone", State.NOTREADY),
    )
    rt = cri_daemon.cri.runtime
    resp = await rt.ListPodSandboxMetrics(pb.ListPodSandboxMetricsRequest())
    assert [p.pod_sandbox_id for p in resp.pod_metrics] == ["c" * 64]
    pod = resp.pod_metrics[0]
    got = _values(pod.metrics)
    labels = ("web", "ns", "", "c" * 64, "")
    assert got[("container_cpu_usage_seconds_total", *labels)] == 7
    assert got[("container_memory_usage_bytes", *labels)] == 10000
    assert got[("container_memory_working_set_bytes", *labels)] == 6000
    assert got[("container_memory_rss", *labels)] == 6000
    assert got[("container_memory_failures_total", *labels, "pgfault", "hierarchy")] == 11
    assert got[("container_memory_failures_total", *labels, "pgmajfault", "hierarchy")] == 3
    assert got[("container_processes", *labels)] == 5
    kinds = {m.name: m.metric_type for m in pod.metrics}
    assert kinds["container_cpu_usage_seconds_total"] == pb.COUNTER
    assert kinds["container_memory_usage_bytes"] == pb.GAUGE
    assert all(m.timestamp > 0 for m in pod.metrics)
    assert list(pod.container_metrics) == []

    streamed = [r async for r in rt.StreamPodSandboxMetrics(pb.StreamPodSandboxMetricsRequest())]
    assert len(streamed) == 1
    assert [p.pod_sandbox_id for p in streamed[0].pod_sandbox_metrics] == ["c" * 64]


async def test_pod_sandbox_metrics_read_running_containers_only(cri_daemon, monkeypatch):
    """A RUNNING container's series come from its init process (here: this test process,
    its real cgroup and /proc); a created one has none."""
    await _add(cri_daemon, _sandbox("e" * 64, "web"))
    store = cri_daemon.service.container_manager.store
    running = _container("1" * 64, "e" * 64, "app", pid=os.getpid(), started_at=5 * 10**9)
    store.add(running)
    store.add(_container("2" * 64, "e" * 64, "created"))
    resp = await cri_daemon.cri.runtime.ListPodSandboxMetrics(pb.ListPodSandboxMetricsRequest())
    [pod] = resp.pod_metrics
    assert list(pod.metrics) == []  # no cgroup parent, no network namespace
    assert [c.container_id for c in pod.container_metrics] == ["1" * 64]
    got = {m.name: m for m in pod.container_metrics[0].metrics}
    start = got["container_start_time_seconds"]
    assert list(start.label_values) == ["web", "ns", "app", "1" * 64, "busybox"]
    assert start.value.value == 5
    assert got["container_threads"].value.value >= 1
    assert got["container_file_descriptors"].value.value >= 3
    assert got["container_memory_usage_bytes"].value.value > 0


class _NRI:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail = fail

    async def cri_update_pod_sandbox_resources(self, *, sandbox, overhead, resources):
        self.calls.append(("update", sandbox.id, overhead, resources))
        if self.fail:
            from pycontainerd.core import errdefs

            raise errdefs.FailedPrecondition("plugin says no")

    async def cri_post_update_pod_sandbox_resources(self, *, sandbox):
        self.calls.append(("post", sandbox.id))
        raise RuntimeError("post hooks only log")


async def test_update_pod_sandbox_resources_tells_nri_and_applies_nothing(cri_daemon):
    sb = _sandbox("e" * 64, "web")
    await _add(cri_daemon, sb)
    rt = cri_daemon.cri.runtime
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await rt.UpdatePodSandboxResources(pb.UpdatePodSandboxResourcesRequest(pod_sandbox_id="f"))
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    assert "failed to find sandbox" in ei.value.details()

    res = pb.LinuxContainerResources(cpu_shares=512, memory_limit_in_bytes=1 << 30)
    over = pb.LinuxContainerResources(cpu_shares=2)
    req = pb.UpdatePodSandboxResourcesRequest(pod_sandbox_id="e" * 8, resources=res, overhead=over)
    await rt.UpdatePodSandboxResources(req)  # no NRI: accepted
    assert extra.updated_resources(sb) == (over, res)

    nri = _NRI()
    cri_daemon.service.nri = nri
    try:
        await rt.UpdatePodSandboxResources(req)
        assert nri.calls == [("update", "e" * 64, over, res), ("post", "e" * 64)]
        cri_daemon.service.nri = _NRI(fail=True)
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await rt.UpdatePodSandboxResources(req)
        assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "NRI sandbox update failed: plugin says no" in ei.value.details()
    finally:
        cri_daemon.service.nri = None


async def test_checkpoint_container_without_criu_fails_as_containerd_does(cri_daemon, monkeypatch):
    monkeypatch.setattr(extra, "CRIU_BINARY", "no-such-criu-binary")
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await cri_daemon.cri.runtime.CheckpointContainer(
            pb.CheckpointContainerRequest(container_id="abc", location="/tmp/x.tar")
        )
    assert ei.value.code() == grpc.StatusCode.UNKNOWN
    assert ei.value.details().startswith(
        'CRIU binary not found or too old (<31600). Failed to checkpoint container "abc": '
        "failed to check for criu version"
    )


async def test_checkpoint_container_with_criu_is_unimplemented(cri_daemon, monkeypatch):
    monkeypatch.setattr(extra, "_check_criu", lambda: None)
    rt = cri_daemon.cri.runtime
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await rt.CheckpointContainer(pb.CheckpointContainerRequest(container_id="nosuch"))
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    monkeypatch.setattr(type(cri_daemon.service.container_manager), "get", lambda s, i: object())
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await rt.CheckpointContainer(pb.CheckpointContainerRequest(container_id="there"))
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "checkpointing container" in ei.value.details()
