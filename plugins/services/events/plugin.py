"""``io.containerd.grpc.v1.events``: containerd.services.events.v1.Events on the gRPC socket,
and containerd.services.events.ttrpc.v1.Events/Forward on the ttrpc socket (shim events)."""

from __future__ import annotations

from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [Registration(type=types.GRPC, id="events", requires=(types.EVENT,), init=_init)]


async def _init(ic: InitContext) -> Any:
    from pycontainerd.plugins.services.events.service import EventsService

    return EventsService(ic.get_by_id(types.EVENT, "exchange"))
