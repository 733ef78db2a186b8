"""``io.containerd.grpc.v1.healthcheck``: grpc.health.v1.Health."""

from __future__ import annotations

from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [Registration(type=types.GRPC, id="healthcheck", init=_init)]


async def _init(ic: InitContext) -> Any:
    from pycontainerd.plugins.services.healthcheck.service import HealthService

    return HealthService()
