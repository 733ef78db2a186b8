"""``io.containerd.warning.v1.deprecations``: collects deprecation warnings for Server()."""

from __future__ import annotations

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types
from pycontainerd.core.warning import Service


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [Registration(type=types.WARNING, id="deprecations", init=_init)]


async def _init(ic: InitContext) -> Service:
    return Service()
