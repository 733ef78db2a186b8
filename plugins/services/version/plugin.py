"""``io.containerd.grpc.v1.version``: containerd.services.version.v1.Version."""

from __future__ import annotations

from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [Registration(type=types.GRPC, id="version", init=_init)]


async def _init(ic: InitContext) -> Any:
    from pycontainerd.plugins.services.version.service import VersionService

    return VersionService()
