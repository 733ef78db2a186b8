"""The proof containerd-shim-pyrunc-v2 speaks the protocol: Debian's containerd 1.6 daemon
(started here with its own root, state and socket, CRI disabled) runs busybox containers
through it with ``ctr run --runtime io.containerd.pyrunc.v2``: run --rm, exit codes, run -d,
task exec / ps / pause / resume / metrics / kill / delete."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import images
import peers
import pytest

pytestmark = [pytest.mark.root, pytest.mark.integration]

VENV_BIN = Path(__file__).resolve().parents[4] / ".venv" / "bin"
RUNTIME = "io.containerd.pyrunc.v2"
IMAGE = "docker.io/library/busybox:latest"


class Containerd:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.address = str(base / "c.sock")
        self.log = base / "containerd.log"
        (base / "config.toml").write_text(
            "version = 2\n"
            f'root = "{base}/root"\n'
            f'state = "{base}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            "[grpc]\n"
            f'  address = "{self.address}"\n'
            "[debug]\n"
            '  level = "debug"\n'
        )
        shim_dir = shutil.which("containerd-shim-pyrunc-v2")
        path_dirs = [str(VENV_BIN)] if (VENV_BIN / "containerd-shim-pyrunc-v2").exists() else []
        if shim_dir is None and not path_dirs:
            pytest.fail("containerd-shim-pyrunc-v2 is not installed: pip install -e .")
        self.env = dict(os.environ)
        self.env["PATH"] = os.pathsep.join([*path_dirs, self.env.get("PATH", "")])
        self.env["PYCONTAINERD_SHIM_SOCKET_DIR"] = str(base / "s")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        containerd = peers.require_binary("containerd")
        with self.log.open("wb") as logf:
            self.proc = subprocess.Popen(
                [containerd, "-c", str(self.base / "config.toml")],
                env=self.env,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"containerd exited: {self.log.read_text()[-3000:]}")
            if self.ctr("version", check=False).returncode == 0:
                return
            time.sleep(0.1)
        pytest.fail("containerd did not come up")

    def ctr(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        ctr = peers.require_binary("ctr")
        proc = subprocess.run(
            [ctr, "-a", self.address, *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"ctr {' '.join(args)}: exit {proc.returncode}: {proc.stderr}\n"
                f"--- containerd log ---\n{self.log.read_text()[-4000:]}"
            )
        return proc

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _shim_pids() -> set[int]:
    out = subprocess.run(
        ["pgrep", "-f", "containerd-shim-pyrunc-v2"], capture_output=True, text=True
    )
    return {int(p) for p in out.stdout.split()}


@pytest.fixture(scope="module")
def containerd(busybox: images.Image) -> Iterator[Containerd]:
    peers.require_binary("runc")
    base = Path(tempfile.mkdtemp(prefix="ctd", dir="/tmp"))
    before = _shim_pids()
    d = Containerd(base)
    try:
        d.start()
        archive = busybox.oci_archive(base / "busybox.tar")
        d.ctr("images", "import", str(archive))
        yield d
    finally:
        for task in d.ctr("tasks", "ls", "-q", check=False).stdout.split():
            d.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
            time.sleep(0.2)
            d.ctr("tasks", "delete", "-f", task, check=False)
        for c in d.ctr("containers", "ls", "-q", check=False).stdout.split():
            d.ctr("containers", "rm", c, check=False)
        d.stop()
        for pid in _shim_pids() - before:
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["umount", "-R", "-l", str(base / "state")], capture_output=True)
        subprocess.run(["umount", "-R", "-l", str(base / "root")], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _id(name: str) -> str:
    return f"{name}-{os.getpid()}"


def test_ctr_run_rm_echo_hello(containerd: Containerd) -> None:
    out = containerd.ctr("run", "--rm", "--runtime", RUNTIME, IMAGE, _id("hello"), "echo", "hello")
    assert out.stdout == "hello\n", out.stderr
    assert _id("hello") not in containerd.ctr("containers", "ls", "-q").stdout.split()
    assert _id("hello") not in containerd.ctr("tasks", "ls", "-q").stdout.split()


def test_ctr_run_exit_code_propagates(containerd: Containerd) -> None:
    out = containerd.ctr(
        "run", "--rm", "--runtime", RUNTIME, IMAGE, _id("exit"), "sh", "-c", "exit 7", check=False
    )
    assert out.returncode == 7, out.stderr


def test_ctr_run_detached_exec_ps_pause_metrics_kill(containerd: Containerd) -> None:
    cid = _id("bg")
    containerd.ctr("run", "-d", "--runtime", RUNTIME, IMAGE, cid, "sleep", "300")
    try:
        tasks = containerd.ctr("tasks", "ls").stdout
        line = next(x for x in tasks.splitlines() if x.startswith(cid))
        assert "RUNNING" in line, tasks
        init_pid = int(line.split()[1])

        out = containerd.ctr("tasks", "exec", "--exec-id", "e1", cid, "echo", "from-exec")
        assert out.stdout == "from-exec\n"
        out = containerd.ctr(
            "tasks", "exec", "--exec-id", "e2", cid, "sh", "-c", "exit 3", check=False
        )
        assert out.returncode == 3, out.stderr

        ps = containerd.ctr("tasks", "ps", cid).stdout
        assert str(init_pid) in ps.split(), ps

        containerd.ctr("tasks", "pause", cid)
        assert "PAUSED" in containerd.ctr("tasks", "ls").stdout
        containerd.ctr("tasks", "resume", cid)
        assert "RUNNING" in containerd.ctr("tasks", "ls").stdout

        metrics = containerd.ctr("tasks", "metrics", cid).stdout
        assert "memory.usage_in_bytes" in metrics and "pids.current" in metrics, metrics

        containerd.ctr("tasks", "kill", "-s", "SIGKILL", cid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            tasks = containerd.ctr("tasks", "ls").stdout
            if any(x.startswith(cid) and "STOPPED" in x for x in tasks.splitlines()):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"task did not stop: {tasks}")
        containerd.ctr("tasks", "delete", cid)
        assert cid not in containerd.ctr("tasks", "ls", "-q").stdout.split()
    finally:
        containerd.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
        containerd.ctr("tasks", "delete", "-f", cid, check=False)
        containerd.ctr("containers", "rm", cid, check=False)
