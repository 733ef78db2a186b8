"""Registrations of ``io.containerd.service.v1.content-service`` (the metadata store's
namespaced content store; it publishes ``/content/*`` events itself) and
``io.containerd.grpc.v1.content`` (its gRPC front-end), as containerd splits them."""

from __future__ import annotations

from typing import Any

from pycontainerd.core import errdefs
from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types

SERVICE_ID = "content-service"


async def _init_local(ic: InitContext) -> Any:
    md = ic.get_single(types.METADATA)
    if md.content_store is None:
        raise errdefs.FailedPrecondition("metadata has no content store")
    return md.content_store


async def _init_grpc(ic: InitContext) -> Any:
    from pycontainerd.plugins.services.content.service import ContentService

    return ContentService(ic.get_by_id(types.SERVICE, SERVICE_ID))


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.SERVICE, id=SERVICE_ID, requires=(types.METADATA,), init=_init_local
        ),
        Registration(type=types.GRPC, id="content", requires=(types.SERVICE,), init=_init_grpc),
    ]
