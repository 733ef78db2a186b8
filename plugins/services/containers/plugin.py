"""Containers: the local service (``io.containerd.service.v1.containers-service``) over the
metadata container store, and its gRPC front-end (``io.containerd.grpc.v1.containers``)."""

from __future__ import annotations

from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types

SERVICE_ID = "containers-service"


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.SERVICE,
            id=SERVICE_ID,
            requires=(types.EVENT, types.METADATA),
            init=_init_local,
        ),
        Registration(type=types.GRPC, id="containers", requires=(types.SERVICE,), init=_init_grpc),
    ]


async def _init_local(ic: InitContext) -> Any:
    from pycontainerd.plugins.services.containers.local import Local

    return Local(ic.get_single(types.METADATA).containers)


async def _init_grpc(ic: InitContext) -> Any:
    from pycontainerd.plugins.services.containers.service import ContainersService

    return ContainersService(ic.get_by_id(types.SERVICE, SERVICE_ID))
