"""The real daemon runs containers through containerd's own shim (Debian's
containerd-shim-runc-v2, runtime ``io.containerd.runc.v2``) and real runc, driven by Debian's
``ctr``: tasks start (attached: stdout and exit codes), ls, ps, metrics, pause/resume, exec,
kill, delete; the daemon SIGKILLed under a running container and restarted; bad input.

Containers and their snapshots are made through the gRPC Containers and Snapshots APIs (a
native snapshot filled with a busybox rootfs); ``ctr tasks start`` then takes the snapshot's
mounts as the task's rootfs, as ``ctr run`` does.
"""

from __future__ import annotations

import os
import shutil
import signal
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import images
import peers
import pytest
from daemon import Daemon
from google.protobuf import any_pb2

from pycontainerd.api.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from pycontainerd.core.runtime import spec as oci

pytestmark = [pytest.mark.integration, pytest.mark.root]

NS = "default"
RUNTIME = "io.containerd.runc.v2"
#: containerd's shim (Debian) and ours
RUNTIMES = ("io.containerd.runc.v2", "io.containerd.pyrunc.v2")
CONTAINERS_MODULE = "pycontainerd.plugins.services.containers.plugin"


def _extra_modules() -> str:
    """The containers service joins the built-ins in parallel work; load it explicitly until
    it is listed there."""
    from pycontainerd.plugins import builtins

    if CONTAINERS_MODULE in builtins.MODULES:
        return ""
    try:
        __import__(CONTAINERS_MODULE)
    except ImportError:
        pytest.skip("the containers service (plugins/services/containers) is not there yet")
    return CONTAINERS_MODULE


def _need_peers() -> None:
    for name in ("ctr", "containerd-shim-runc-v2", "runc"):
        peers.require_binary(name)


@pytest.fixture(scope="module")
def rootfs(busybox: images.Image) -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="rtrootfs", dir="/tmp")
    try:
        for layer in busybox.layers:
            with tarfile.open(busybox.blob_path(layer.descriptor.digest), "r:*") as tf:
                images.extract_all(tf, d, trusted=True)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _new_daemon(base: Path) -> Daemon:
    env = {"PATH": ":".join(filter(None, [os.environ.get("PATH"), *peers.SBIN_DIRS]))}
    extra = _extra_modules()
    if extra:
        env["PYCONTAINERD_PLUGIN_MODULES"] = extra
    # the snapshots are prepared without a lease (no leases service needed): keep the
    # collector from removing them before the container record references them
    config = (
        "version = 4\n\n"
        '[plugins."io.containerd.gc.v1.scheduler"]\n'
        '  startup_delay = "1h"\n'
        "  mutation_threshold = 1000000\n"
    )
    return Daemon(base, config=config, env=env)


@pytest.fixture
def base() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="rtd", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Client:
    """gRPC Containers + Snapshots against the daemon, in namespace ``default``."""

    def __init__(self, daemon: Daemon, rootfs: str) -> None:
        self.daemon = daemon
        self.rootfs = rootfs
        self.channel = grpc.insecure_channel(f"unix:{daemon.address}")
        self.containers = containers_pb2_grpc.ContainersStub(self.channel)
        self.snapshots = snapshots_pb2_grpc.SnapshotsStub(self.channel)
        self.md = (("containerd-namespace", NS),)
        self.created: list[str] = []

    def container(self, id: str, args: list[str], runtime: str = RUNTIME) -> None:  # noqa: A002
        resp = self.snapshots.Prepare(
            snapshots_pb2.PrepareSnapshotRequest(snapshotter="native", key=id), metadata=self.md
        )
        mount = resp.mounts[0]
        assert mount.type == "bind", mount
        shutil.copytree(self.rootfs, mount.source, symlinks=True, dirs_exist_ok=True)
        type_url, value = oci.to_any(oci.default_spec(NS, id, args=args))
        self.containers.Create(
            containers_pb2.CreateContainerRequest(
                container=containers_pb2.Container(
                    id=id,
                    runtime=containers_pb2.Container.Runtime(name=runtime),
                    spec=any_pb2.Any(type_url=type_url, value=value),
                    snapshotter="native",
                    snapshot_key=id,
                )
            ),
            metadata=self.md,
        )
        self.created.append(id)

    def cleanup(self) -> None:
        for id_ in self.created:
            self.daemon.ctr("tasks", "kill", "-s", "SIGKILL", id_, check=False)
            self.daemon.ctr("tasks", "delete", "-f", id_, check=False)
            try:
                self.containers.Delete(
                    containers_pb2.DeleteContainerRequest(id=id_), metadata=self.md
                )
            except grpc.RpcError:
                pass
            try:
                self.snapshots.Remove(
                    snapshots_pb2.RemoveSnapshotRequest(snapshotter="native", key=id_),
                    metadata=self.md,
                )
            except grpc.RpcError:
                pass
        self.channel.close()


@pytest.fixture
def running(base: Path, rootfs: str) -> Iterator[Client]:
    _need_peers()
    d = _new_daemon(base / "d")
    d.start()
    client = Client(d, rootfs)
    try:
        yield client
    finally:
        if d.proc is not None and d.proc.poll() is None:
            client.cleanup()
        d.stop()


def _tasks(d: Daemon) -> dict[str, tuple[str, str]]:
    out = d.ctr("tasks", "ls").stdout.splitlines()[1:]
    rows = [line.split() for line in out if line.strip()]
    return {r[0]: (r[1], r[2]) for r in rows}


def _wait_status(d: Daemon, id: str, status: str, timeout: float = 15) -> None:  # noqa: A002
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _tasks(d).get(id, ("", ""))[1] == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"task {id} not {status}: {_tasks(d)}\n{d.log()[-3000:]}")


def _bundle(d: Daemon, id: str) -> Path:  # noqa: A002
    return d.state / "io.containerd.runtime.v2.task" / NS / id


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_ctr_tasks_start_prints_hello_and_exit_codes_propagate(
    running: Client, runtime: str
) -> None:
    d = running.daemon
    running.container("hello", ["echo", "hello"], runtime)
    res = d.ctr("tasks", "start", "hello")
    assert res.stdout == "hello\n", d.log()[-3000:]
    # attached, ctr deletes the task once it has exited
    assert "hello" not in _tasks(d)
    assert not _bundle(d, "hello").exists()

    running.container("exit3", ["sh", "-c", "echo oops >&2; exit 3"], runtime)
    res = d.ctr("tasks", "start", "exit3", check=False)
    assert res.returncode == 3, (res.stdout, res.stderr)
    assert "oops" in res.stderr
    assert "exit3" not in _tasks(d)
    assert not _bundle(d, "exit3").exists()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_ctr_tasks_ls_ps_metrics_pause_resume_exec_kill_delete(
    running: Client, runtime: str
) -> None:
    d = running.daemon
    running.container("sleeper", ["sleep", "1000"], runtime)
    d.ctr("tasks", "start", "-d", "sleeper")
    pid, status = _tasks(d)["sleeper"]
    assert status == "RUNNING" and int(pid) > 0

    ps = d.ctr("tasks", "ps", "sleeper").stdout
    assert pid in ps.split(), ps

    metrics = d.ctr("tasks", "metrics", "sleeper").stdout
    assert "sleeper" in metrics and "pids.current" in metrics, metrics

    d.ctr("tasks", "pause", "sleeper")
    assert _tasks(d)["sleeper"][1] == "PAUSED"
    d.ctr("tasks", "resume", "sleeper")
    assert _tasks(d)["sleeper"][1] == "RUNNING"

    res = d.ctr("tasks", "exec", "--exec-id", "e1", "sleeper", "echo", "x")
    assert res.stdout == "x\n"
    res = d.ctr("tasks", "exec", "--exec-id", "e2", "sleeper", "sh", "-c", "exit 5", check=False)
    assert res.returncode == 5

    # a running task cannot be deleted; starting it again is an error
    res = d.ctr("tasks", "delete", "sleeper", check=False)
    assert res.returncode != 0
    res = d.ctr("tasks", "start", "-d", "sleeper", check=False)
    assert res.returncode != 0 and "already exists" in res.stderr, res.stderr

    d.ctr("tasks", "kill", "-s", "SIGKILL", "sleeper")
    _wait_status(d, "sleeper", "STOPPED")
    d.ctr("tasks", "delete", "sleeper")
    assert "sleeper" not in _tasks(d)
    assert not _bundle(d, "sleeper").exists()


def test_ctr_bad_input_gives_clear_errors(running: Client) -> None:
    d = running.daemon
    res = d.ctr("tasks", "start", "nosuch", check=False)
    assert res.returncode != 0 and "not found" in res.stderr
    running.container("nort", ["true"], runtime="io.containerd.nope.v9")
    res = d.ctr("tasks", "start", "nort", check=False)
    assert res.returncode != 0
    assert "containerd-shim-nope-v9" in res.stderr and "not found" in res.stderr, res.stderr
    assert not _bundle(d, "nort").exists()
    res = d.ctr("tasks", "checkpoint", "nort", check=False)
    assert res.returncode != 0


def test_daemon_killed_under_a_running_container_reconnects(base: Path, rootfs: str) -> None:
    _need_peers()
    d = _new_daemon(base / "d")
    d.start()
    client = Client(d, rootfs)
    try:
        client.container("survivor", ["sleep", "1000"])
        d.ctr("tasks", "start", "-d", "survivor")
        pid, _ = _tasks(d)["survivor"]
        d.kill()  # SIGKILL
        assert os.path.exists(f"/proc/{pid}")
        client.channel.close()

        d2 = _new_daemon(base / "d")
        d2.start()
        client.daemon = d2
        client.channel = grpc.insecure_channel(f"unix:{d2.address}")
        client.containers = containers_pb2_grpc.ContainersStub(client.channel)
        client.snapshots = snapshots_pb2_grpc.SnapshotsStub(client.channel)
        assert _tasks(d2)["survivor"] == (pid, "RUNNING"), d2.log()[-3000:]
        d2.ctr("tasks", "kill", "-s", "SIGKILL", "survivor")
        _wait_status(d2, "survivor", "STOPPED")
        d2.ctr("tasks", "delete", "survivor")
        assert not _bundle(d2, "survivor").exists()
        assert not os.path.exists(f"/proc/{pid}") or _zombie(int(pid))
    finally:
        if client.daemon.proc is not None and client.daemon.proc.poll() is None:
            client.cleanup()
        client.daemon.stop()
        d.stop()


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_shim_killed_under_ctr_yields_exit_and_cleanup(running: Client, runtime: str) -> None:
    d = running.daemon
    running.container("crash", ["sleep", "1000"], runtime)
    d.ctr("tasks", "start", "-d", "crash")
    pid, _ = _tasks(d)["crash"]
    with open(f"/proc/{pid}/stat") as f:
        shim_pid = int(f.read().rsplit(")", 1)[1].split()[1])  # the shim is the parent
    os.kill(shim_pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and ("crash" in _tasks(d) or _bundle(d, "crash").exists()):
        time.sleep(0.1)
    assert "crash" not in _tasks(d), d.log()[-3000:]
    assert not _bundle(d, "crash").exists()
    assert not os.path.exists(f"/proc/{pid}") or _zombie(int(pid))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_ctr_run_rm_imported_image_prints_hello(
    running: Client, runtime: str, busybox: images.Image, base: Path
) -> None:
    d = running.daemon
    archive = busybox.oci_archive(base / "busybox.tar")
    d.ctr("images", "import", str(archive))
    res = d.ctr("run", "--rm", "--runtime", runtime, busybox.name, "run1", "echo", "hello")
    assert res.stdout == "hello\n", res.stderr
    res = d.ctr(
        "run", "--rm", "--runtime", runtime, busybox.name, "run2", "sh", "-c", "exit 7", check=False
    )
    assert res.returncode == 7, res.stderr
    assert d.ctr("containers", "ls", "-q").stdout.split() == []
    assert _tasks(d) == {}
    assert not _bundle(d, "run1").exists() and not _bundle(d, "run2").exists()
