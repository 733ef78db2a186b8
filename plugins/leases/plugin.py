"""Registration of ``io.containerd.lease.v1.manager``: the metadata lease manager, with
``delete(sync=True)`` waiting for a garbage collection."""

from __future__ import annotations

from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types


async def _init(ic: InitContext) -> Any:
    from pycontainerd.plugins.leases.manager import Manager

    md = ic.get_single(types.METADATA)
    gc = ic.get_single(types.GC)
    return Manager(md.leases, gc)


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.LEASE, id="manager", requires=(types.METADATA, types.GC), init=_init
        )
    ]
