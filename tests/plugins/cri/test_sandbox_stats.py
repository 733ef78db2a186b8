"""Pod sandbox stats helpers: the pod cgroup read for cgroup v1 and v2 (cgroupfs and systemd
slice parents), working set and process count, and interface counters from /proc."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pycontainerd.plugins.cri.sandbox import stats


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v1_pod_usage_reads_each_hierarchy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stats, "CGROUP_ROOT", tmp_path)
    _write(tmp_path / "cpuacct/kubepods/pod1/cpuacct.usage", "123456789\n")
    _write(tmp_path / "memory/kubepods/pod1/memory.usage_in_bytes", "5000\n")
    _write(tmp_path / "memory/kubepods/pod1/memory.limit_in_bytes", "9223372036854771712\n")
    _write(
        tmp_path / "memory/kubepods/pod1/memory.stat",
        "cache 1\ntotal_inactive_file 1200\ntotal_rss 3000\ntotal_pgfault 7\ntotal_pgmajfault 2\n",
    )
    _write(tmp_path / "pids/kubepods/pod1/pids.current", "4\n")
    usage = stats._cgroup_usage("/kubepods/pod1")
    assert usage == {
        "cpu": 123456789,
        "usage": 5000,
        "limit": 9223372036854771712,
        "inactive": 1200,
        "rss": 3000,
        "pgfault": 7,
        "pgmajfault": 2,
        "pids": 4,
    }
    assert stats._cgroup_usage("/kubepods/nosuchpod") is None


def test_cgroup_v2_systemd_slice_parent_is_nested(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stats, "CGROUP_ROOT", tmp_path)
    _write(tmp_path / "cgroup.controllers", "cpu memory pids\n")
    pod = tmp_path / "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"
    _write(pod / "cpu.stat", "usage_usec 250\nuser_usec 200\n")
    _write(pod / "memory.current", "8192\n")
    _write(pod / "memory.max", "max\n")
    _write(pod / "memory.stat", "anon 4096\ninactive_file 1024\npgfault 3\npgmajfault 1\n")
    _write(pod / "pids.current", "2\n")
    usage = stats._cgroup_usage("kubepods-burstable-pod1.slice")
    assert usage is not None
    assert (usage["cpu"], usage["usage"], usage["limit"], usage["inactive"]) == (
        250_000,
        8192,
        0,
        1024,
    )
    assert (usage["rss"], usage["pgfault"], usage["pgmajfault"], usage["pids"]) == (4096, 3, 1, 2)


def test_net_dev_lists_interfaces_of_a_process_namespace() -> None:
    names = [row[0] for row in stats._net_dev(os.getpid())]
    assert "lo" in names
    assert stats._net_dev(0) == []
