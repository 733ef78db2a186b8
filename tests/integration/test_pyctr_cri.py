"""``pyctr cri`` against the real daemon, with runc, the test CNI network and pause + busybox
imported into ``k8s.io`` with ``pyctr -n k8s.io images import``: version/info/images, runp ->
create -> start -> logs (P lines joined) -> exec (ExecSync and the streaming URL over a
WebSocket, exit codes, stdin) -> ps/pods/inspect -> stop -> rm -> stopp -> rmp, and nothing left
behind (no pods, containers, IPs, iptables rules)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cni as cni_support
import cri as cri_support
import pytest
from daemon import Daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]

PAUSE = "registry.k8s.io/pause:3.10"
BUSYBOX = "docker.io/library/busybox:latest"


class Env:
    def __init__(self, base: Path, network: cni_support.TestNetwork) -> None:
        rt = 'plugins."io.containerd.cri.v1.runtime"'
        config = f"""version = 4
[{rt}]
  restrict_oom_score_adj = true
  max_container_log_line_size = 64
[{rt}.cni]
  bin_dirs = ["{network.bin_dir}"]
  conf_dir = "{network.conf_dir}"
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{PAUSE}"
"""
        env = cri_support.daemon_env()
        self.base = base
        self.daemon = Daemon(base / "d", config=config, env=env)

    def cri(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.daemon.pyctr("cri", *args, check=check, timeout=180)

    def write(self, name: str, doc: dict[str, Any]) -> str:
        path = self.base / name
        path.write_text(json.dumps(doc))
        return str(path)


@pytest.fixture
def env(network: cni_support.TestNetwork, pause: Any, busybox: Any) -> Iterator[Env]:
    base = Path(tempfile.mkdtemp(prefix="pyctrcri", dir="/tmp"))
    e = Env(base, network)
    e.daemon.start(timeout=60)
    try:
        for img, name in ((pause, "pause"), (busybox, "busybox")):
            archive = img.oci_archive(base / f"{name}.tar")
            e.daemon.pyctr("-n", "k8s.io", "images", "import", "--no-progress", str(archive))
        yield e
    finally:
        for pod in e.cri("pods", "-q", check=False).stdout.split():
            e.cri("stopp", pod, check=False)
            e.cri("rmp", pod, check=False)
        e.daemon.stop()
        shutil.rmtree(base, ignore_errors=True)


def _wait_log(path: Path, stdout: str, stderr: str, timeout: float = 20) -> None:
    """Until the CRI log file holds all of both streams (written by separate copiers)."""
    from pycontainerd.cli.pyctr.commands.cri import parse_log_lines

    deadline = time.monotonic() + timeout
    got: dict[str, bytes] = {}
    while time.monotonic() < deadline:
        got = {"stdout": b"", "stderr": b""}
        if path.is_file():
            for stream, data in parse_log_lines(path.read_bytes().splitlines(keepends=True)):
                got[stream] = got.get(stream, b"") + data
        if got == {"stdout": stdout.encode(), "stderr": stderr.encode()}:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} never held the expected output: {got}")


def test_pod_lifecycle_through_pyctr_cri(env: Env, network: cni_support.TestNetwork) -> None:
    out = env.cri("version").stdout
    assert "RuntimeName:  pycontainerd" in out and "RuntimeApiVersion:  v1" in out
    info = json.loads(env.cri("info").stdout)
    conditions = {c["type"]: c["status"] for c in info["status"]["conditions"]}
    assert conditions["RuntimeReady"] and conditions["NetworkReady"]
    images = env.cri("images").stdout
    assert "registry.k8s.io/pause" in images and "docker.io/library/busybox" in images

    logs = env.base / "logs"
    pod_doc = {
        "metadata": {"name": "pyctr-pod", "namespace": "default", "uid": "pyctr-uid"},
        "hostname": "pyctr-host",
        "log_directory": str(logs),
        "labels": {"app": "pyctr"},
        "linux": {},
        "unknownField": "ignored, as crictl's decoder does",
    }
    pod_json = env.write("pod.json", pod_doc)
    long_line = "x" * 150  # over max_container_log_line_size: split into P parts
    ctr_json = env.write(
        "ctr.json",
        {
            "metadata": {"name": "hello"},
            "image": {"image": BUSYBOX},
            "command": [
                "sh",
                "-c",
                f"echo hello from $(hostname); echo {long_line}; echo oops >&2; exec sleep 3600",
            ],
            "logPath": "hello.log",  # JSON names work as well as proto names
            "linux": {},
        },
    )

    pod = env.cri("runp", pod_json).stdout.strip()
    assert len(pod) == 64
    assert env.cri("pods", "-q").stdout.split() == [pod]
    assert "pyctr-pod" in env.cri("pods").stdout
    st = json.loads(env.cri("inspectp", pod).stdout)
    assert st["status"]["state"] == "SANDBOX_READY"
    ip = st["status"]["network"]["ip"]
    assert network.allocated_ips() == [ip]

    cid = env.cri("create", pod, ctr_json, pod_json).stdout.strip()
    assert env.cri("ps", "-q").stdout.split() == []  # created, not running
    assert env.cri("ps", "-a", "-q").stdout.split() == [cid]
    assert env.cri("start", cid).stdout.strip() == cid
    _wait_log(logs / "hello.log", f"hello from pyctr-host\n{long_line}\n", "oops\n")
    assert env.cri("ps", "-q", "--pod", pod).stdout.split() == [cid]
    row = env.cri("ps").stdout.splitlines()[1].split()
    assert row[0] == cid[:13] and "Running" in row and "hello" in row and "pyctr-pod" in row

    res = env.cri("logs", cid)
    assert res.stdout == f"hello from pyctr-host\n{long_line}\n", res.stdout
    assert res.stderr == "oops\n"
    assert "P " in (logs / "hello.log").read_text()  # the long line really was split
    # --tail counts records of both streams; stdout and stderr are copied independently, so
    # the last record is either stream's last line
    res = env.cri("logs", "--tail", "1", cid)
    assert res.stdout + res.stderr in (f"{long_line}\n", "oops\n"), res

    res = env.cri("exec", cid, "ip", "-4", "addr", "show", "eth0")
    assert f"inet {ip}/" in res.stdout, res.stdout
    assert env.cri("exec", cid, "hostname").stdout == "pyctr-host\n"
    res = env.cri("exec", cid, "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (res.returncode, res.stdout, res.stderr) == (3, "out\n", "err\n")

    # the streaming URL over a websocket: stdin in, stdout/stderr out, exit code back
    cmd = env.daemon.pyctr_cmd(
        "cri",
        "exec",
        "-i",
        cid,
        "sh",
        "-c",
        "tr a-z A-Z; echo e >&2; exit 4",
    )
    res = subprocess.run(
        cmd, input="piped in\n", capture_output=True, text=True, timeout=60, env=env.daemon.env
    )
    assert (res.returncode, res.stdout, res.stderr) == (4, "PIPED IN\n", "e\n"), res

    st = json.loads(env.cri("inspect", cid).stdout)
    assert st["status"]["state"] == "CONTAINER_RUNNING"
    assert st["status"]["logPath"] == str(logs / "hello.log")

    assert env.cri("stop", "-t", "1", cid).stdout.strip() == cid
    st = json.loads(env.cri("inspect", cid).stdout)
    assert st["status"]["state"] == "CONTAINER_EXITED"
    assert env.cri("rm", cid).stdout.strip() == cid
    assert env.cri("ps", "-a", "-q").stdout.split() == []
    assert env.cri("stopp", pod).stdout.strip() == f"Stopped sandbox {pod}"
    assert network.allocated_ips() == []
    assert env.cri("rmp", pod).stdout.strip() == f"Removed sandbox {pod}"

    assert env.cri("pods", "-q").stdout.split() == []
    assert env.daemon.ctr("containers", "ls", "-q", namespace="k8s.io").stdout.split() == []
    assert env.daemon.ctr("tasks", "ls", "-q", namespace="k8s.io").stdout.split() == []
    assert network.leftover_rules() == [] and network.per_container_chains() == []


def test_errors_name_what_failed(env: Env) -> None:
    res = env.cri("inspectp", "no-such-pod", check=False)
    assert res.returncode != 0 and "no-such-pod" in res.stderr, res.stderr
    res = env.cri("inspect", "no-such-container", check=False)
    assert res.returncode != 0 and "no-such-container" in res.stderr, res.stderr
    bad = env.write("bad.json", {"metadata": {"name": 5, "uid": []}})
    res = env.cri("runp", bad, check=False)
    assert res.returncode != 0 and "invalid config" in res.stderr, res.stderr
    unparsable = env.base / "bad.yaml"
    unparsable.write_text("metadata: {name: [unclosed\n")
    res = env.cri("runp", str(unparsable), check=False)
    assert res.returncode != 0 and "bad.yaml" in res.stderr, res.stderr
    assert "JSON or YAML" in res.stderr, res.stderr
    assert env.cri("pods", "-q").stdout.split() == []
