"""Peer test: Debian's containerd-shim-runc-v2 (containerd 1.6, task API v2) started the way
containerd starts it, with TTRPC_ADDRESS pointing at our ttrpc server (events Forward), then
driven with our ttrpc client: Connect, State of an unknown task, Shutdown."""

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
async def events_server(workdir: str) -> AsyncIterator[Server]:
    srv = Server(address=os.path.join(workdir, "pycontainerd.sock.ttrpc"))
    await srv.start([EventsService(Exchange())])
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


async def test_runc_shim_v2_connect_state_shutdown(workdir: str, events_server: Server) -> None:
    shim = peers.require_binary("containerd-shim-runc-v2")
    task_id = f"peer{os.getpid()}"
    bundle = os.path.join(workdir, NAMESPACE, task_id)
    os.makedirs(bundle, mode=0o700)
    # `start` reads config.json for its grouping annotations; nothing else of the spec is used.
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump({"ociVersion": "1.0.2", "annotations": {}}, f)
    # the long-running shim dup2s the `log` FIFO onto its stderr; containerd holds the read end
    log_path = os.path.join(bundle, "log")
    os.mkfifo(log_path, 0o700)
    log_fd = os.open(log_path, os.O_RDWR | os.O_NONBLOCK)
    grpc_address = os.path.join(workdir, "pycontainerd.sock")
    env = dict(os.environ)
    env.update(
        GOMAXPROCS="2",
        TTRPC_ADDRESS=events_server.address,
        GRPC_ADDRESS=grpc_address,
        NAMESPACE=NAMESPACE,
    )
    shim_pid = 0
    address = ""
    try:
        proc = await asyncio.create_subprocess_exec(
            shim,
            "-namespace",
            NAMESPACE,
            "-address",
            grpc_address,
            "-publish-binary",
            "/bin/true",
            "-id",
            task_id,
            "start",
            cwd=bundle,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
        assert proc.returncode == 0, f"shim start failed: {err.decode()} {_read_log(log_fd)}"
        address = _parse_start_output(out.decode())
        assert address.startswith("unix://"), out
        with open(os.path.join(bundle, "address")) as f:
            assert f.read().strip() == address

        client = await Client.connect(address, timeout=10)
        try:
            with namespaces.use(NAMESPACE):
                resp = await client.call(
                    TASK,
                    "Connect",
                    shim_pb2.ConnectRequest(id=task_id),
                    shim_pb2.ConnectResponse,
                    timeout=10,
                )
                shim_pid = resp.shim_pid
                assert shim_pid > 0 and resp.task_pid == 0
                assert not _exited(shim_pid)

                with pytest.raises(errdefs.NotFound, match="container not created"):
                    await client.call(
                        TASK,
                        "State",
                        shim_pb2.StateRequest(id="no-such-task"),
                        shim_pb2.StateResponse,
                        timeout=10,
                    )
                # several calls in flight on the one connection
                pids = await asyncio.gather(
                    *(
                        client.call(
                            TASK,
                            "Connect",
                            shim_pb2.ConnectRequest(id=task_id),
                            shim_pb2.ConnectResponse,
                        )
                        for _ in range(8)
                    )
                )
                assert {p.shim_pid for p in pids} == {shim_pid}

                # the shim may close the connection before its reply to Shutdown gets out
                with contextlib.suppress(errdefs.Unavailable):
                    reply = await client.call(
                        TASK,
                        "Shutdown",
                        shim_pb2.ShutdownRequest(id=task_id),
                        empty_pb2.Empty,
                        timeout=10,
                    )
                    assert reply == empty_pb2.Empty()
            async with asyncio.timeout(10):
                while not _exited(shim_pid):
                    await asyncio.sleep(0.05)
            async with asyncio.timeout(5):
                await client.wait_closed()
            assert client.closed
        finally:
            await client.close()
    finally:
        if shim_pid and not _exited(shim_pid):
            os.kill(shim_pid, signal.SIGKILL)
        if address:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address.removeprefix("unix://"))
        os.close(log_fd)
