"""``containerd.services.tasks.v1.Tasks`` over gRPC: a thin front-end over the local service
(the server interceptor sets the namespace and maps raised errdefs to status codes)."""

from __future__ import annotations

from typing import Any

from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2_grpc
from pycontainerd.plugins.services.tasks.local import TasksLocal


class TasksService(tasks_pb2_grpc.TasksServicer):
    def __init__(self, local: TasksLocal) -> None:
        self._local = local

    def register_grpc(self, server: Any) -> None:
        tasks_pb2_grpc.add_TasksServicer_to_server(self, server)

    async def Create(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._local.create(request)

    async def Start(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._local.start(request)

    async def Delete(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._local.delete(request)

    async def DeleteProcess(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._local.delete_process(request)

    async def Get(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._local.get(request)

    async def List(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._local.list(request)

    async def Kill(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._local.kill(request)

    async def Exec(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._local.exec(request)

    async def ResizePty(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._local.resize_pty(request)

    async def CloseIO(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._local.close_io(request)

    async def Pause(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._local.pause(request)

    async def Resume(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._local.resume(request)

    async def ListPids(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._local.list_pids(request)

    async def Checkpoint(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._local.checkpoint(request)

    async def Update(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._local.update(request)

    async def Metrics(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._local.metrics(request)

    async def Wait(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._local.wait(request)
