"""containerd-shim-pyrunc-v2 driven the way containerd drives a shim: ``start`` in the bundle
with containerd's flags and environment, then the task API over ttrpc (v2 and v3), events
collected by our ttrpc Events/Forward server on TTRPC_ADDRESS, ``delete`` for a dead shim.
Real runc, a busybox rootfs bind-mounted by the shim from Create's rootfs."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import images
import peers
import pytest
from google.protobuf import any_pb2, empty_pb2

from pycontainerd.api.containerd.events import task_pb2 as events_pb2
from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2 as shim_v2
from pycontainerd.api.containerd.runtime.task.v3 import shim_pb2
from pycontainerd.api.containerd.types import mount_pb2
from pycontainerd.api.containerd.types.runc.options import oci_pb2
from pycontainerd.api.containerd.types.task import task_pb2 as task_types
from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.events.exchange import Exchange
from pycontainerd.core.ttrpc import Client, Server
from pycontainerd.plugins.runtimes.pyrunc import metrics
from pycontainerd.plugins.services.events.service import EventsService

pytestmark = [pytest.mark.root, pytest.mark.integration]

SHIM = Path(__file__).resolve().parents[4] / ".venv" / "bin" / "containerd-shim-pyrunc-v2"
NS = "pyrunc-test"
V3 = "containerd.task.v3.Task"
V2 = "containerd.task.v2.Task"


def shim_binary() -> str:
    path = shutil.which("containerd-shim-pyrunc-v2") or str(SHIM)
    if not os.access(path, os.X_OK):
        pytest.fail(f"containerd-shim-pyrunc-v2 not installed ({path}): pip install -e .")
    return path


def extract_rootfs(image: images.Image, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for layer in image.layers:
        with image.blob_path(layer.descriptor.digest).open("rb") as raw:
            stream = (
                gzip.GzipFile(fileobj=raw) if layer.descriptor.media_type.endswith("gzip") else raw
            )
            with tarfile.open(fileobj=stream, mode="r|") as tf:
                images.extract_all(tf, dest, trusted=True)
    return dest


def runc_spec(args: list[str], *, annotations: dict[str, str] | None = None) -> dict:
    runc = peers.require_binary("runc")
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        subprocess.run([runc, "spec", "--bundle", d], check=True)
        spec = json.loads(Path(d, "config.json").read_text())
    spec["process"]["args"] = args
    spec["process"]["terminal"] = False
    spec["root"] = {"path": "rootfs", "readonly": False}
    spec["annotations"] = annotations or {}
    return spec


@pytest.fixture(scope="module")
def rootfs(busybox: images.Image, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract_rootfs(busybox, tmp_path_factory.mktemp("pyrunc") / "rootfs")


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="pyr", dir="/tmp"))
    try:
        yield d
    finally:
        subprocess.run(["umount", "-R", "-l", *map(str, d.glob("*/*/rootfs"))], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def exchange() -> Exchange:
    return Exchange()


@pytest.fixture
async def events_server(workdir: Path, exchange: Exchange) -> AsyncIterator[Server]:
    srv = Server(address=str(workdir / "d.sock.ttrpc"))
    await srv.start([EventsService(exchange)])
    yield srv
    await srv.stop(0)


class Harness:
    """Bundles, shim starts and clients, as containerd would make them."""

    def __init__(self, workdir: Path, events: Server, rootfs: Path) -> None:
        self.workdir = workdir
        self.events = events
        self.rootfs = rootfs
        self.grpc_address = str(workdir / "d.sock")
        self.runc_root = str(workdir / "runc")
        self.log_fds: list[int] = []
        self.shim_pids: set[int] = set()
        self.clients: list[Client] = []

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            TTRPC_ADDRESS=self.events.address,
            GRPC_ADDRESS=self.grpc_address,
            NAMESPACE=NS,
            PYCONTAINERD_SHIM_SOCKET_DIR=str(self.workdir / "s"),
        )
        env.pop("MAX_SHIM_VERSION", None)
        return env

    def bundle(self, id: str, args: list[str], **kw: object) -> Path:
        b = self.workdir / NS / id
        b.mkdir(parents=True, mode=0o700)
        (b / "config.json").write_text(json.dumps(runc_spec(args, **kw)))  # type: ignore[arg-type]
        os.mkfifo(b / "log", 0o700)
        self.log_fds.append(os.open(b / "log", os.O_RDWR | os.O_NONBLOCK))
        return b

    async def shim(
        self,
        action: str,
        id: str,
        bundle: Path,
        *extra: str,
        env: dict | None = None,
        stdin: bytes = b"",
        publish_binary: str = "/bin/false",
    ) -> tuple[int, bytes, bytes]:
        proc = await asyncio.create_subprocess_exec(
            shim_binary(),
            "-namespace",
            NS,
            "-address",
            self.grpc_address,
            "-publish-binary",
            publish_binary,
            "-id",
            id,
            *extra,
            action,
            cwd=bundle,
            env=env or self.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            out, err = await proc.communicate(stdin)
        return proc.returncode or 0, out, err

    async def start(self, id: str, bundle: Path, **kw: object) -> str:
        rc, out, err = await self.shim("start", id, bundle, **kw)  # type: ignore[arg-type]
        assert rc == 0, err.decode()
        assert err == b"", err  # containerd 1.6 reads start's stdout and stderr together
        return out.decode()

    async def connect(self, address: str) -> Client:
        client = await Client.connect(address, timeout=10)
        self.clients.append(client)
        return client

    def create_request(self, id: str, bundle: Path, **kw: object) -> shim_pb2.CreateTaskRequest:
        opts = oci_pb2.Options(root=self.runc_root)
        return shim_pb2.CreateTaskRequest(
            id=id,
            bundle=str(bundle),
            rootfs=[mount_pb2.Mount(type="bind", source=str(self.rootfs), options=["rbind", "rw"])],
            options=any_pb2.Any(
                type_url="containerd.runc.v1.Options", value=opts.SerializeToString()
            ),
            **kw,  # type: ignore[arg-type]
        )

    async def cleanup(self) -> None:
        for c in self.clients:
            await c.close()
        for pid in self.shim_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(
            ["runc", "--root", self.runc_root + "/" + NS, "list", "-q"], capture_output=True
        )
        if os.path.isdir(self.runc_root + "/" + NS):
            for cid in os.listdir(self.runc_root + "/" + NS):
                subprocess.run(
                    ["runc", "--root", self.runc_root + "/" + NS, "delete", "-f", cid],
                    capture_output=True,
                )
        for fd in self.log_fds:
            os.close(fd)


@pytest.fixture
async def h(workdir: Path, events_server: Server, rootfs: Path) -> AsyncIterator[Harness]:
    harness = Harness(workdir, events_server, rootfs)
    try:
        yield harness
    finally:
        await harness.cleanup()


async def call(client: Client, method: str, req: object, resp: type, service: str = V3) -> object:
    with namespaces.use(NS):
        return await client.call(service, method, req, resp, timeout=30)


def exited(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def wait_gone(pid: int, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not exited(pid):
            await asyncio.sleep(0.05)


def _drain(fd: int) -> bytes:
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    return b"".join(chunks)


def is_mount(path: Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def fifo(path: Path) -> int:
    """A FIFO for the task's output with its read end open, as containerd's client holds it."""
    os.mkfifo(path, 0o600)
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK)


async def read_all(fd: int, timeout: float = 10) -> bytes:
    """Read until every writer has gone (EOF after the first writer came)."""
    chunks = []
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        while True:
            fut = loop.create_future()
            loop.add_reader(fd, fut.set_result, None)
            try:
                await fut
            finally:
                loop.remove_reader(fd)
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not data:
                break
            chunks.append(data)
    os.close(fd)
    return b"".join(chunks)


async def collect(sub: AsyncIterator, until: str, count: int = 1, timeout: float = 10) -> list:
    got = []
    seen = 0
    async with asyncio.timeout(timeout):
        async for env in sub:
            got.append(env)
            if env.topic == until:
                seen += 1
                if seen == count:
                    break
    return got


# -- tests ---------------------------------------------------------------------------------


async def test_start_prints_plain_address_by_default_and_json_for_v3(h: Harness) -> None:
    b = h.bundle("addr", ["true"])
    address = await h.start("addr", b)
    assert address.startswith("unix://") and "\n" not in address
    assert (b / "address").read_text() == address
    # a second start for the same group reuses the live shim: same address, no new process
    client = await h.connect(address)
    resp = await call(
        client, "Connect", shim_pb2.ConnectRequest(id="addr"), shim_pb2.ConnectResponse
    )
    h.shim_pids.add(resp.shim_pid)
    env = h.env() | {"MAX_SHIM_VERSION": "3"}
    again = json.loads(await h.start("addr", b, env=env))
    assert again == {"version": 3, "address": address, "protocol": "ttrpc"}
    await call(client, "Shutdown", shim_pb2.ShutdownRequest(id="addr"), empty_pb2.Empty)
    await wait_gone(resp.shim_pid)
    assert not os.path.exists(address.removeprefix("unix://"))


async def test_echo_hello_events_in_order_and_shutdown(h: Harness, exchange: Exchange) -> None:
    b = h.bundle("hello", ["sh", "-c", "echo hello; exit 3"])
    sub = exchange.subscribe(f'namespace=="{NS}"')
    address = await h.start("hello", b)
    client = await h.connect(address)
    conn = await call(
        client, "Connect", shim_pb2.ConnectRequest(id="hello"), shim_pb2.ConnectResponse
    )
    h.shim_pids.add(conn.shim_pid)
    out = fifo(h.workdir / "hello-stdout")
    created = await call(
        client,
        "Create",
        h.create_request("hello", b, stdout=str(h.workdir / "hello-stdout")),
        shim_pb2.CreateTaskResponse,
    )
    assert created.pid > 0
    st = await call(client, "State", shim_pb2.StateRequest(id="hello"), shim_pb2.StateResponse)
    assert (st.status, st.pid, st.bundle) == (task_types.CREATED, created.pid, str(b))
    reader = asyncio.ensure_future(read_all(out))
    started = await call(client, "Start", shim_pb2.StartRequest(id="hello"), shim_pb2.StartResponse)
    assert started.pid == created.pid
    waited = await call(client, "Wait", shim_pb2.WaitRequest(id="hello"), shim_pb2.WaitResponse)
    assert waited.exit_status == 3
    assert await reader == b"hello\n"
    st = await call(client, "State", shim_pb2.StateRequest(id="hello"), shim_pb2.StateResponse)
    assert (st.status, st.exit_status) == (task_types.STOPPED, 3)
    deleted = await call(
        client, "Delete", shim_pb2.DeleteRequest(id="hello"), shim_pb2.DeleteResponse
    )
    assert (deleted.pid, deleted.exit_status) == (created.pid, 3)
    assert not is_mount(b / "rootfs")
    with pytest.raises(errdefs.NotFound):
        await call(client, "State", shim_pb2.StateRequest(id="hello"), shim_pb2.StateResponse)

    envelopes = await collect(sub, "/tasks/delete")
    await sub.aclose()
    assert [e.topic for e in envelopes] == [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/delete",
    ]
    assert [e.event.type_url for e in envelopes] == [
        "containerd.events.TaskCreate",
        "containerd.events.TaskStart",
        "containerd.events.TaskExit",
        "containerd.events.TaskDelete",
    ]
    ex = events_pb2.TaskExit.FromString(envelopes[2].event.value)
    assert (ex.container_id, ex.id, ex.pid, ex.exit_status) == ("hello", "hello", created.pid, 3)

    with contextlib.suppress(errdefs.Unavailable):
        await call(client, "Shutdown", shim_pb2.ShutdownRequest(id="hello"), empty_pb2.Empty)
    await wait_gone(conn.shim_pid)
    async with asyncio.timeout(5):
        await client.wait_closed()


async def test_a_shim_told_to_shut_down_stops_taking_work_at_once(h: Harness) -> None:
    """After Shutdown the socket is gone and a Create over a connection made before is
    refused, so a `start` for the same id right then forks a new shim (the restart monitor
    recreates a task the moment it was deleted) instead of joining the one on its way out;
    and the old shim's exit leaves the new shim's socket alone."""
    b = h.bundle("again", ["true"])
    address = await h.start("again", b)
    path = address.removeprefix("unix://")
    client = await h.connect(address)
    late = await h.connect(address)  # a peer that connected just before the shutdown
    conn = await call(
        client, "Connect", shim_pb2.ConnectRequest(id="again"), shim_pb2.ConnectResponse
    )
    h.shim_pids.add(conn.shim_pid)
    await call(client, "Shutdown", shim_pb2.ShutdownRequest(id="again"), empty_pb2.Empty)
    assert not os.path.exists(path)
    with pytest.raises(errdefs.Unavailable, match="shutting down"):
        await call(late, "Create", h.create_request("again", b), shim_pb2.CreateTaskResponse)
    # the same group started again at once: a new shim on the same path, which stays
    assert await h.start("again", b) == address
    fresh = await h.connect(address)
    conn2 = await call(
        fresh, "Connect", shim_pb2.ConnectRequest(id="again"), shim_pb2.ConnectResponse
    )
    h.shim_pids.add(conn2.shim_pid)
    assert conn2.shim_pid != conn.shim_pid
    await wait_gone(conn.shim_pid)
    assert os.path.exists(path)
    await call(fresh, "Shutdown", shim_pb2.ShutdownRequest(id="again"), empty_pb2.Empty)
    await wait_gone(conn2.shim_pid)


async def test_exec_kill_pause_resume_pids_stats_over_v2(h: Harness, exchange: Exchange) -> None:
    b = h.bundle("long", ["sleep", "300"])
    sub = exchange.subscribe(f'namespace=="{NS}"')
    address = await h.start("long", b)
    client = await h.connect(address)
    svc = V2  # containerd 1.6 speaks task v2; the same handlers serve it
    conn = await call(
        client, "Connect", shim_v2.ConnectRequest(id="long"), shim_v2.ConnectResponse, svc
    )
    h.shim_pids.add(conn.shim_pid)
    created = await call(
        client, "Create", h.create_request("long", b), shim_v2.CreateTaskResponse, svc
    )
    await call(client, "Start", shim_v2.StartRequest(id="long"), shim_v2.StartResponse, svc)

    # exec with output to a FIFO
    out = fifo(h.workdir / "exec-stdout")
    spec = runc_spec(["sh", "-c", "echo from-exec; exit 5"])["process"]
    await call(
        client,
        "Exec",
        shim_v2.ExecProcessRequest(
            id="long",
            exec_id="e1",
            stdout=str(h.workdir / "exec-stdout"),
            spec=any_pb2.Any(
                type_url="types.containerd.io/opencontainers/runtime-spec/1/Process",
                value=json.dumps(spec).encode(),
            ),
        ),
        empty_pb2.Empty,
        svc,
    )
    with pytest.raises(errdefs.AlreadyExists):
        await call(
            client,
            "Exec",
            shim_v2.ExecProcessRequest(
                id="long",
                exec_id="e1",
                spec=any_pb2.Any(type_url="x", value=json.dumps(spec).encode()),
            ),
            empty_pb2.Empty,
            svc,
        )
    reader = asyncio.ensure_future(read_all(out))
    started = await call(
        client, "Start", shim_v2.StartRequest(id="long", exec_id="e1"), shim_v2.StartResponse, svc
    )
    assert started.pid > 0 and started.pid != created.pid
    waited = await call(
        client, "Wait", shim_v2.WaitRequest(id="long", exec_id="e1"), shim_v2.WaitResponse, svc
    )
    assert waited.exit_status == 5
    assert await reader == b"from-exec\n"
    deleted = await call(
        client,
        "Delete",
        shim_v2.DeleteRequest(id="long", exec_id="e1"),
        shim_v2.DeleteResponse,
        svc,
    )
    assert (deleted.pid, deleted.exit_status) == (started.pid, 5)

    # a long exec shows up in pids with its exec id
    spec = runc_spec(["sleep", "300"])["process"]
    await call(
        client,
        "Exec",
        shim_v2.ExecProcessRequest(
            id="long", exec_id="e2", spec=any_pb2.Any(type_url="p", value=json.dumps(spec).encode())
        ),
        empty_pb2.Empty,
        svc,
    )
    e2 = await call(
        client, "Start", shim_v2.StartRequest(id="long", exec_id="e2"), shim_v2.StartResponse, svc
    )
    pids = await call(client, "Pids", shim_v2.PidsRequest(id="long"), shim_v2.PidsResponse, svc)
    by_pid = {p.pid: p for p in pids.processes}
    assert created.pid in by_pid and e2.pid in by_pid
    assert oci_pb2.ProcessDetails.FromString(by_pid[e2.pid].info.value).exec_id == "e2"
    await call(
        client, "Kill", shim_v2.KillRequest(id="long", exec_id="e2", signal=9), empty_pb2.Empty, svc
    )
    w2 = await call(
        client, "Wait", shim_v2.WaitRequest(id="long", exec_id="e2"), shim_v2.WaitResponse, svc
    )
    assert w2.exit_status == 137

    # pause / resume
    await call(client, "Pause", shim_v2.PauseRequest(id="long"), empty_pb2.Empty, svc)
    st = await call(client, "State", shim_v2.StateRequest(id="long"), shim_v2.StateResponse, svc)
    assert st.status == task_types.PAUSED
    await call(client, "Resume", shim_v2.ResumeRequest(id="long"), empty_pb2.Empty, svc)
    st = await call(client, "State", shim_v2.StateRequest(id="long"), shim_v2.StateResponse, svc)
    assert st.status == task_types.RUNNING

    # update the resources, then stats (cgroup v1 metrics) show them
    resources = {"pids": {"limit": 77}}
    await call(
        client,
        "Update",
        shim_v2.UpdateTaskRequest(
            id="long",
            resources=any_pb2.Any(
                type_url="types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
                value=json.dumps(resources).encode(),
            ),
        ),
        empty_pb2.Empty,
        svc,
    )
    # stats: cgroup v1 metrics
    stats = await call(client, "Stats", shim_v2.StatsRequest(id="long"), shim_v2.StatsResponse, svc)
    assert stats.stats.type_url == "io.containerd.cgroups.v1.Metrics"
    m = metrics.message_class().FromString(stats.stats.value)
    assert m.pids.current >= 1 and m.pids.limit == 77 and m.memory.usage.usage > 0

    # checkpoint is not implemented; a running task cannot be deleted
    with pytest.raises(errdefs.NotImplemented_):
        await call(
            client, "Checkpoint", shim_v2.CheckpointTaskRequest(id="long"), empty_pb2.Empty, svc
        )
    with pytest.raises(errdefs.FailedPrecondition):
        await call(client, "Delete", shim_v2.DeleteRequest(id="long"), shim_v2.DeleteResponse, svc)

    # kill the init: exit 137 (SIGKILL)
    await call(
        client, "Kill", shim_v2.KillRequest(id="long", signal=9, all=True), empty_pb2.Empty, svc
    )
    w = await call(client, "Wait", shim_v2.WaitRequest(id="long"), shim_v2.WaitResponse, svc)
    assert w.exit_status == 137
    with pytest.raises(errdefs.NotFound):
        await call(client, "Kill", shim_v2.KillRequest(id="long", signal=9), empty_pb2.Empty, svc)
    await call(client, "Delete", shim_v2.DeleteRequest(id="long"), shim_v2.DeleteResponse, svc)

    envelopes = await collect(sub, "/tasks/delete")
    await sub.aclose()
    topics = [e.topic for e in envelopes]
    assert topics == [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/exit",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/exit",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exit",
        "/tasks/delete",
    ], topics
    with contextlib.suppress(errdefs.Unavailable):
        await call(client, "Shutdown", shim_v2.ShutdownRequest(id="long"), empty_pb2.Empty, svc)
    await wait_gone(conn.shim_pid)


async def test_containers_of_one_sandbox_share_one_shim(h: Harness) -> None:
    ann = {"io.kubernetes.cri.sandbox-id": "pod1"}
    b1 = h.bundle("c1", ["sleep", "300"], annotations=ann)
    b2 = h.bundle("c2", ["sh", "-c", "exit 4"], annotations=ann)
    b3 = h.bundle("c3", ["true"])
    a1, a2, a3 = await h.start("c1", b1), await h.start("c2", b2), await h.start("c3", b3)
    assert a1 == a2 != a3
    client = await h.connect(a1)
    other = await h.connect(a3)
    p1 = (
        await call(client, "Connect", shim_pb2.ConnectRequest(id="c1"), shim_pb2.ConnectResponse)
    ).shim_pid
    p3 = (
        await call(other, "Connect", shim_pb2.ConnectRequest(id="c3"), shim_pb2.ConnectResponse)
    ).shim_pid
    h.shim_pids |= {p1, p3}
    assert p1 != p3
    for id, b in (("c1", b1), ("c2", b2)):
        await call(client, "Create", h.create_request(id, b), shim_pb2.CreateTaskResponse)
        await call(client, "Start", shim_pb2.StartRequest(id=id), shim_pb2.StartResponse)
    w2 = await call(client, "Wait", shim_pb2.WaitRequest(id="c2"), shim_pb2.WaitResponse)
    assert w2.exit_status == 4
    conn = await call(client, "Connect", shim_pb2.ConnectRequest(id="c1"), shim_pb2.ConnectResponse)
    assert conn.shim_pid == p1 and conn.task_pid > 0
    await call(client, "Delete", shim_pb2.DeleteRequest(id="c2"), shim_pb2.DeleteResponse)
    # Shutdown while c1 still runs: the shim stays
    await call(client, "Shutdown", shim_pb2.ShutdownRequest(id="c2"), empty_pb2.Empty)
    await asyncio.sleep(0.3)
    assert not exited(p1)
    st = await call(client, "State", shim_pb2.StateRequest(id="c1"), shim_pb2.StateResponse)
    assert st.status == task_types.RUNNING
    await call(client, "Kill", shim_pb2.KillRequest(id="c1", signal=9), empty_pb2.Empty)
    w1 = await call(client, "Wait", shim_pb2.WaitRequest(id="c1"), shim_pb2.WaitResponse)
    assert w1.exit_status == 128 + 9
    await call(client, "Delete", shim_pb2.DeleteRequest(id="c1"), shim_pb2.DeleteResponse)
    with contextlib.suppress(errdefs.Unavailable):
        await call(client, "Shutdown", shim_pb2.ShutdownRequest(id="c1"), empty_pb2.Empty)
    await wait_gone(p1)
    with contextlib.suppress(errdefs.Unavailable):
        await call(other, "Shutdown", shim_pb2.ShutdownRequest(id="c3", now=True), empty_pb2.Empty)
    await wait_gone(p3)


async def test_terminal_and_stdin(h: Harness) -> None:
    b = h.bundle("tty", ["sh", "-c", "read line; echo got-$line"])
    spec = json.loads((b / "config.json").read_text())
    spec["process"]["terminal"] = True
    (b / "config.json").write_text(json.dumps(spec))
    address = await h.start("tty", b)
    client = await h.connect(address)
    conn = await call(
        client, "Connect", shim_pb2.ConnectRequest(id="tty"), shim_pb2.ConnectResponse
    )
    h.shim_pids.add(conn.shim_pid)
    out = fifo(h.workdir / "tty-out")
    os.mkfifo(h.workdir / "tty-in", 0o600)
    await call(
        client,
        "Create",
        h.create_request(
            "tty",
            b,
            terminal=True,
            stdin=str(h.workdir / "tty-in"),
            stdout=str(h.workdir / "tty-out"),
        ),
        shim_pb2.CreateTaskResponse,
    )
    reader = asyncio.ensure_future(read_all(out))
    await call(client, "Start", shim_pb2.StartRequest(id="tty"), shim_pb2.StartResponse)
    await call(
        client,
        "ResizePty",
        shim_pb2.ResizePtyRequest(id="tty", width=100, height=40),
        empty_pb2.Empty,
    )
    w = os.open(h.workdir / "tty-in", os.O_WRONLY)
    os.write(w, b"abc\n")
    os.close(w)
    waited = await call(client, "Wait", shim_pb2.WaitRequest(id="tty"), shim_pb2.WaitResponse)
    assert waited.exit_status == 0
    assert b"got-abc" in await reader
    await call(client, "Delete", shim_pb2.DeleteRequest(id="tty"), shim_pb2.DeleteResponse)

    # without a terminal: stdin through the shim, EOF on CloseIO
    b2 = h.bundle("cat", ["cat"])
    out2 = fifo(h.workdir / "cat-out")
    os.mkfifo(h.workdir / "cat-in", 0o600)
    w = os.open(h.workdir / "cat-in", os.O_RDWR)  # a writer that stays: only CloseIO ends it
    await call(
        client,
        "Create",
        h.create_request(
            "cat", b2, stdin=str(h.workdir / "cat-in"), stdout=str(h.workdir / "cat-out")
        ),
        shim_pb2.CreateTaskResponse,
    )
    reader = asyncio.ensure_future(read_all(out2))
    await call(client, "Start", shim_pb2.StartRequest(id="cat"), shim_pb2.StartResponse)
    os.write(w, b"piped\n")
    await asyncio.sleep(0.3)
    await call(client, "CloseIO", shim_pb2.CloseIORequest(id="cat", stdin=True), empty_pb2.Empty)
    waited = await call(client, "Wait", shim_pb2.WaitRequest(id="cat"), shim_pb2.WaitResponse)
    os.close(w)
    assert waited.exit_status == 0
    assert await reader == b"piped\n"
    await call(client, "Delete", shim_pb2.DeleteRequest(id="cat"), shim_pb2.DeleteResponse)
    with contextlib.suppress(errdefs.Unavailable):
        await call(client, "Shutdown", shim_pb2.ShutdownRequest(id="tty"), empty_pb2.Empty)
    await wait_gone(conn.shim_pid)


async def test_bad_input_and_duplicate_task(h: Harness) -> None:
    b = h.bundle("bad", ["sleep", "300"])
    address = await h.start("bad", b)
    client = await h.connect(address)
    conn = await call(
        client, "Connect", shim_pb2.ConnectRequest(id="bad"), shim_pb2.ConnectResponse
    )
    h.shim_pids.add(conn.shim_pid)
    with pytest.raises(errdefs.NotFound, match="not created"):
        await call(client, "State", shim_pb2.StateRequest(id="nope"), shim_pb2.StateResponse)
    with pytest.raises(errdefs.InvalidArgument, match="unsupported runtime options"):
        await call(
            client,
            "Create",
            shim_pb2.CreateTaskRequest(
                id="bad", bundle=str(b), options=any_pb2.Any(type_url="x.Y", value=b"")
            ),
            shim_pb2.CreateTaskResponse,
        )
    # runc's own error message comes back
    spec = json.loads((b / "config.json").read_text())
    spec["process"]["args"] = ["/no/such/binary"]
    (b / "config.json").write_text(json.dumps(spec))
    with pytest.raises(errdefs.ContainerdError, match="/no/such/binary.*no such file or directory"):
        await call(client, "Create", h.create_request("bad", b), shim_pb2.CreateTaskResponse)
    # nothing left behind: no task, no rootfs mount, no runc container
    with pytest.raises(errdefs.NotFound):
        await call(client, "State", shim_pb2.StateRequest(id="bad"), shim_pb2.StateResponse)
    assert not is_mount(b / "rootfs")
    assert not os.path.exists(f"{h.runc_root}/{NS}/bad")
    # a good task under the same id, then a duplicate
    spec["process"]["args"] = ["sleep", "300"]
    (b / "config.json").write_text(json.dumps(spec))
    await call(client, "Create", h.create_request("bad", b), shim_pb2.CreateTaskResponse)
    assert is_mount(b / "rootfs")
    with pytest.raises(errdefs.AlreadyExists):
        await call(client, "Create", h.create_request("bad", b), shim_pb2.CreateTaskResponse)
    # never started: deleted without an exit event
    await call(client, "Delete", shim_pb2.DeleteRequest(id="bad"), shim_pb2.DeleteResponse)
    assert not is_mount(b / "rootfs")
    with contextlib.suppress(errdefs.Unavailable):
        await call(client, "Shutdown", shim_pb2.ShutdownRequest(id="bad"), empty_pb2.Empty)
    await wait_gone(conn.shim_pid)


async def test_delete_action_cleans_up_after_a_killed_shim(h: Harness) -> None:
    b = h.bundle("dead", ["sleep", "300"])
    address = await h.start("dead", b)
    client = await h.connect(address)
    conn = await call(
        client, "Connect", shim_pb2.ConnectRequest(id="dead"), shim_pb2.ConnectResponse
    )
    h.shim_pids.add(conn.shim_pid)
    created = await call(client, "Create", h.create_request("dead", b), shim_pb2.CreateTaskResponse)
    await call(client, "Start", shim_pb2.StartRequest(id="dead"), shim_pb2.StartResponse)
    assert is_mount(b / "rootfs")
    os.kill(conn.shim_pid, signal.SIGKILL)
    await wait_gone(conn.shim_pid)
    rc, out, err = await h.shim("delete", "dead", b, "-bundle", str(b))
    assert rc == 0, err.decode()
    resp = shim_pb2.DeleteResponse.FromString(out)
    assert resp.pid == created.pid and resp.exit_status == 137 and resp.exited_at.seconds > 0
    assert not is_mount(b / "rootfs")
    await wait_gone(created.pid)
    listed = subprocess.run(
        ["runc", "--root", f"{h.runc_root}/{NS}", "list", "-q"], capture_output=True, text=True
    )
    assert "dead" not in listed.stdout.split()

    # the dead shim's socket file is still there: a new start replaces it with a live shim
    assert os.path.exists(address.removeprefix("unix://"))
    again = await h.start("dead", b)
    assert again == address
    client = await h.connect(again)
    conn2 = await call(
        client, "Connect", shim_pb2.ConnectRequest(id="dead"), shim_pb2.ConnectResponse
    )
    h.shim_pids.add(conn2.shim_pid)
    assert conn2.shim_pid != conn.shim_pid and conn2.task_pid == 0
    with contextlib.suppress(errdefs.Unavailable):
        await call(client, "Shutdown", shim_pb2.ShutdownRequest(id="dead"), empty_pb2.Empty)
    await wait_gone(conn2.shim_pid)


async def test_oom_event(h: Harness, exchange: Exchange) -> None:
    b = h.bundle("oom", ["sh", "-c", "tail /dev/zero"])
    spec = json.loads((b / "config.json").read_text())
    spec["linux"]["resources"]["memory"] = {"limit": 16 * 1024 * 1024, "swap": 16 * 1024 * 1024}
    (b / "config.json").write_text(json.dumps(spec))
    sub = exchange.subscribe(f'namespace=="{NS}"')
    address = await h.start("oom", b)
    client = await h.connect(address)
    conn = await call(
        client, "Connect", shim_pb2.ConnectRequest(id="oom"), shim_pb2.ConnectResponse
    )
    h.shim_pids.add(conn.shim_pid)
    await call(client, "Create", h.create_request("oom", b), shim_pb2.CreateTaskResponse)
    await call(client, "Start", shim_pb2.StartRequest(id="oom"), shim_pb2.StartResponse)
    waited = await call(client, "Wait", shim_pb2.WaitRequest(id="oom"), shim_pb2.WaitResponse)
    assert waited.exit_status == 137
    await call(client, "Delete", shim_pb2.DeleteRequest(id="oom"), shim_pb2.DeleteResponse)
    envelopes = await collect(sub, "/tasks/delete")
    await sub.aclose()
    topics = [e.topic for e in envelopes]
    assert "/tasks/oom" in topics, topics
    assert (
        events_pb2.TaskOOM.FromString(
            envelopes[topics.index("/tasks/oom")].event.value
        ).container_id
        == "oom"
    )
    with contextlib.suppress(errdefs.Unavailable):
        await call(client, "Shutdown", shim_pb2.ShutdownRequest(id="oom"), empty_pb2.Empty)
    await wait_gone(conn.shim_pid)


async def test_events_fall_back_to_the_publish_binary(h: Harness) -> None:
    """No ttrpc events socket: each event goes to ``<publish-binary> --address A publish
    --namespace NS --topic T`` with the Any on stdin (containerd's legacy path)."""
    record = h.workdir / "published"
    record.mkdir()
    script = h.workdir / "publish.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"n=$(ls {record}/*.args 2>/dev/null | wc -l)\n"
        f'echo "$@" > {record}/$n.args\n'
        f"cat > {record}/$n.any\n"
    )
    script.chmod(0o755)
    b = h.bundle("legacy", ["true"])
    env = h.env() | {"TTRPC_ADDRESS": str(h.workdir / "no-such.sock")}
    rc, out, err = await h.shim("start", "legacy", b, env=env, publish_binary=str(script))
    assert rc == 0, err
    client = await h.connect(out.decode())
    conn = await call(
        client, "Connect", shim_pb2.ConnectRequest(id="legacy"), shim_pb2.ConnectResponse
    )
    h.shim_pids.add(conn.shim_pid)
    await call(client, "Create", h.create_request("legacy", b), shim_pb2.CreateTaskResponse)
    await call(client, "Start", shim_pb2.StartRequest(id="legacy"), shim_pb2.StartResponse)
    await call(client, "Wait", shim_pb2.WaitRequest(id="legacy"), shim_pb2.WaitResponse)
    await call(client, "Delete", shim_pb2.DeleteRequest(id="legacy"), shim_pb2.DeleteResponse)
    with contextlib.suppress(errdefs.Unavailable):
        await call(client, "Shutdown", shim_pb2.ShutdownRequest(id="legacy"), empty_pb2.Empty)
    await wait_gone(conn.shim_pid)  # the shim sends what is queued before it exits
    log = b"".join(_drain(fd) for fd in h.log_fds).decode(errors="replace")
    assert sorted(os.listdir(record)) == [f"{i}.{x}" for i in range(4) for x in ("any", "args")], (
        log
    )
    calls = [(record / f"{i}.args").read_text().split() for i in range(4)]
    assert [c[c.index("--topic") + 1] for c in calls] == [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/delete",
    ]
    assert calls[0][:3] == ["--address", h.grpc_address, "publish"]
    assert calls[0][calls[0].index("--namespace") + 1] == NS
    exit_any = any_pb2.Any.FromString((record / "2.any").read_bytes())
    assert exit_any.type_url == "containerd.events.TaskExit"
    assert events_pb2.TaskExit.FromString(exit_any.value).container_id == "legacy"


def _zygote_answers(path: Path) -> bool:
    import socket as socket_

    s = socket_.socket(socket_.AF_UNIX, socket_.SOCK_STREAM)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


async def test_later_shims_are_forked_by_the_preloaded_zygote(h: Harness) -> None:
    from pycontainerd.plugins.runtimes.pyrunc import zygote

    # the first start forks its own shim and launches the zygote for the next ones
    first = h.bundle("first", ["true"])
    c1 = await h.connect(await h.start("first", first))
    r1 = await call(c1, "Connect", shim_pb2.ConnectRequest(id="first"), shim_pb2.ConnectResponse)
    h.shim_pids.add(r1.shim_pid)
    zpath = Path(zygote.path_for(str(h.workdir / "s")))
    async with asyncio.timeout(30):
        while not _zygote_answers(zpath):
            await asyncio.sleep(0.05)

    b = h.bundle("second", ["sh", "-c", "echo from-zygote-shim; exit 7"])
    client = await h.connect(await h.start("second", b))
    conn = await call(
        client, "Connect", shim_pb2.ConnectRequest(id="second"), shim_pb2.ConnectResponse
    )
    h.shim_pids.add(conn.shim_pid)
    cmdline = Path(f"/proc/{conn.shim_pid}/cmdline").read_bytes()
    assert cmdline.endswith(b"zygote\0")  # forked by the zygote, not by start
    assert b"containerd-shim-pyrunc-v2" in cmdline
    assert Path(f"/proc/{conn.shim_pid}/comm").read_text().strip() == "containerd-shim"
    assert Path(f"/proc/{conn.shim_pid}/cwd").resolve() == b.resolve()
    environ = Path(f"/proc/{conn.shim_pid}/environ").read_bytes().split(b"\0")
    assert f"TTRPC_ADDRESS={h.events.address}".encode() in environ  # start's environment

    out = fifo(h.workdir / "second-stdout")
    await call(
        client,
        "Create",
        h.create_request("second", b, stdout=str(h.workdir / "second-stdout")),
        shim_pb2.CreateTaskResponse,
    )
    reader = asyncio.ensure_future(read_all(out))
    await call(client, "Start", shim_pb2.StartRequest(id="second"), shim_pb2.StartResponse)
    waited = await call(client, "Wait", shim_pb2.WaitRequest(id="second"), shim_pb2.WaitResponse)
    assert waited.exit_status == 7
    assert await reader == b"from-zygote-shim\n"
    await call(client, "Delete", shim_pb2.DeleteRequest(id="second"), shim_pb2.DeleteResponse)
    await call(client, "Shutdown", shim_pb2.ShutdownRequest(id="second"), empty_pb2.Empty)
    await wait_gone(conn.shim_pid)


def test_zygote_messages_carry_descriptors() -> None:
    import socket as socket_

    from pycontainerd.plugins.runtimes.pyrunc import zygote

    a, b = socket_.socketpair()
    r, w = os.pipe()
    try:
        zygote._send(a, {"hello": ["world"] * 1000}, [w])
        got, fds = zygote._recv(b)
        assert got == {"hello": ["world"] * 1000} and len(fds) == 1
        os.write(fds[0], b"x")
        os.close(fds[0])
        assert os.read(r, 1) == b"x"
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()
        b.close()


async def test_zygote_idle_zero_turns_the_zygote_off(h: Harness) -> None:
    from pycontainerd.plugins.runtimes.pyrunc import zygote

    env = h.env() | {"PYCONTAINERD_SHIM_ZYGOTE_IDLE": "0"}
    pids = []
    for name in ("off1", "off2"):
        b = h.bundle(name, ["true"])
        client = await h.connect(await h.start(name, b, env=env))
        r = await call(
            client, "Connect", shim_pb2.ConnectRequest(id=name), shim_pb2.ConnectResponse
        )
        h.shim_pids.add(r.shim_pid)
        pids.append(r.shim_pid)
    assert not os.path.exists(zygote.path_for(str(h.workdir / "s")))
    for pid in pids:  # both forked by their own start
        assert Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").endswith(b"start")
