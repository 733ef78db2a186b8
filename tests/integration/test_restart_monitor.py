"""The restart monitor (``io.containerd.monitor.container.v1.restart``) in the real daemon,
with a short interval: containers created by containerd's own ``ctr`` with the restart labels
are kept running by containerd's shim (``io.containerd.runc.v2``) and ours
(``io.containerd.pyrunc.v2``): started, started again (a new pid) after being killed with
output from both runs in the log URI file, restarted once only under ``on-failure:1``, and
killed when the status label says ``stopped``."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import images
import pytest
from daemon import Daemon, with_image

pytestmark = [pytest.mark.integration, pytest.mark.root]

RUNTIMES = ("io.containerd.runc.v2", "io.containerd.pyrunc.v2")
STATUS = "containerd.io/restart.status"
POLICY = "containerd.io/restart.policy"
LOG_URI = "containerd.io/restart.loguri"
COUNT = "containerd.io/restart.count"
CONFIG = (
    "version = 4\n"
    'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime",'
    ' "io.containerd.cri.v1.images"]\n'
    '[plugins."io.containerd.monitor.container.v1.restart"]\n'
    'interval = "300ms"\n'
)


@pytest.fixture(scope="module")
def d(busybox: images.Image) -> Iterator[Daemon]:
    with with_image("restartmon", CONFIG, busybox) as daemon:
        try:
            yield daemon
        finally:
            for cid in daemon.ctr("containers", "ls", "-q", check=False).stdout.split():
                _remove(daemon, cid)


def _tasks(d: Daemon) -> dict[str, tuple[int, str]]:
    lines = d.ctr("tasks", "ls").stdout.splitlines()
    assert lines[0].split() == ["TASK", "PID", "STATUS"]
    return {r[0]: (int(r[1]), r[2]) for r in (line.split() for line in lines[1:]) if r}


def _labels(d: Daemon, cid: str) -> dict[str, str]:
    return json.loads(d.ctr("containers", "info", cid).stdout).get("Labels") or {}


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _rounds(d: Daemon) -> int:
    """The number of the monitor's last completed round (it logs each at debug level)."""
    done = re.findall(r"restart monitor: round (\d+) done", d.log())
    return int(done[-1]) if done else 0


def _settle(d: Daemon) -> None:
    """Wait until the monitor completed a whole round that began after this call (the
    round under way now may still act on what it read before)."""
    seen = _rounds(d)
    d.wait(lambda: _rounds(d) >= seen + 2, "two more rounds of the monitor")


def _remove(d: Daemon, cid: str) -> None:
    """Take the container out of the monitor's hands first (so that nothing races with it),
    then remove its task and it."""
    d.ctr("containers", "label", cid, f"{STATUS}=", check=False)
    _settle(d)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        d.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
        d.ctr("tasks", "delete", "-f", cid, check=False)
        d.ctr("containers", "rm", cid, check=False)
        if cid not in d.ctr("containers", "ls", "-q").stdout.split():
            return
        time.sleep(0.1)
    raise AssertionError(f"container {cid} could not be removed:\n{d.log()[-4000:]}")


def _create(d: Daemon, busybox: images.Image, runtime: str, cid: str, labels: dict, *cmd: str):
    flags = [arg for k, v in labels.items() for arg in ("--label", f"{k}={v}")]
    d.ctr("containers", "create", "--runtime", runtime, *flags, "--", busybox.name, cid, *cmd)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_keeps_a_container_running_and_stops_it_on_request(
    d: Daemon, busybox: images.Image, runtime: str, tmp_path: Path
) -> None:
    cid = "always-" + runtime.split(".")[2]
    log = tmp_path / "log"
    labels = {STATUS: "running", LOG_URI: f"file://{log}"}
    _create(d, busybox, runtime, cid, labels, "sh", "-c", "echo started; exec sleep 1000")
    try:
        # nobody started it: the monitor does
        pid1 = d.wait(
            lambda: _tasks(d).get(cid, (0, ""))[1] == "RUNNING" and _tasks(d)[cid][0],
            f"the monitor to start {cid}",
        )
        d.wait(lambda: _lines(log) == ["started"], "the first run's output in the log")
        assert _labels(d, cid)[COUNT] == "1"

        d.ctr("tasks", "kill", "-s", "SIGKILL", cid)
        pid2 = d.wait(
            lambda: (
                (t := _tasks(d).get(cid, (0, ""))) and t[1] == "RUNNING" and t[0] != pid1 and t[0]
            ),
            f"the monitor to start {cid} again",
        )
        assert pid2 != pid1 and os.path.exists(f"/proc/{pid2}")
        d.wait(lambda: _lines(log) == ["started", "started"], "the second run's output")
        assert _labels(d, cid)[COUNT] == "2"

        d.ctr("containers", "label", cid, f"{STATUS}=stopped")
        d.wait(lambda: cid not in _tasks(d), f"the monitor to kill and delete {cid}'s task")
        d.wait(lambda: not os.path.exists(f"/proc/{pid2}"), f"pid {pid2} to be gone")
        assert _labels(d, cid)[COUNT] == "2"
    finally:
        _remove(d, cid)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_on_failure_restarts_a_failing_container_once(
    d: Daemon, busybox: images.Image, runtime: str, tmp_path: Path
) -> None:
    cid = "onfail-" + runtime.split(".")[2]
    log = tmp_path / "log"
    labels = {STATUS: "running", POLICY: "on-failure:1", LOG_URI: f"file://{log}"}
    _create(d, busybox, runtime, cid, labels, "sh", "-c", "echo failing; exit 3")
    try:
        _settle(d)
        # no task yet, so no failure: on-failure does not start it
        assert cid not in _tasks(d)
        d.ctr("tasks", "start", "-d", "--log-uri", f"file://{log}", cid)
        d.wait(lambda: _labels(d, cid).get(COUNT) == "1", "the monitor to restart it")
        d.wait(lambda: _lines(log) == ["failing", "failing"], "both runs' output")
        d.wait(lambda: _tasks(d).get(cid, (0, ""))[1] == "STOPPED", "the restart to fail")
        _settle(d)
        assert _tasks(d)[cid][1] == "STOPPED"
        assert _labels(d, cid)[COUNT] == "1"
        assert _lines(log) == ["failing", "failing"]
    finally:
        _remove(d, cid)
