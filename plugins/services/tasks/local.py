"""The local tasks service (containerd ``plugins/services/tasks/local.go``): tasks of the
containers in the metadata store, run by the platform runtime. Requests and replies are the
``containerd.services.tasks.v1`` messages, so the gRPC front-end and in-process clients (CRI)
call the same methods; errors are errdefs categories; the namespace comes from the request
context.

Task events (``/tasks/create``, ``start``, ``exit``, ``delete``, ``exec-added``, ...) are
published by the shims themselves, in that order; the runtime publishes exit and delete for
shims that die.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import attrs
from google.protobuf import any_pb2, empty_pb2, timestamp_pb2

from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2
from pycontainerd.api.containerd.types import metrics_pb2
from pycontainerd.api.containerd.types.task import task_pb2
from pycontainerd.core import errdefs, filters
from pycontainerd.core.mount import Mount
from pycontainerd.core.runtime import (
    IO,
    CreateOpts,
    ExecOpts,
    Exit,
    PlatformRuntime,
    Process,
    State,
    Task,
    to_typed,
)

log = logging.getLogger(__name__)


def _ts(dt: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    if dt is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(dt)
    return ts


def _any(value: tuple[str, bytes] | None) -> any_pb2.Any | None:
    if value is None:
        return None
    return any_pb2.Any(type_url=value[0], value=value[1])


def process_to_proto(container_id: str, exec_id: str, state: State) -> task_pb2.Process:
    return task_pb2.Process(
        container_id=container_id,
        id=exec_id or container_id,
        pid=state.pid,
        status=int(state.status),  # type: ignore[arg-type]
        stdin=state.stdin,
        stdout=state.stdout,
        stderr=state.stderr,
        terminal=state.terminal,
        exit_status=state.exit_status,
        exited_at=_ts(state.exited_at),
    )


def _delete_response(id: str, exit_: Exit) -> tasks_pb2.DeleteResponse:  # noqa: A002
    return tasks_pb2.DeleteResponse(
        id=id, pid=exit_.pid, exit_status=exit_.status, exited_at=_ts(exit_.timestamp)
    )


@attrs.define(eq=False, kw_only=True)
class TasksLocal:
    """Tasks over a platform runtime and the metadata container store."""

    runtime: PlatformRuntime
    #: the metadata service (containers, snapshotters)
    metadata: Any

    # -- lookups

    async def _container(self, id: str) -> Any:  # noqa: A002
        if not id:
            raise errdefs.InvalidArgument("container id must not be empty")
        return await self.metadata.containers.get(id)

    async def _task(self, id: str) -> Task:  # noqa: A002
        container = await self._container(id)
        try:
            return await self.runtime.get(container.id)
        except errdefs.NotFound:
            raise errdefs.NotFound(f"task {id!r}: not found") from None

    async def _process(self, id: str, exec_id: str) -> tuple[Task, Process]:  # noqa: A002
        task = await self._task(id)
        if not exec_id:
            return task, task
        return task, await task.process(exec_id)

    async def _rootfs(self, request: tasks_pb2.CreateTaskRequest, container: Any) -> list[Mount]:
        if request.rootfs:
            return [
                Mount(type=m.type, source=m.source, target=m.target, options=tuple(m.options))
                for m in request.rootfs
            ]
        if container.snapshotter and container.snapshot_key:
            sn = self.metadata.snapshotter(container.snapshotter)
            if sn is None:
                raise errdefs.FailedPrecondition(
                    f"container {container.id!r}: snapshotter {container.snapshotter!r} not loaded"
                )
            return list(await sn.mounts(container.snapshot_key))
        return []

    # -- the API

    async def create(self, request: tasks_pb2.CreateTaskRequest) -> tasks_pb2.CreateTaskResponse:
        container = await self._container(request.container_id)
        if request.HasField("checkpoint") and request.checkpoint.digest:
            raise errdefs.NotImplemented_(
                "checkpoint restore is not implemented: create tasks without a checkpoint"
            )
        try:
            await self.runtime.get(container.id)
        except errdefs.NotFound:
            pass
        else:
            raise errdefs.AlreadyExists(f"task {container.id!r}: already exists")
        opts = CreateOpts(
            spec=container.spec,
            rootfs=await self._rootfs(request, container),
            io=IO(
                stdin=request.stdin,
                stdout=request.stdout,
                stderr=request.stderr,
                terminal=request.terminal,
            ),
            runtime=request.runtime_path or container.runtime.name,
            runtime_options=container.runtime.options,
            task_options=to_typed(request.options) if request.HasField("options") else None,
            sandbox_id=container.sandbox,
        )
        task = await self.runtime.create(container.id, opts)
        pid = await task.pid()
        return tasks_pb2.CreateTaskResponse(container_id=container.id, pid=pid)

    async def start(self, request: tasks_pb2.StartRequest) -> tasks_pb2.StartResponse:
        _, p = await self._process(request.container_id, request.exec_id)
        pid = await p.start()
        return tasks_pb2.StartResponse(pid=pid)

    async def delete(self, request: tasks_pb2.DeleteTaskRequest) -> tasks_pb2.DeleteResponse:
        container = await self._container(request.container_id)
        try:
            await self.runtime.get(container.id)
        except errdefs.NotFound:
            raise errdefs.NotFound(f"task {container.id!r}: not found") from None
        delete = self.runtime.delete
        kwargs: dict[str, Any] = {}
        if container.sandbox:
            kwargs["sandboxed"] = True
        exit_ = await delete(container.id, **kwargs)
        return _delete_response(container.id, exit_)

    async def delete_process(
        self, request: tasks_pb2.DeleteProcessRequest
    ) -> tasks_pb2.DeleteResponse:
        if not request.exec_id:
            raise errdefs.InvalidArgument("exec id must not be empty: use Delete for the task")
        _, p = await self._process(request.container_id, request.exec_id)
        exit_ = await p.delete()
        return _delete_response(request.exec_id, exit_)

    async def get(self, request: tasks_pb2.GetRequest) -> tasks_pb2.GetResponse:
        _, p = await self._process(request.container_id, request.exec_id)
        state = await p.state()
        return tasks_pb2.GetResponse(
            process=process_to_proto(request.container_id, request.exec_id, state)
        )

    async def list(self, request: tasks_pb2.ListTasksRequest) -> tasks_pb2.ListTasksResponse:
        resp = tasks_pb2.ListTasksResponse()
        for task in await self.runtime.tasks(False):
            try:
                state = await task.state()
            except (errdefs.NotFound, errdefs.Unavailable, errdefs.DeadlineExceeded):
                continue
            resp.tasks.append(process_to_proto(task.id, "", state))
        return resp

    async def kill(self, request: tasks_pb2.KillRequest) -> empty_pb2.Empty:
        _, p = await self._process(request.container_id, request.exec_id)
        await p.kill(request.signal, request.all)
        return empty_pb2.Empty()

    async def exec(self, request: tasks_pb2.ExecProcessRequest) -> empty_pb2.Empty:
        if not request.exec_id:
            raise errdefs.InvalidArgument("exec id cannot be empty")
        task = await self._task(request.container_id)
        await task.exec(
            request.exec_id,
            ExecOpts(
                spec=to_typed(request.spec) if request.HasField("spec") else None,
                io=IO(
                    stdin=request.stdin,
                    stdout=request.stdout,
                    stderr=request.stderr,
                    terminal=request.terminal,
                ),
            ),
        )
        return empty_pb2.Empty()

    async def resize_pty(self, request: tasks_pb2.ResizePtyRequest) -> empty_pb2.Empty:
        _, p = await self._process(request.container_id, request.exec_id)
        await p.resize_pty(request.width, request.height)
        return empty_pb2.Empty()

    async def close_io(self, request: tasks_pb2.CloseIORequest) -> empty_pb2.Empty:
        _, p = await self._process(request.container_id, request.exec_id)
        if request.stdin:
            await p.close_io()
        return empty_pb2.Empty()

    async def pause(self, request: tasks_pb2.PauseTaskRequest) -> empty_pb2.Empty:
        await (await self._task(request.container_id)).pause()
        return empty_pb2.Empty()

    async def resume(self, request: tasks_pb2.ResumeTaskRequest) -> empty_pb2.Empty:
        await (await self._task(request.container_id)).resume()
        return empty_pb2.Empty()

    async def list_pids(self, request: tasks_pb2.ListPidsRequest) -> tasks_pb2.ListPidsResponse:
        task = await self._task(request.container_id)
        resp = tasks_pb2.ListPidsResponse()
        for p in await task.pids():
            info = task_pb2.ProcessInfo(pid=p.pid)
            if p.info is not None:
                info.info.CopyFrom(_any(p.info))
            resp.processes.append(info)
        return resp

    async def checkpoint(
        self, request: tasks_pb2.CheckpointTaskRequest
    ) -> tasks_pb2.CheckpointTaskResponse:
        raise errdefs.NotImplemented_(
            f"checkpoint of task {request.container_id!r}: checkpoint/restore (CRIU) is not "
            "implemented by pycontainerd"
        )

    async def update(self, request: tasks_pb2.UpdateTaskRequest) -> empty_pb2.Empty:
        task = await self._task(request.container_id)
        resources = to_typed(request.resources) if request.HasField("resources") else None
        await task.update(resources, dict(request.annotations))
        return empty_pb2.Empty()

    async def metrics(self, request: tasks_pb2.MetricsRequest) -> tasks_pb2.MetricsResponse:
        flt = filters.parse_all(list(request.filters))
        resp = tasks_pb2.MetricsResponse()
        for task in await self.runtime.tasks(False):

            def field(path: list[str], t: Task = task) -> tuple[str, bool]:
                if not path:
                    return "", False
                if path[0] == "id":
                    return t.id, True
                if path[0] == "namespace":
                    return t.namespace, True
                return "", False

            if not flt.match(field):
                continue
            collected = datetime.datetime.now(datetime.UTC)
            try:
                stats = await task.stats()
            except errdefs.ContainerdError as e:
                if not isinstance(e, errdefs.NotFound):
                    log.error("collecting metrics for %s: %s", task.id, e)
                continue
            metric = metrics_pb2.Metric(id=task.id, timestamp=_ts(collected))
            if stats is not None:
                metric.data.CopyFrom(_any(stats))
            resp.metrics.append(metric)
        return resp

    async def wait(self, request: tasks_pb2.WaitRequest) -> tasks_pb2.WaitResponse:
        _, p = await self._process(request.container_id, request.exec_id)
        exit_ = await p.wait()
        return tasks_pb2.WaitResponse(exit_status=exit_.status, exited_at=_ts(exit_.timestamp))
