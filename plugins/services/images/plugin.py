"""Images: the local service (``io.containerd.service.v1.images-service``) over the metadata
image store, with synchronous garbage collection on ``sync`` deletes, and its gRPC front-end
(``io.containerd.grpc.v1.images``)."""

from __future__ import annotations

from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types

SERVICE_ID = "images-service"


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.SERVICE,
            id=SERVICE_ID,
            requires=(types.METADATA, types.GC, types.WARNING),
            init=_init_local,
        ),
        Registration(type=types.GRPC, id="images", requires=(types.SERVICE,), init=_init_grpc),
    ]


async def _init_local(ic: InitContext) -> Any:
    from pycontainerd.plugins.services.images.local import Local

    return Local(
        ic.get_single(types.METADATA).images,
        ic.get_single(types.GC),
        ic.get_single(types.WARNING),
    )


async def _init_grpc(ic: InitContext) -> Any:
    from pycontainerd.plugins.services.images.service import ImagesService

    return ImagesService(ic.get_by_id(types.SERVICE, SERVICE_ID))
