"""Registers the in-process event exchange, ``io.containerd.event.v1.exchange``."""

from __future__ import annotations

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types


async def _init(ic: InitContext) -> object:
    from pycontainerd.core.events.exchange import Exchange

    return Exchange()


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [Registration(type=types.EVENT, id="exchange", init=_init)]
