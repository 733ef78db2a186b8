"""The cgroups task monitor (``io.containerd.monitor.task.v1.cgroups``) in the real daemon: a
busybox ``sleep`` run with containerd's shim (``io.containerd.runc.v2``) and with ours
(``io.containerd.pyrunc.v2``) has its ``container_*`` series on the metrics server's
``/v1/metrics``, labelled with its id and namespace, with plausible values; once the task is
deleted they are gone."""

from __future__ import annotations

import re
import socket
import urllib.request
from collections.abc import Iterator

import images
import pytest
from daemon import Daemon, with_image

pytestmark = [pytest.mark.integration, pytest.mark.root]

RUNTIMES = ("io.containerd.runc.v2", "io.containerd.pyrunc.v2")

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def port() -> int:
    return _free_port()


@pytest.fixture(scope="module")
def d(busybox: images.Image, port: int) -> Iterator[Daemon]:
    config = (
        "version = 4\n"
        'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime",'
        ' "io.containerd.cri.v1.images"]\n'
        '[plugins."io.containerd.server.v1.metrics"]\n'
        f'address = "127.0.0.1:{port}"\n'
    )
    with with_image("taskmetrics", config, busybox) as daemon:
        yield daemon


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The labelled samples on /v1/metrics by metric name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/metrics", timeout=30) as resp:
        body = resp.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in body.splitlines():
        m = _SAMPLE.match(line)
        if m:
            labels = dict(_LABEL.findall(m.group(2)))
            out.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return out


def _series(port: int, name: str, cid: str) -> list[tuple[dict[str, str], float]]:
    return [(lb, v) for lb, v in _scrape(port).get(name, []) if lb.get("container_id") == cid]


def _status(d: Daemon, cid: str) -> str:
    rows = [line.split() for line in d.pyctr("tasks", "ls").stdout.splitlines()[1:]]
    return next((r[2] for r in rows if r and r[0] == cid), "")


def _remove(d: Daemon, cid: str) -> None:
    d.pyctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
    d.pyctr("tasks", "delete", "-f", cid, check=False)
    d.pyctr("containers", "rm", cid, check=False)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_running_tasks_cgroup_metrics_are_served_until_it_is_deleted(
    d: Daemon, busybox: images.Image, port: int, runtime: str
) -> None:
    cid = "metrics-" + runtime.split(".")[2]
    try:
        d.pyctr("run", "-d", "--runtime", runtime, busybox.name, cid, "sleep", "1000")

        pids = d.wait(
            lambda: _series(port, "container_pids_current", cid),
            f"{cid}'s container_pids_current",
        )
        assert [lb for lb, _ in pids] == [{"container_id": cid, "namespace": "default"}]
        assert pids[0][1] >= 1

        [(labels, memory)] = _series(port, "container_memory_usage_usage_bytes", cid)
        assert labels == {"container_id": cid, "namespace": "default"}
        assert memory > 0
        [(labels, cpu)] = _series(port, "container_cpu_total_nanoseconds", cid)
        assert labels == {"container_id": cid, "namespace": "default"}
        assert cpu > 0
        per_cpu = _series(port, "container_per_cpu_nanoseconds", cid)
        assert per_cpu and all(lb["cpu"].isdigit() for lb, _ in per_cpu)

        d.pyctr("tasks", "kill", "-s", "SIGKILL", cid)
        d.wait(lambda: _status(d, cid) == "STOPPED", f"{cid} to stop")
        d.pyctr("tasks", "delete", cid)
        d.wait(
            lambda: (
                not any(
                    lb.get("container_id") == cid
                    for samples in _scrape(port).values()
                    for lb, _ in samples
                )
            ),
            f"{cid}'s series to be gone",
        )
    finally:
        _remove(d, cid)
