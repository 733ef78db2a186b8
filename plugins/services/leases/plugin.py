"""``io.containerd.grpc.v1.leases``: containerd.services.leases.v1.Leases in front of the
lease manager (``io.containerd.lease.v1.manager``, which is the local service)."""

from __future__ import annotations

from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [Registration(type=types.GRPC, id="leases", requires=(types.LEASE,), init=_init)]


async def _init(ic: InitContext) -> Any:
    from pycontainerd.plugins.services.leases.service import LeasesService

    return LeasesService(ic.get_by_id(types.LEASE, "manager"))
