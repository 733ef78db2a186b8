"""ListMetricDescriptors and ListPodSandboxMetrics against the real daemon, with runc, the test
CNI network and busybox + pause from a local docker-registry, checked by critest's rules
(tests/support/cri_metrics.py): two pods, one without a cgroup parent (what critest creates
under the cgroupfs driver) and one under ``kubepods``, each with a container limited as
critest limits it, that writes files through ExecSync; then every expected series has a value
(blkio ones aside) with as many label values as its descriptor has keys, and the values are the
ones the container's cgroup, processes and writable layer have."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cri as cri_support
import cri_metrics
import grpc
import pytest
from cri import CRIClient, pb
from daemon import Daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def images(registry: Any, pause: Any, busybox: Any) -> dict[str, str]:
    registry.push(pause, repository="pause", tag="3.10")
    registry.push(busybox, repository="busybox", tag="latest")
    return {"pause": registry.ref("pause", "3.10"), "busybox": registry.ref("busybox", "latest")}


def _config(base: Path, network: Any, registry: Any, pause_ref: str) -> str:
    return cri_support.daemon_config(base, network, registry, pause_ref)


@pytest.fixture
def daemon(network: Any, registry: Any, images: dict[str, str]) -> Iterator[tuple[CRIClient, str]]:
    """A CRI client of a fresh daemon, and a cgroup parent for pods (removed afterwards)."""
    base = Path(tempfile.mkdtemp(prefix="crimetr", dir="/tmp"))
    env = cri_support.daemon_env()
    d = Daemon(base / "d", config=_config(base, network, registry, images["pause"]), env=env)
    d.start(timeout=60)
    cri = CRIClient(d.address, timeout=120)
    parent = f"/kubepods/pycri-metrics-{uuid.uuid4().hex[:8]}"
    try:
        cri.wait_ready()
        cri.pull(images["busybox"])
        yield cri, parent
    finally:
        rs = cri.runtime
        for pod in rs.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items:
            try:
                rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=60)
                rs.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=60)
            except grpc.RpcError:
                pass
        cri.close()
        d.stop()
        for cg in Path("/sys/fs/cgroup").glob(f"*{parent}"):
            for sub in [*sorted(cg.rglob("*"), reverse=True), cg, cg.parent]:
                try:
                    sub.rmdir()  # only empty cgroups go; kubepods only when nobody else's
                except OSError:
                    pass
        if not os.environ.get("PYCONTAINERD_KEEP_TEST_DIRS"):
            shutil.rmtree(base, ignore_errors=True)


def _pod_with_container(cri: CRIClient, name: str, parent: str, image: str) -> tuple[str, str]:
    rs = cri.runtime
    config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="metrics")
    )
    if parent:
        config.linux.cgroup_parent = parent
    pod = rs.RunPodSandbox(pb.RunPodSandboxRequest(config=config), timeout=120).pod_sandbox_id
    cconfig = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=f"{name}-ctr"),
        image=pb.ImageSpec(image=image),
        command=["/bin/sh", "-c", "sleep 1000"],
    )
    # critest's limits for its metrics container
    res = cconfig.linux.resources
    res.cpu_period, res.cpu_quota, res.cpu_shares = 100000, 20000, 1024
    res.memory_limit_in_bytes = res.memory_swap_limit_in_bytes = 64 * MIB
    cid = rs.CreateContainer(
        pb.CreateContainerRequest(pod_sandbox_id=pod, config=cconfig, sandbox_config=config),
        timeout=120,
    ).container_id
    rs.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60)
    # critest writes ten small files; a 2 MiB one makes the writable layer's usage visible
    script = (
        "mkdir -p /var/lib/mydisktest && for i in $(seq 1 10); do "
        "echo hi >> /var/lib/mydisktest/inode_test_file_$i; done; "
        "head -c 2097152 /dev/zero > /var/lib/mydisktest/blob; sync"
    )
    out = rs.ExecSync(
        pb.ExecSyncRequest(container_id=cid, cmd=["/bin/sh", "-c", script], timeout=30),
        timeout=60,
    )
    assert out.exit_code == 0, out.stderr
    return pod, cid


def _values(metrics: Any) -> dict[tuple[str, ...], int]:
    return {(m.name, *m.label_values[5:]): m.value.value for m in metrics}


def test_pod_sandbox_metrics_meet_critests_rules_with_real_readings(
    daemon: tuple[CRIClient, str], images: dict[str, str]
) -> None:
    cri, parent = daemon
    rs = cri.runtime
    plain = _pod_with_container(cri, "plain", "", images["busybox"])
    nested = _pod_with_container(cri, "nested", parent, images["busybox"])

    descs = list(
        rs.ListMetricDescriptors(pb.ListMetricDescriptorsRequest(), timeout=30).descriptors
    )
    assert cri_metrics.descriptor_problems(descs) == []
    before = time.time()
    listed = rs.ListPodSandboxMetrics(pb.ListPodSandboxMetricsRequest(), timeout=30).pod_metrics
    by_pod = {p.pod_sandbox_id: p for p in listed}
    assert set(by_pod) == {plain[0], nested[0]}

    for pod_name, (pod_id, cid) in (("plain", plain), ("nested", nested)):
        pod = by_pod[pod_id]
        assert cri_metrics.pod_metrics_problems(descs, pod) == [], pod_name
        [ctr] = pod.container_metrics
        assert ctr.container_id == cid
        assert {tuple(m.label_values[:5]) for m in ctr.metrics} == {
            (pod_name, "metrics", f"{pod_name}-ctr", cid, images["busybox"])
        }
        got = _values(ctr.metrics)
        assert got["container_spec_cpu_period",] == 100000
        assert got["container_spec_cpu_quota",] == 20000
        assert got["container_spec_cpu_shares",] == 1024
        assert got["container_spec_memory_limit_bytes",] == 64 * MIB
        assert got["container_spec_memory_swap_limit_bytes",] >= 64 * MIB
        assert got["container_processes",] >= 1 and got["container_threads",] >= 1
        assert got["container_file_descriptors",] >= 1
        assert 0 < got["container_memory_usage_bytes",] < 64 * MIB
        assert got["container_memory_cache",] >= 0
        assert got["container_oom_events_total",] == 0
        fs_usage = [v for k, v in got.items() if k[0] == "container_fs_usage_bytes"]
        assert fs_usage and fs_usage[0] >= 2 * MIB
        assert got["container_last_seen",] >= int(before)
        status = rs.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=30)
        assert got["container_start_time_seconds",] == status.status.started_at // 10**9
        # the pod's own series: its network namespace (labelled as the pod)
        rx = [m for m in pod.metrics if m.name == "container_network_receive_bytes_total"]
        assert [list(m.label_values) for m in rx] == [[pod_name, "metrics", "", pod_id, "", "eth0"]]

    # the pod under a cgroup parent has its cgroup's series too, with container ""
    nested_pod = _values(by_pod[nested[0]].metrics)
    assert nested_pod["container_memory_usage_bytes",] > 0
    assert "container_memory_usage_bytes" not in {m.name for m in by_pod[plain[0]].metrics}

    streamed = list(rs.StreamPodSandboxMetrics(pb.StreamPodSandboxMetricsRequest(), timeout=30))
    assert {p.pod_sandbox_id for r in streamed for p in r.pod_sandbox_metrics} == set(by_pod)
