"""The metrics of ListPodSandboxMetrics from fake cgroup v1/v2 trees and a fake /proc: which
file gives which series, units, labels, and critest's rules (every expected series has a
descriptor and a value, label values match the descriptor's keys)."""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import cri_metrics
import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as pb
from pycontainerd.plugins.cri.sandbox import metrics

CID = "c" * 64
POD = "p" * 64


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(metrics, "CGROUP_ROOT", tmp_path / "cgroup")
    monkeypatch.setattr(metrics, "PROC_ROOT", tmp_path / "proc")
    monkeypatch.setattr(metrics, "SYS_DEV_BLOCK", tmp_path / "dev-block")
    (tmp_path / "cgroup").mkdir()
    _write(tmp_path / "dev-block/254:0/uevent", "MAJOR=254\nMINOR=0\nDEVNAME=vda\n")
    return tmp_path


def _v1_cgroup(root: Path, rel: str) -> None:
    cg = root / "cgroup"
    _write(cg / "cpuacct" / rel / "cpuacct.usage", "7500000000\n")
    tck = os.sysconf("SC_CLK_TCK")
    _write(cg / "cpuacct" / rel / "cpuacct.stat", f"user {3 * tck + 1}\nsystem {2 * tck}\n")
    _write(
        cg / "cpu" / rel / "cpu.stat", "nr_periods 40\nnr_throttled 6\nthrottled_time 2500000000\n"
    )
    _write(cg / "cpu" / rel / "cpu.cfs_period_us", "100000\n")
    _write(cg / "cpu" / rel / "cpu.cfs_quota_us", "20000\n")
    _write(cg / "cpu" / rel / "cpu.shares", "1024\n")
    mem = cg / "memory" / rel
    _write(mem / "memory.usage_in_bytes", "10000\n")
    _write(mem / "memory.max_usage_in_bytes", "12000\n")
    _write(mem / "memory.failcnt", "4\n")
    _write(mem / "memory.kmem.usage_in_bytes", "700\n")
    _write(mem / "memory.limit_in_bytes", "67108864\n")
    _write(mem / "memory.soft_limit_in_bytes", "9223372036854771712\n")
    _write(mem / "memory.memsw.limit_in_bytes", "67108864\n")
    _write(mem / "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    _write(
        mem / "memory.stat",
        "cache 5\nrss 6\npgfault 8\npgmajfault 1\n"
        "total_cache 3000\ntotal_rss 6000\ntotal_mapped_file 512\ntotal_swap 256\n"
        "total_active_file 1000\ntotal_inactive_file 2000\ntotal_pgfault 11\ntotal_pgmajfault 3\n",
    )
    _write(cg / "pids" / rel / "pids.current", "3\n")
    _write(cg / "pids" / rel / "pids.max", "max\n")
    _write(cg / "pids" / rel / "cgroup.procs", "100\n101\n")
    # cfq files empty (no such scheduler), throttle files with entries
    _write(cg / "blkio" / rel / "blkio.io_service_bytes_recursive", "Total 0\n")
    _write(
        cg / "blkio" / rel / "blkio.throttle.io_service_bytes_recursive",
        "254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 8192\n7:1 Read 10\nTotal 12298\n",
    )
    _write(
        cg / "blkio" / rel / "blkio.throttle.io_serviced_recursive",
        "254:0 Read 1\n254:0 Write 2\nTotal 3\n",
    )


def _proc(root: Path, pid: int, *, fds: dict[str, str], threads: int, cgroup: str = "") -> None:
    d = root / "proc" / str(pid)
    (d / "fd").mkdir(parents=True)
    for name, target in fds.items():
        os.symlink(target, d / "fd" / name)
    _write(d / "status", f"Name:\tsleep\nState:\tS\nThreads:\t{threads}\nSigQ:\t0/1\n")
    _write(
        d / "limits",
        "Limit                     Soft Limit           Hard Limit           Units     \n"
        "Max cpu time              unlimited            unlimited            seconds   \n"
        "Max open files            1024                 1048576              files     \n",
    )
    if cgroup:
        _write(d / "cgroup", cgroup)


def _by_name(samples: list[metrics.Sample]) -> dict[tuple[str, ...], int]:
    return {(s.name, *s.labels): s.value for s in samples}


def test_descriptors_cover_what_critest_expects() -> None:
    descs = metrics.descriptors()
    assert cri_metrics.descriptor_problems(descs) == []
    names = [d.name for d in descs]
    assert len(names) == len(set(names))
    # nothing is described that no reader produces (critest wants a value for each)
    assert not {"container_fs_sector_reads_total", "container_fs_io_current"} & set(names)
    for d in descs:
        assert list(d.label_keys[:5]) == ["pod", "namespace", "container", "id", "image"]
    by = {d.name: d for d in descs}
    assert list(by["container_network_receive_bytes_total"].label_keys[5:]) == ["interface"]
    assert list(by["container_blkio_device_usage_total"].label_keys[5:]) == [
        "device",
        "major",
        "minor",
        "operation",
    ]
    assert list(by["container_memory_failures_total"].label_keys[5:]) == [
        "failure_type",
        "scope",
    ]


def test_cgroup_v1_files_give_cpu_memory_pids_spec_and_blkio(roots: Path) -> None:
    _v1_cgroup(roots, "k8s.io/" + CID)
    got = _by_name(metrics.cgroup_samples(metrics.cgroup_dirs_of_path("/k8s.io/" + CID)))
    assert got["container_cpu_usage_seconds_total",] == 7
    assert got["container_cpu_user_seconds_total",] == 3
    assert got["container_cpu_system_seconds_total",] == 2
    assert got["container_cpu_cfs_periods_total",] == 40
    assert got["container_cpu_cfs_throttled_periods_total",] == 6
    assert got["container_cpu_cfs_throttled_seconds_total",] == 2
    assert got["container_spec_cpu_period",] == 100000
    assert got["container_spec_cpu_quota",] == 20000
    assert got["container_spec_cpu_shares",] == 1024
    assert got["container_memory_usage_bytes",] == 10000
    assert got["container_memory_working_set_bytes",] == 8000
    assert got["container_memory_max_usage_bytes",] == 12000
    assert got["container_memory_failcnt",] == 4
    assert got["container_memory_kernel_usage",] == 700
    assert got["container_memory_cache",] == 3000
    assert got["container_memory_rss",] == 6000
    assert got["container_memory_mapped_file",] == 512
    assert got["container_memory_swap",] == 256
    assert got["container_memory_total_active_file_bytes",] == 1000
    assert got["container_memory_total_inactive_file_bytes",] == 2000
    assert got["container_memory_failures_total", "pgfault", "container"] == 8
    assert got["container_memory_failures_total", "pgfault", "hierarchy"] == 11
    assert got["container_memory_failures_total", "pgmajfault", "hierarchy"] == 3
    assert got["container_oom_events_total",] == 2
    assert got["container_spec_memory_limit_bytes",] == 64 << 20
    assert got["container_spec_memory_swap_limit_bytes",] == 64 << 20
    assert got["container_spec_memory_reservation_limit_bytes",] == 9223372036854771712
    assert got["container_processes",] == 3
    assert got["container_threads_max",] == 0  # "max": unlimited
    # blkio: the throttle files, as cfq has no entries; devices named from /sys/dev/block
    assert got["container_blkio_device_usage_total", "/dev/vda", "254", "0", "Read"] == 4096
    assert got["container_blkio_device_usage_total", "/dev/vda", "254", "0", "Sync"] == 8192
    assert got["container_blkio_device_usage_total", "7:1", "7", "1", "Read"] == 10
    assert got["container_fs_reads_bytes_total", "/dev/vda"] == 4096
    assert got["container_fs_writes_bytes_total", "/dev/vda"] == 8192
    assert got["container_fs_reads_total", "/dev/vda"] == 1
    assert got["container_fs_writes_total", "/dev/vda"] == 2


def test_cgroup_v1_swap_from_memsw_without_total_swap_and_gone_cgroup(roots: Path) -> None:
    mem = roots / "cgroup/memory/x"
    _write(mem / "memory.usage_in_bytes", "1000\n")
    _write(mem / "memory.memsw.usage_in_bytes", "1300\n")
    _write(mem / "memory.stat", "total_rss 900\n")
    got = _by_name(metrics.cgroup_samples(metrics.cgroup_dirs_of_path("x")))
    assert got["container_memory_swap",] == 300
    assert metrics.cgroup_samples(metrics.cgroup_dirs_of_path("nosuch")) == []


def test_cgroup_v2_files_give_the_same_series(roots: Path) -> None:
    cg = roots / "cgroup"
    _write(cg / "cgroup.controllers", "cpu memory pids io\n")
    d = cg / "test.slice" / "cri-containerd-x.scope"
    _write(
        d / "cpu.stat",
        "usage_usec 7500000\nuser_usec 4200000\nsystem_usec 3300000\n"
        "nr_periods 10\nnr_throttled 2\nthrottled_usec 1500000\n",
    )
    _write(d / "cpu.max", "20000 100000\n")
    _write(d / "cpu.weight", "39\n")  # runc's weight for 1024 shares
    _write(d / "memory.current", "10000\n")
    _write(d / "memory.peak", "15000\n")
    _write(d / "memory.max", "max\n")
    _write(d / "memory.low", "0\n")
    _write(d / "memory.swap.max", "4096\n")
    _write(d / "memory.swap.current", "128\n")
    _write(d / "memory.events", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n")
    _write(
        d / "memory.stat",
        "anon 6000\nfile 3000\nkernel 800\nfile_mapped 100\nactive_file 1000\n"
        "inactive_file 2500\npgfault 20\npgmajfault 2\n",
    )
    _write(d / "pids.current", "4\n")
    _write(d / "pids.max", "512\n")
    _write(d / "io.stat", "254:0 rbytes=4096 wbytes=1024 rios=3 wios=1 dbytes=0 dios=0\n")
    got = _by_name(metrics.cgroup_samples(metrics.cgroup_dirs_of_path(str(d.relative_to(cg)))))
    assert got["container_cpu_usage_seconds_total",] == 7
    assert got["container_cpu_user_seconds_total",] == 4
    assert got["container_cpu_system_seconds_total",] == 3
    assert got["container_cpu_cfs_throttled_seconds_total",] == 1
    assert got["container_spec_cpu_period",] == 100000
    assert got["container_spec_cpu_quota",] == 20000
    assert got["container_spec_cpu_shares",] == 998  # 1024 -> weight 39 -> 998: lossy
    assert got["container_memory_working_set_bytes",] == 7500
    assert got["container_memory_max_usage_bytes",] == 15000
    assert got["container_memory_failcnt",] == 5
    assert got["container_memory_kernel_usage",] == 800
    assert (got["container_memory_cache",], got["container_memory_rss",]) == (3000, 6000)
    assert got["container_memory_swap",] == 128
    assert got["container_memory_failures_total", "pgfault", "hierarchy"] == 20
    assert got["container_oom_events_total",] == 1
    assert got["container_spec_memory_limit_bytes",] == 0  # max
    assert got["container_spec_memory_swap_limit_bytes",] == 4096
    assert (got["container_processes",], got["container_threads_max",]) == (4, 512)
    assert got["container_blkio_device_usage_total", "/dev/vda", "254", "0", "Write"] == 1024
    assert got["container_fs_reads_total", "/dev/vda"] == 3


def test_cgroup_of_a_process_v1_and_v2(roots: Path) -> None:
    _proc(
        roots,
        100,
        fds={},
        threads=1,
        cgroup="12:pids:/k8s.io/c\n4:cpu,cpuacct:/k8s.io/c\n3:memory:/k8s.io/c\n"
        "1:name=systemd:/x\n0::/\n",
    )
    dirs = metrics.cgroup_dirs_of_pid(100)
    cg = roots / "cgroup"
    assert dirs == {
        "pids": cg / "pids/k8s.io/c",
        "cpu": cg / "cpu/k8s.io/c",
        "cpuacct": cg / "cpuacct/k8s.io/c",
        "memory": cg / "memory/k8s.io/c",
    }
    assert metrics.cgroup_dirs_of_pid(99) == {}
    _write(cg / "cgroup.controllers", "cpu\n")
    _write(roots / "proc/100/cgroup", "0::/test.slice/cri-containerd-c.scope\n")
    assert metrics.cgroup_dirs_of_pid(100) == {"": cg / "test.slice/cri-containerd-c.scope"}


def test_processes_give_fds_sockets_threads_and_the_init_ulimit(roots: Path) -> None:
    _proc(roots, 100, fds={"0": "/dev/null", "1": "pipe:[5]", "3": "socket:[77]"}, threads=1)
    _proc(roots, 101, fds={"0": "/dev/null", "4": "socket:[78]"}, threads=3)
    got = _by_name(metrics.process_samples([100, 101, 102], init_pid=100))
    assert got == {
        ("container_file_descriptors",): 5,
        ("container_sockets",): 2,
        ("container_threads",): 4,
        ("container_ulimits_soft", "max_open_files"): 1024,
    }
    assert metrics.process_samples([102]) == []


def test_network_counters_of_each_interface_but_loopback(roots: Path) -> None:
    _write(
        roots / "proc/7/net/dev",
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets "
        "errs drop fifo colls carrier compressed\n"
        "    lo:     100       1    0    0    0     0          0         0      100       1 "
        "   0    0    0     0       0          0\n"
        "  eth0:    5000      50    1    2    0     0          0         0     3000      30 "
        "   3    4    0     0       0          0\n",
    )
    got = _by_name(metrics.network_samples(7))
    assert got == {
        ("container_network_receive_bytes_total", "eth0"): 5000,
        ("container_network_receive_packets_total", "eth0"): 50,
        ("container_network_receive_errors_total", "eth0"): 1,
        ("container_network_receive_packets_dropped_total", "eth0"): 2,
        ("container_network_transmit_bytes_total", "eth0"): 3000,
        ("container_network_transmit_packets_total", "eth0"): 30,
        ("container_network_transmit_errors_total", "eth0"): 3,
        ("container_network_transmit_packets_dropped_total", "eth0"): 4,
    }
    assert metrics.network_samples(8) == []


def test_filesystem_size_inodes_and_writable_layer_usage(tmp_path: Path) -> None:
    st = os.statvfs(tmp_path)
    got = metrics.filesystem_samples(str(tmp_path), 4096)
    assert {s.labels for s in got} == {got[0].labels}  # one device
    values = {s.name: s.value for s in got}
    assert values == {
        "container_fs_limit_bytes": st.f_blocks * st.f_frsize,
        "container_fs_usage_bytes": 4096,
        "container_fs_inodes_total": st.f_files,
        "container_fs_inodes_free": pytest.approx(st.f_ffree, abs=100),
    }
    unknown = {s.name: s.value for s in metrics.filesystem_samples(str(tmp_path), None)}
    assert unknown["container_fs_usage_bytes"] > 0
    assert metrics.filesystem_samples(str(tmp_path / "nosuch"), 1) == []


def test_to_metrics_labels_kinds_and_bounds() -> None:
    base = ("web", "ns", "app", CID, "busybox")
    got = metrics.to_metrics(
        [
            metrics.Sample("container_cpu_usage_seconds_total", 3),
            metrics.Sample("container_memory_usage_bytes", -5),
            metrics.Sample("container_network_receive_bytes_total", 1 << 70, ("eth0",)),
        ],
        base,
        42,
    )
    assert [list(m.label_values) for m in got] == [list(base), list(base), [*base, "eth0"]]
    assert [m.metric_type for m in got] == [pb.COUNTER, pb.GAUGE, pb.COUNTER]
    assert [m.value.value for m in got] == [3, 0, (1 << 64) - 1]
    assert {m.timestamp for m in got} == {42}


def _pod(roots: Path, *, cgroup: str = "") -> metrics.PodTarget:
    _v1_cgroup(roots, "k8s.io/" + CID)
    cgroup_file = "".join(
        f"{i}:{c}:/k8s.io/{CID}\n" for i, c in enumerate(metrics.V1_CONTROLLERS, 2)
    )
    _proc(roots, 100, fds={"0": "/dev/null", "3": "socket:[1]"}, threads=1, cgroup=cgroup_file)
    _proc(roots, 101, fds={"0": "/dev/null"}, threads=2)
    _write(
        roots / "proc/50/net/dev",
        "h1\nh2\n  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
    )
    fs = roots / "fs"
    fs.mkdir()
    ctr = metrics.ContainerTarget(
        id=CID,
        name="app",
        image="busybox:latest",
        pid=100,
        started_at=1_700_000_000_123_456_789,
        fs_path=str(fs),
        fs_used=8192,
    )
    return metrics.PodTarget(
        id=POD, name="web", namespace="ns", cgroup=cgroup, netns_pid=50, containers=(ctr,)
    )


def test_collect_meets_critests_rules_for_a_pod_and_its_container(roots: Path) -> None:
    target = _pod(roots)
    [pod] = metrics.collect([target], now_ns=1_800_000_000_000_000_000)
    assert pod.pod_sandbox_id == POD
    assert cri_metrics.pod_metrics_problems(metrics.descriptors(), pod) == []
    # pod level: its network, labelled as the pod (no container, no image)
    assert {m.name for m in pod.metrics} == {n for _, n in metrics._NET_COLUMNS}
    rx = next(m for m in pod.metrics if m.name == "container_network_receive_bytes_total")
    assert list(rx.label_values) == ["web", "ns", "", POD, "", "eth0"]
    assert rx.value.value == 1
    [ctr] = pod.container_metrics
    assert ctr.container_id == CID
    got = {(m.name, *m.label_values[5:]): m.value.value for m in ctr.metrics}
    assert {tuple(m.label_values[:5]) for m in ctr.metrics} == {
        ("web", "ns", "app", CID, "busybox:latest")
    }
    assert got["container_start_time_seconds",] == 1_700_000_000
    assert got["container_last_seen",] == 1_800_000_000
    assert got["container_file_descriptors",] == 3
    assert got["container_sockets",] == 1
    assert got["container_threads",] == 3
    assert got["container_ulimits_soft", "max_open_files"] == 1024
    usage = [m for m in ctr.metrics if m.name == "container_fs_usage_bytes"]
    assert [m.value.value for m in usage] == [8192]
    assert all(m.timestamp == 1_800_000_000_000_000_000 for m in ctr.metrics)


def test_collect_reads_the_pod_cgroup_and_skips_containers_gone_meanwhile(roots: Path) -> None:
    target = _pod(roots, cgroup="k8s.io/" + CID)  # any cgroup with files will do
    gone = metrics.ContainerTarget(id="g" * 64, name="gone", image="", pid=999, started_at=1)
    [pod] = metrics.collect([target], now_ns=1)
    names = {m.name for m in pod.metrics}
    assert {"container_cpu_usage_seconds_total", "container_memory_usage_bytes"} <= names
    assert "container_file_descriptors" not in names  # no process counts at pod level
    cpu = next(m for m in pod.metrics if m.name == "container_cpu_usage_seconds_total")
    assert list(cpu.label_values) == ["web", "ns", "", POD, ""]
    [pod] = metrics.collect([attrs.evolve(target, containers=(gone,))], now_ns=1)
    assert list(pod.container_metrics) == []


def test_the_critest_rules_catch_a_missing_value_and_a_label_mismatch(roots: Path) -> None:
    [pod] = metrics.collect([_pod(roots)], now_ns=1)
    descs = metrics.descriptors()
    ctr = pod.container_metrics[0]
    kept = [m for m in ctr.metrics if m.name != "container_sockets"]
    del ctr.metrics[:]
    ctr.metrics.extend(kept)
    ctr.metrics[0].label_values.append("extra")
    first = ctr.metrics[0].name
    assert sorted(cri_metrics.pod_metrics_problems(descs, pod)) == sorted(
        [
            "container_sockets: no value",
            "container_sockets: described, no value",
            f"{first}: 6 label values for 5 keys",
        ]
    )
