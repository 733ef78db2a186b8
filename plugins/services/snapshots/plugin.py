"""Registrations of ``io.containerd.service.v1.snapshots-service`` (the metadata store's
namespaced snapshotters, by name) and ``io.containerd.grpc.v1.snapshots`` (its gRPC
front-end), as containerd splits them."""

from __future__ import annotations

from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types

SERVICE_ID = "snapshots-service"


async def _init_local(ic: InitContext) -> Any:
    md = ic.get_single(types.METADATA)
    return dict(md.snapshotters)


async def _init_grpc(ic: InitContext) -> Any:
    from pycontainerd.plugins.services.snapshots.service import SnapshotsService

    return SnapshotsService(ic.get_by_id(types.SERVICE, SERVICE_ID))


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.SERVICE, id=SERVICE_ID, requires=(types.METADATA,), init=_init_local
        ),
        Registration(type=types.GRPC, id="snapshots", requires=(types.SERVICE,), init=_init_grpc),
    ]
