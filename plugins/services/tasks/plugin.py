"""Registrations of ``io.containerd.service.v1.tasks-service`` (tasks of the metadata store's
containers, run by the runtime v2 task manager) and ``io.containerd.grpc.v1.tasks``."""

from __future__ import annotations

from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types

SERVICE_ID = "tasks-service"


async def _init_local(ic: InitContext) -> Any:
    from pycontainerd.plugins.services.tasks.local import TasksLocal

    return TasksLocal(
        runtime=ic.get_by_id(types.RUNTIME_V2, "task"),
        metadata=ic.get_single(types.METADATA),
    )


async def _init_grpc(ic: InitContext) -> Any:
    from pycontainerd.plugins.services.tasks.service import TasksService

    return TasksService(ic.get_by_id(types.SERVICE, SERVICE_ID))


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.SERVICE,
            id=SERVICE_ID,
            requires=(types.EVENT, types.RUNTIME_V2, types.METADATA),
            init=_init_local,
        ),
        Registration(type=types.GRPC, id="tasks", requires=(types.SERVICE,), init=_init_grpc),
    ]
