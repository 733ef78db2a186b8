"""The tasks service over a real gRPC server: containers from the metadata store (rootfs from
the request, or from the container's snapshot), tasks run by the runtime v2 task manager with
Debian's containerd-shim-runc-v2 and runc, and the status codes of bad requests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tarfile
import tempfile
from collections.abc import AsyncIterator, Iterator

import grpc
import images
import peers
import pytest
from google.protobuf import any_pb2

from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from pycontainerd.api.containerd.types import mount_pb2
from pycontainerd.api.containerd.types.task import task_pb2
from pycontainerd.core import namespaces
from pycontainerd.core.events.exchange import Exchange
from pycontainerd.core.metadata.containers import Container, Runtime
from pycontainerd.core.metadata.metadata import Metadata
from pycontainerd.core.runtime import cio
from pycontainerd.core.runtime import spec as oci
from pycontainerd.core.server.grpcserver import GRPCServer
from pycontainerd.core.ttrpc import Server
from pycontainerd.plugins.runtimes.v2.manager import ShimManager, TaskManager
from pycontainerd.plugins.services.events.service import EventsService
from pycontainerd.plugins.services.tasks.local import TasksLocal
from pycontainerd.plugins.services.tasks.service import TasksService
from pycontainerd.plugins.snapshotters.native.snapshotter import NativeSnapshotter

pytestmark = [pytest.mark.root, pytest.mark.integration]

NS = "taskssvc"
MD = (("containerd-namespace", NS),)


@pytest.fixture(scope="module")
def rootfs(busybox: images.Image) -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="tsvcrootfs", dir="/tmp")
    try:
        for layer in busybox.layers:
            with tarfile.open(busybox.blob_path(layer.descriptor.digest), "r:*") as tf:
                images.extract_all(tf, d, trusted=True)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Env:
    def __init__(self, workdir: str, md: Metadata, stub: tasks_pb2_grpc.TasksStub, rootfs: str):
        self.workdir = workdir
        self.md = md
        self.stub = stub
        self.rootfs = rootfs

    async def container(self, id: str, args: list[str], *, snapshot: bool = False) -> None:  # noqa: A002
        snapshotter, key = "", ""
        if snapshot:
            sn = self.md.snapshotter("native")
            mounts = await sn.prepare(id, "")
            await asyncio.to_thread(
                shutil.copytree, self.rootfs, mounts[0].source, symlinks=True, dirs_exist_ok=True
            )
            snapshotter, key = "native", id
        await self.md.containers.create(
            Container(
                id=id,
                runtime=Runtime(name="io.containerd.runc.v2"),
                spec=oci.to_any(oci.default_spec(NS, id, args=args)),
                snapshotter=snapshotter,
                snapshot_key=key,
            )
        )

    def rootfs_mounts(self) -> list[mount_pb2.Mount]:
        return [mount_pb2.Mount(type="bind", source=self.rootfs, options=["rbind", "rw"])]


@pytest.fixture
async def env(rootfs: str) -> AsyncIterator[Env]:
    for name in ("containerd-shim-runc-v2", "runc"):
        peers.require_binary(name)
    workdir = tempfile.mkdtemp(prefix="tsvc", dir="/tmp")
    exchange = Exchange()
    ttrpc = Server(address=os.path.join(workdir, "d.sock.ttrpc"))
    await ttrpc.start([EventsService(exchange)])
    sn = await NativeSnapshotter.open(os.path.join(workdir, "native"))
    md = await Metadata.open(os.path.join(workdir, "meta.db"), snapshotters={"native": sn})
    path = ":".join(filter(None, [os.environ.get("PATH"), *peers.SBIN_DIRS]))
    shims = ShimManager(
        address=os.path.join(workdir, "d.sock"),
        ttrpc_address=ttrpc.address,
        events=exchange,
        containers=md.containers,
        env={"PATH": path},
    )
    tm = TaskManager(
        root=os.path.join(workdir, "root"), state=os.path.join(workdir, "state"), shims=shims
    )
    server = GRPCServer(address=os.path.join(workdir, "d.sock"))
    await server.start([TasksService(TasksLocal(runtime=tm, metadata=md))])
    channel = grpc.aio.insecure_channel(f"unix:{server.address}")
    try:
        with namespaces.use(NS):
            yield Env(workdir, md, tasks_pb2_grpc.TasksStub(channel), rootfs)
    finally:
        with namespaces.use(NS):
            for t in await tm.tasks(all=True):
                with contextlib.suppress(Exception):
                    await t.kill(signal.SIGKILL)
                    async with asyncio.timeout(10):
                        await t.wait()
                with contextlib.suppress(Exception):
                    await tm.delete(t.id)
            await shims.close()
            with contextlib.suppress(Exception):
                await sn.remove("snap")
        await channel.close()
        await server.stop(0)
        await ttrpc.stop(0)
        await md.close()
        shutil.rmtree(workdir, ignore_errors=True)


async def _code(coro) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await coro
    return e.value.code()


async def test_run_a_task_from_the_containers_snapshot(env: Env) -> None:
    await env.container("snap", ["sh", "-c", "echo from-snapshot; exit 4"], snapshot=True)
    fifos = cio.new_fifo_set_in_dir(os.path.join(env.workdir, "fifo"), "snap")
    cap = await cio.Capture(fifos).start()
    created = await env.stub.Create(
        tasks_pb2.CreateTaskRequest(container_id="snap", stdout=fifos.stdout, stderr=fifos.stderr),
        metadata=MD,
    )
    assert created.container_id == "snap" and created.pid > 0
    got = await env.stub.Get(tasks_pb2.GetRequest(container_id="snap"), metadata=MD)
    assert got.process.status == task_pb2.CREATED and got.process.pid == created.pid
    wait = asyncio.ensure_future(
        env.stub.Wait(tasks_pb2.WaitRequest(container_id="snap"), metadata=MD)
    )
    started = await env.stub.Start(tasks_pb2.StartRequest(container_id="snap"), metadata=MD)
    assert started.pid == created.pid
    assert (await wait).exit_status == 4
    await cap.wait(timeout=10)
    assert bytes(cap.stdout) == b"from-snapshot\n"
    await cap.close()
    deleted = await env.stub.Delete(tasks_pb2.DeleteTaskRequest(container_id="snap"), metadata=MD)
    assert (deleted.pid, deleted.exit_status) == (created.pid, 4)
    listed = await env.stub.List(tasks_pb2.ListTasksRequest(), metadata=MD)
    assert list(listed.tasks) == []


async def test_running_task_api_and_error_codes(env: Env) -> None:
    s = env.stub
    assert (
        await _code(s.Create(tasks_pb2.CreateTaskRequest(container_id="nope"), metadata=MD))
        == grpc.StatusCode.NOT_FOUND
    )
    await env.container("busy", ["sleep", "1000"])
    req = tasks_pb2.CreateTaskRequest(container_id="busy", rootfs=env.rootfs_mounts())
    await s.Create(req, metadata=MD)
    assert await _code(s.Create(req, metadata=MD)) == grpc.StatusCode.ALREADY_EXISTS
    pid = (await s.Start(tasks_pb2.StartRequest(container_id="busy"), metadata=MD)).pid

    listed = await s.List(tasks_pb2.ListTasksRequest(), metadata=MD)
    assert [(t.id, t.pid, t.status) for t in listed.tasks] == [("busy", pid, task_pb2.RUNNING)]

    pids = await s.ListPids(tasks_pb2.ListPidsRequest(container_id="busy"), metadata=MD)
    assert pid in [p.pid for p in pids.processes]

    await s.Pause(tasks_pb2.PauseTaskRequest(container_id="busy"), metadata=MD)
    got = await s.Get(tasks_pb2.GetRequest(container_id="busy"), metadata=MD)
    assert got.process.status == task_pb2.PAUSED
    await s.Resume(tasks_pb2.ResumeTaskRequest(container_id="busy"), metadata=MD)

    metrics = await s.Metrics(tasks_pb2.MetricsRequest(filters=['id=="busy"']), metadata=MD)
    assert [m.id for m in metrics.metrics] == ["busy"]
    assert metrics.metrics[0].data.type_url.startswith("io.containerd.cgroups.")
    none = await s.Metrics(tasks_pb2.MetricsRequest(filters=['id=="other"']), metadata=MD)
    assert list(none.metrics) == []

    # exec
    proc = oci.default_spec(NS, "busy", args=["sh", "-c", "exit 6"])["process"]
    type_url, value = oci.to_any(proc, oci.PROCESS_TYPE_URL)
    assert (
        await _code(s.Exec(tasks_pb2.ExecProcessRequest(container_id="busy"), metadata=MD))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    await s.Exec(
        tasks_pb2.ExecProcessRequest(
            container_id="busy", exec_id="e1", spec=any_pb2.Any(type_url=type_url, value=value)
        ),
        metadata=MD,
    )
    await s.Start(tasks_pb2.StartRequest(container_id="busy", exec_id="e1"), metadata=MD)
    w = await s.Wait(tasks_pb2.WaitRequest(container_id="busy", exec_id="e1"), metadata=MD)
    assert w.exit_status == 6
    d = await s.DeleteProcess(
        tasks_pb2.DeleteProcessRequest(container_id="busy", exec_id="e1"), metadata=MD
    )
    assert (d.id, d.exit_status) == ("e1", 6)
    assert (
        await _code(s.Get(tasks_pb2.GetRequest(container_id="busy", exec_id="e1"), metadata=MD))
        == grpc.StatusCode.NOT_FOUND
    )

    assert (
        await _code(s.Checkpoint(tasks_pb2.CheckpointTaskRequest(container_id="busy"), metadata=MD))
        == grpc.StatusCode.UNIMPLEMENTED
    )
    assert (
        await _code(s.Delete(tasks_pb2.DeleteTaskRequest(container_id="busy"), metadata=MD))
        == grpc.StatusCode.FAILED_PRECONDITION
    )

    await s.Kill(tasks_pb2.KillRequest(container_id="busy", signal=9, all=True), metadata=MD)
    w = await s.Wait(tasks_pb2.WaitRequest(container_id="busy"), metadata=MD)
    assert w.exit_status == 137
    await s.Delete(tasks_pb2.DeleteTaskRequest(container_id="busy"), metadata=MD)
    assert (
        await _code(s.Get(tasks_pb2.GetRequest(container_id="busy"), metadata=MD))
        == grpc.StatusCode.NOT_FOUND
    )
    assert (
        await _code(s.Delete(tasks_pb2.DeleteTaskRequest(container_id="busy"), metadata=MD))
        == grpc.StatusCode.NOT_FOUND
    )
    assert (
        await _code(s.List(tasks_pb2.ListTasksRequest())) == grpc.StatusCode.FAILED_PRECONDITION
    )  # no namespace
