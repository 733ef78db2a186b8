"""Peer tests: Debian's containerd-shim-runc-v2 (containerd 1.6, task API v2) started the way
containerd starts it, with TTRPC_ADDRESS pointing at our ttrpc server (events Forward), then
driven with our ttrpc client: Connect, State of an unknown task, Shutdown; and a real
container run through it, whose task events the shim forwards to our server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator

import peers
import pytest
from google.protobuf import empty_pb2

from pycontainerd.api.containerd.events import task_pb2
from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2
from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.events.exchange import Exchange
from pycontainerd.core.ttrpc import Client, Server
from pycontainerd.plugins.services.events.service import EventsService

TASK = "containerd.task.v2.Task"
NAMESPACE = "testns"

pytestmark = [pytest.mark.root, pytest.mark.integration]


@pytest.fixture
def workdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="shimpeer", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def exchange() -> Exchange:
    return Exchange()


@pytest.fixture
async def events_server(workdir: str, exchange: Exchange) -> AsyncIterator[Server]:
    srv = Server(address=os.path.join(workdir, "pycontainerd.sock.ttrpc"))
    await srv.start([EventsService(exchange)])
    yield srv
    await srv.stop(0)


def _parse_start_output(out: str) -> str:
    """containerd's parseStartResponse: JSON bootstrap params, or a bare ttrpc address."""
    text = out.strip()
    try:
        params = json.loads(text)
    except json.JSONDecodeError:
        return text
    assert isinstance(params, dict) and params.get("protocol", "ttrpc") == "ttrpc"
    return str(params["address"])


def _exited(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def _read_log(fd: int) -> str:
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


class ShimRun:
    """One shim started like containerd 1.6 starts it: bundle as cwd, ``log`` FIFO held open."""

    def __init__(self, workdir: str, events_server: Server, task_id: str) -> None:
        self.workdir = workdir
        self.events_server = events_server
        self.id = task_id
        self.bundle = os.path.join(workdir, NAMESPACE, task_id)
        os.makedirs(self.bundle, mode=0o700)
        # the long-running shim dup2s the `log` FIFO onto its stderr; containerd holds the
        # read end open (RDWR|NONBLOCK) and copies it
        log_path = os.path.join(self.bundle, "log")
        os.mkfifo(log_path, 0o700)
        self.log_fd = os.open(log_path, os.O_RDWR | os.O_NONBLOCK)
        self.address = ""
        self.shim_pid = 0

    def write_spec(self, spec: dict[str, object]) -> None:
        with open(os.path.join(self.bundle, "config.json"), "w") as f:
            json.dump(spec, f)

    async def start(self) -> str:
        shim = peers.require_binary("containerd-shim-runc-v2")
        grpc_address = os.path.join(self.workdir, "pycontainerd.sock")
        env = dict(os.environ)
        env.update(
            GOMAXPROCS="2",
            TTRPC_ADDRESS=self.events_server.address,
            GRPC_ADDRESS=grpc_address,
            NAMESPACE=NAMESPACE,
        )
        # -publish-binary is the legacy event path; events must come over TTRPC_ADDRESS
        args = ["-namespace", NAMESPACE, "-address", grpc_address, "-publish-binary", "/bin/false"]
        proc = await asyncio.create_subprocess_exec(
            shim,
            *args,
            "-id",
            self.id,
            "start",
            cwd=self.bundle,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
        assert proc.returncode == 0, f"shim start failed: {err.decode()} {self.log()}"
        self.address = _parse_start_output(out.decode())
        assert self.address.startswith("unix://"), out
        with open(os.path.join(self.bundle, "address")) as f:
            assert f.read().strip() == self.address
        return self.address

    def log(self) -> str:
        return _read_log(self.log_fd)

    async def wait_exited(self) -> None:
        async with asyncio.timeout(10):
            while not _exited(self.shim_pid):
                await asyncio.sleep(0.05)

    def cleanup(self) -> None:
        if self.shim_pid and not _exited(self.shim_pid):
            os.kill(self.shim_pid, signal.SIGKILL)
        if self.address:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address.removeprefix("unix://"))
        os.close(self.log_fd)


@pytest.fixture
def shim_run(workdir: str, events_server: Server) -> Iterator[ShimRun]:
    run = ShimRun(workdir, events_server, f"peer{os.getpid()}")
    try:
        yield run
    finally:
        run.cleanup()


async def _call(client: Client, method: str, request: object, response_cls: type) -> object:
    return await client.call(TASK, method, request, response_cls, timeout=20)


async def _shutdown(client: Client, run: ShimRun) -> None:
    # the shim may close the connection before its reply to Shutdown gets out
    with contextlib.suppress(errdefs.Unavailable):
        reply = await _call(
            client, "Shutdown", shim_pb2.ShutdownRequest(id=run.id), empty_pb2.Empty
        )
        assert reply == empty_pb2.Empty()
    await run.wait_exited()
    async with asyncio.timeout(5):
        await client.wait_closed()
    assert client.closed


async def test_runc_shim_v2_connect_state_shutdown(shim_run: ShimRun) -> None:
    # `start` reads config.json for its grouping annotations; nothing else of the spec is used.
    shim_run.write_spec({"ociVersion": "1.0.2", "annotations": {}})
    address = await shim_run.start()
    async with await Client.connect(address, timeout=10) as client:
        with namespaces.use(NAMESPACE):
            resp = await _call(
                client, "Connect", shim_pb2.ConnectRequest(id=shim_run.id), shim_pb2.ConnectResponse
            )
            assert isinstance(resp, shim_pb2.ConnectResponse)
            shim_run.shim_pid = resp.shim_pid
            assert resp.shim_pid > 0 and resp.task_pid == 0
            assert not _exited(resp.shim_pid)

            with pytest.raises(errdefs.NotFound, match="container not created"):
                await _call(
                    client,
                    "State",
                    shim_pb2.StateRequest(id="no-such-task"),
                    shim_pb2.StateResponse,
                )
            # several calls in flight on the one connection
            replies = await asyncio.gather(
                *(
                    client.call(
                        TASK,
                        "Connect",
                        shim_pb2.ConnectRequest(id=shim_run.id),
                        shim_pb2.ConnectResponse,
                    )
                    for _ in range(8)
                )
            )
            assert {r.shim_pid for r in replies} == {resp.shim_pid}
            await _shutdown(client, shim_run)


def _runc_spec(bundle: str, args: list[str]) -> dict[str, object]:
    runc = peers.require_binary("runc")
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        subprocess.run([runc, "spec", "--bundle", d], check=True)
        with open(os.path.join(d, "config.json")) as f:
            spec = json.load(f)
    spec["process"]["args"] = args
    spec["process"]["terminal"] = False
    return spec  # type: ignore[no-any-return]


async def test_runc_shim_v2_forwards_task_events_to_our_ttrpc_server(
    shim_run: ShimRun, exchange: Exchange
) -> None:
    busybox = peers.require_binary("busybox")
    rootfs = os.path.join(shim_run.bundle, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    shutil.copy(busybox, os.path.join(rootfs, "bin", "busybox"))
    shim_run.write_spec(_runc_spec(shim_run.bundle, ["/bin/busybox", "sh", "-c", "exit 7"]))
    sub = exchange.subscribe(f'namespace=="{NAMESPACE}"')
    address = await shim_run.start()
    async with await Client.connect(address, timeout=10) as client:
        with namespaces.use(NAMESPACE):
            tid = shim_run.id
            resp = await _call(
                client, "Connect", shim_pb2.ConnectRequest(id=tid), shim_pb2.ConnectResponse
            )
            shim_run.shim_pid = resp.shim_pid  # type: ignore[attr-defined]
            created = await _call(
                client,
                "Create",
                shim_pb2.CreateTaskRequest(id=tid, bundle=shim_run.bundle),
                shim_pb2.CreateTaskResponse,
            )
            pid = created.pid  # type: ignore[attr-defined]
            assert pid > 0, shim_run.log()
            await _call(client, "Start", shim_pb2.StartRequest(id=tid), shim_pb2.StartResponse)
            waited = await _call(
                client, "Wait", shim_pb2.WaitRequest(id=tid), shim_pb2.WaitResponse
            )
            assert waited.exit_status == 7  # type: ignore[attr-defined]
            deleted = await _call(
                client, "Delete", shim_pb2.DeleteRequest(id=tid), shim_pb2.DeleteResponse
            )
            assert (deleted.pid, deleted.exit_status) == (pid, 7)  # type: ignore[attr-defined]

            envelopes = []
            async with asyncio.timeout(10):
                async for env in sub:
                    envelopes.append(env)
                    if env.topic == "/tasks/delete":
                        break
            await _shutdown(client, shim_run)
    await sub.aclose()

    topics = [e.topic for e in envelopes]
    assert topics == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"], topics
    assert {e.namespace for e in envelopes} == {NAMESPACE}
    assert all(e.timestamp is not None for e in envelopes)
    assert [e.event.type_url for e in envelopes] == [
        "containerd.events.TaskCreate",
        "containerd.events.TaskStart",
        "containerd.events.TaskExit",
        "containerd.events.TaskDelete",
    ]
    exit_event = task_pb2.TaskExit.FromString(envelopes[2].event.value)
    assert (exit_event.container_id, exit_event.pid, exit_event.exit_status) == (tid, pid, 7)
