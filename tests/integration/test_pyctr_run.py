"""``pyctr run``, ``pyctr tasks`` and ``pyctr containers`` against the real daemon, with real
runc through containerd's shim (``io.containerd.runc.v2``) and ours
(``io.containerd.pyrunc.v2``): a busybox OCI archive imported with ``pyctr images import``,
then run attached (stdout, stdin, exit codes), detached (ls, ps, exec, pause/resume,
metrics, kill, delete), under a pseudo-terminal, and with bad input."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import images
import pytest
from daemon import Daemon, with_image

pytestmark = [pytest.mark.integration, pytest.mark.root]

RUNTIMES = ("io.containerd.runc.v2", "io.containerd.pyrunc.v2")
#: the CRI plugins play no part here: leave them out (faster start, independent of them)
CONFIG = (
    "version = 4\n"
    'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime",'
    ' "io.containerd.cri.v1.images"]\n'
)


@pytest.fixture(scope="module")
def d(busybox: images.Image) -> Iterator[Daemon]:
    with with_image("pyctrrun", CONFIG, busybox) as daemon:
        try:
            yield daemon
        finally:
            for cid in daemon.pyctr("containers", "ls", "-q", check=False).stdout.split():
                daemon.pyctr("tasks", "delete", "-f", cid, check=False)
                daemon.pyctr("containers", "rm", cid, check=False)


def pyctr(
    d: Daemon, *args: str, input: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """pyctr with stdin from ``input`` (else /dev/null), bytes out."""
    cmd = d.pyctr_cmd(*args)
    return subprocess.run(
        cmd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        env=d.env,
    )


def _tasks(d: Daemon) -> dict[str, tuple[str, str]]:
    lines = d.pyctr("tasks", "ls").stdout.splitlines()
    assert lines[0].split() == ["TASK", "PID", "STATUS"]
    return {r[0]: (r[1], r[2]) for r in (line.split() for line in lines[1:]) if r}


def _containers(d: Daemon) -> list[str]:
    return d.pyctr("containers", "ls", "-q").stdout.split()


def _snapshots(d: Daemon) -> list[str]:
    return [line.split()[0] for line in d.pyctr("snapshots", "ls").stdout.splitlines()[1:]]


def _bundle(d: Daemon, cid: str) -> Path:
    return d.state / "io.containerd.runtime.v2.task" / "default" / cid


def _gone(d: Daemon, cid: str) -> None:
    assert cid not in _containers(d)
    assert cid not in _tasks(d)
    assert cid not in _snapshots(d)
    assert not _bundle(d, cid).exists()


def _wait_status(d: Daemon, cid: str, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _tasks(d).get(cid, ("", ""))[1] == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"task {cid} not {status}: {_tasks(d)}")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_rm_prints_hello_and_leaves_nothing(
    d: Daemon, busybox: images.Image, runtime: str
) -> None:
    cid = "hello-" + runtime.split(".")[2]
    res = pyctr(d, "run", "--rm", "--runtime", runtime, busybox.name, cid, "echo", "hello")
    assert res.returncode == 0, (res.stderr, d.log()[-3000:])
    assert res.stdout == b"hello\n"
    _gone(d, cid)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_exit_code_and_stderr_propagate(d: Daemon, busybox: images.Image, runtime: str) -> None:
    cid = "exit3-" + runtime.split(".")[2]
    res = pyctr(
        d,
        "run",
        "--rm",
        "--runtime",
        runtime,
        busybox.name,
        cid,
        "sh",
        "-c",
        "echo out; echo oops >&2; exit 3",
    )
    assert res.returncode == 3, res.stderr
    assert res.stdout == b"out\n" and res.stderr == b"oops\n"
    _gone(d, cid)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_pipes_stdin_through(d: Daemon, busybox: images.Image, runtime: str) -> None:
    # ctr connects stdin always (no -i flag); at end of input the process's stdin closes
    cid = "cat-" + runtime.split(".")[2]
    data = b"abc\n" + b"x" * 200_000 + b"\n"
    res = pyctr(d, "run", "--rm", "--runtime", runtime, busybox.name, cid, "cat", input=data)
    assert res.returncode == 0, res.stderr
    assert res.stdout == data
    res = pyctr(
        d, "run", "--rm", "--runtime", runtime, busybox.name, cid + "wc", "wc", "-c", input=b"abc"
    )
    assert res.stdout.split() == [b"3"]


def test_run_flags_env_cwd_mount_label(d: Daemon, busybox: images.Image, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("from host\n")
    res = pyctr(
        d,
        "run",
        "--rm",
        "--env",
        "FOO=bar",
        "--cwd",
        "/tmp",
        "--label",
        "a=b",
        "--mount",
        f"type=bind,src={tmp_path},dst=/host,options=rbind:ro",
        busybox.name,
        "flags",
        "sh",
        "-c",
        "echo $FOO; pwd; cat /host/f; echo $PATH",
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout.decode().splitlines()
    assert out[:3] == ["bar", "/tmp", "from host"]
    assert "/bin" in out[3]
    res = pyctr(
        d,
        "run",
        "--rm",
        "--mount",
        f"type=bind,src={tmp_path},dst=/host,options=rbind:ro",
        busybox.name,
        "ro",
        "sh",
        "-c",
        "echo x > /host/g",
    )
    assert res.returncode != 0 and not (tmp_path / "g").exists()
    res = pyctr(d, "run", "--rm", "--net-host", busybox.name, "nethost", "cat", "/etc/hosts")
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_log_uri_null_io_pid_file(
    d: Daemon, busybox: images.Image, tmp_path: Path, runtime: str
) -> None:
    log = tmp_path / "log"
    cid = "logged-" + runtime.split(".")[2]

    def logged() -> list[str]:
        return sorted(log.read_text().split()) if log.exists() else []

    res = pyctr(
        d,
        "run",
        "-d",
        "--runtime",
        runtime,
        "--log-uri",
        str(log),
        "--pid-file",
        str(tmp_path / "pid"),
        busybox.name,
        cid,
        "sh",
        "-c",
        # stderr first, and a moment before stdout ends: containerd's own shim copies both
        # streams into the one file but closes it when stdout reaches EOF (copyPipes hands
        # stdout the file itself, not the shared counting closer), so stderr written at the
        # same moment as the exit can be lost there
        "echo err >&2; sleep 1; echo out",
    )
    try:
        assert res.returncode == 0 and res.stdout == b"", res.stderr
        assert int((tmp_path / "pid").read_text()) > 0
        _wait_status(d, cid, "STOPPED", timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and logged() != ["err", "out"]:
            time.sleep(0.1)
        assert logged() == ["err", "out"]
    finally:
        d.pyctr("tasks", "delete", "-f", cid, check=False)
        d.pyctr("containers", "rm", cid, check=False)
    _gone(d, cid)

    res = pyctr(
        d,
        "run",
        "--rm",
        "--null-io",
        "--runtime",
        runtime,
        busybox.name,
        "nullio",
        "sh",
        "-c",
        "echo out; exit 6",
    )
    assert (res.returncode, res.stdout) == (6, b"")
    _gone(d, "nullio")


def test_run_unpacks_on_demand_and_resolves_users(d: Daemon, busybox: images.Image) -> None:
    # imported (and unpacked) for overlayfs only: run with native unpacks it there first
    res = pyctr(d, "run", "--rm", "--snapshotter", "native", busybox.name, "nat", "echo", "n")
    assert (res.returncode, res.stdout) == (0, b"n\n"), res.stderr
    native = d.pyctr("snapshots", "--snapshotter", "native", "ls").stdout
    assert "sha256:" in native and "nat" not in native
    res = pyctr(d, "run", "--rm", "-u", "nobody", busybox.name, "u1", "id")
    assert res.stdout.startswith(b"uid=65534(nobody) gid=65534(nobody)"), res.stderr
    res = pyctr(d, "run", "--rm", "-u", "1000:1001", busybox.name, "u2", "id", "-u")
    assert res.stdout == b"1000\n"
    res = pyctr(d, "run", "--rm", "-u", "nosuchuser", busybox.name, "u3", "id")
    assert res.returncode == 1 and b"nosuchuser" in res.stderr
    for cid in ("nat", "u1", "u2", "u3"):
        _gone(d, cid)


def test_detached_task_lifecycle(d: Daemon, busybox: images.Image) -> None:
    res = pyctr(d, "run", "-d", busybox.name, "sleeper", "sleep", "1000")
    assert res.returncode == 0, res.stderr
    assert res.stdout == b""
    pid, status = _tasks(d)["sleeper"]
    assert status == "RUNNING" and int(pid) > 0
    assert os.path.exists(f"/proc/{pid}")

    ls = d.pyctr("containers", "ls").stdout.splitlines()
    assert ls[0].split() == ["CONTAINER", "IMAGE", "RUNTIME"]
    assert ["sleeper", busybox.name, "io.containerd.runc.v2"] in [r.split() for r in ls[1:]]
    import json

    info = json.loads(d.pyctr("containers", "info", "sleeper").stdout)
    assert info["ID"] == "sleeper" and info["Image"] == busybox.name
    assert info["Snapshotter"] == "overlayfs" and info["SnapshotKey"] == "sleeper"
    assert info["Spec"]["process"]["args"] == ["sleep", "1000"]
    spec = json.loads(d.pyctr("containers", "info", "--spec", "sleeper").stdout)
    assert spec["linux"]["cgroupsPath"] == "/default/sleeper"

    ps = d.pyctr("tasks", "ps", "sleeper").stdout.splitlines()
    assert ps[0].split() == ["PID", "INFO"] and pid in [r.split()[0] for r in ps[1:]]

    metrics = d.pyctr("tasks", "metrics", "sleeper").stdout
    assert "sleeper" in metrics and "pids.current" in metrics, metrics
    mj = json.loads(d.pyctr("tasks", "metrics", "--format", "json", "sleeper").stdout)
    assert mj["pids"]["current"] >= 1

    d.pyctr("tasks", "pause", "sleeper")
    assert _tasks(d)["sleeper"][1] == "PAUSED"
    d.pyctr("tasks", "resume", "sleeper")
    assert _tasks(d)["sleeper"][1] == "RUNNING"

    res = pyctr(d, "tasks", "exec", "--exec-id", "e1", "sleeper", "echo", "x")
    assert (res.returncode, res.stdout) == (0, b"x\n"), res.stderr
    res = pyctr(d, "tasks", "exec", "--exec-id", "e2", "sleeper", "sh", "-c", "exit 5")
    assert res.returncode == 5
    res = pyctr(d, "tasks", "exec", "sleeper", "cat", input=b"piped\n")
    assert res.stdout == b"piped\n"

    # a running task is not deleted, nor its container; the task exists already
    assert d.pyctr("tasks", "delete", "sleeper", check=False).returncode != 0
    res = d.pyctr("containers", "rm", "sleeper", check=False)
    assert res.returncode != 0 and "non stopped" in res.stderr
    res = d.pyctr("tasks", "start", "-d", "sleeper", check=False)
    assert res.returncode != 0 and "already exists" in res.stderr, res.stderr

    d.pyctr("tasks", "kill", "-s", "SIGKILL", "sleeper")
    _wait_status(d, "sleeper", "STOPPED")
    d.pyctr("tasks", "delete", "sleeper")
    assert "sleeper" not in _tasks(d)
    assert not _bundle(d, "sleeper").exists()
    d.pyctr("containers", "rm", "sleeper")
    _gone(d, "sleeper")


def test_tasks_delete_force_and_containers_create_start_label(
    d: Daemon, busybox: images.Image
) -> None:
    d.pyctr("containers", "create", busybox.name, "c2", "sh", "-c", "echo started; exit 4")
    assert "c2" in _containers(d)
    assert "c2" not in _tasks(d)
    res = pyctr(d, "tasks", "start", "c2")
    assert (res.returncode, res.stdout) == (4, b"started\n"), res.stderr
    assert "c2" not in _tasks(d)
    out = d.pyctr("containers", "label", "c2", "x=1", "y=2").stdout
    assert out.strip() == "x=1,y=2"
    d.pyctr("containers", "label", "c2", "x=")
    import json

    assert json.loads(d.pyctr("containers", "info", "c2").stdout)["Labels"] == {"y": "2"}

    d.pyctr("run", "-d", busybox.name, "c3", "sleep", "1000")
    d.pyctr("tasks", "delete", "-f", "c3")
    assert "c3" not in _tasks(d)
    d.pyctr("containers", "rm", "c2", "c3")
    _gone(d, "c2")
    _gone(d, "c3")


def test_run_interrupt_is_forwarded_to_the_task(d: Daemon, busybox: images.Image) -> None:
    cmd = d.pyctr_cmd(
        "run",
        "--rm",
        busybox.name,
        "sig",
        "sh",
        "-c",
        "trap 'echo got; exit 9' TERM; echo ready; while true; do sleep 0.1; done",
    )
    p = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=d.env
    )
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        p.terminate()
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 9, err
    assert out == b"got\n"
    _gone(d, "sig")


def _winsize(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _read_until(fd: int, out: bytearray, needle: bytes, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while needle not in out and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if fd in r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                return needle in out
            if not chunk:
                break
            out += chunk
    return needle in out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_tty_under_a_pseudo_terminal(d: Daemon, busybox: images.Image, runtime: str) -> None:
    """-t: the process gets a terminal of our size, our keystrokes (raw: pyctr does not
    echo or edit them) and our window size changes (SIGWINCH -> ResizePty)."""
    cid = "tty-" + runtime.split(".")[2]
    cmd = d.pyctr_cmd(
        "run",
        "--rm",
        "-t",
        "--runtime",
        runtime,
        busybox.name,
        cid,
        "sh",
        "-c",
        "tty; stty size; echo ready; read line; echo got=$line; stty size; exit 2",
    )
    pid, fd = pty.fork()
    if pid == 0:  # child: pyctr on the pty
        try:
            _winsize(0, 33, 111)
            os.execve(sys.executable, cmd, d.env)
        finally:
            os._exit(127)
    out = bytearray()
    try:
        assert _read_until(fd, out, b"ready"), out
        _winsize(fd, 44, 122)  # the kernel sends pyctr SIGWINCH
        time.sleep(1)
        os.write(fd, b"hello\r")
        _read_until(fd, out, b"44 122")
        _read_until(fd, out, b"\xff", timeout=5)  # until the end
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    text = out.decode(errors="replace")
    assert "/dev/pts/" in text and "33 111" in text, text
    assert "got=hello" in text and "44 122" in text, text
    assert os.waitstatus_to_exitcode(status) == 2, text
    _gone(d, cid)


def test_exec_tty(d: Daemon, busybox: images.Image) -> None:
    d.pyctr("run", "-d", busybox.name, "ttyexec", "sleep", "1000")
    try:
        cmd = d.pyctr_cmd(
            "tasks",
            "exec",
            "-t",
            "--exec-id",
            "t1",
            "ttyexec",
            "sh",
            "-c",
            "tty",
        )
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.execve(sys.executable, cmd, d.env)
            finally:
                os._exit(127)
        out = b""
        while True:
            r, _, _ = select.select([fd], [], [], 30)
            if not r:
                break
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        assert b"/dev/pts/" in out, out
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        d.pyctr("tasks", "delete", "-f", "ttyexec", check=False)
        d.pyctr("containers", "rm", "ttyexec", check=False)


def test_unknown_image_is_a_clear_error_and_leaves_nothing(
    d: Daemon, busybox: images.Image
) -> None:
    before = _snapshots(d)
    res = pyctr(d, "run", "--rm", "docker.io/library/nosuch:latest", "nope", "true")
    assert res.returncode == 1
    err = res.stderr.decode()
    assert err.startswith("pyctr: ") and "nosuch" in err and "not found" in err, err
    assert "Traceback" not in err
    assert "nope" not in _containers(d)
    assert _snapshots(d) == before

    # an unknown runtime fails at task create: with --rm the container goes too
    res = pyctr(
        d, "run", "--rm", "--runtime", "io.containerd.nope.v9", busybox.name, "nort", "true"
    )
    assert res.returncode == 1
    assert b"containerd-shim-nope-v9" in res.stderr, res.stderr
    _gone(d, "nort")

    # a duplicate container id is refused and the first is left alone
    d.pyctr("containers", "create", busybox.name, "dup", "true")
    res = pyctr(d, "run", "--rm", busybox.name, "dup", "true")
    assert res.returncode == 1 and b"already exists" in res.stderr, res.stderr
    assert "dup" in _containers(d)
    d.pyctr("containers", "rm", "dup")
    _gone(d, "dup")

    res = pyctr(d, "tasks", "kill", "nosuch")
    assert res.returncode == 1 and b"not found" in res.stderr
    res = pyctr(d, "run", "-d", "--rm", busybox.name, "x", "true")
    assert res.returncode == 1 and b"cannot be specified together" in res.stderr
