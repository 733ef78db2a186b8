"""Registrations of ``io.containerd.service.v1.diff-service`` (the differs, in the configured
order of preference) and ``io.containerd.grpc.v1.diff`` (its gRPC front-end)."""

from __future__ import annotations

from typing import Any

import attrs

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types

SERVICE_ID = "diff-service"


@attrs.define(kw_only=True)
class Config:
    #: differ IDs in order of preference; the first that supports a request serves it
    order: list[str] = attrs.field(factory=lambda: ["walking"], metadata={"toml": "default"})
    #: fsync what Apply wrote before answering, whatever the client asked
    sync_fs: bool = False


async def _init_local(ic: InitContext) -> Any:
    from pycontainerd.plugins.services.diff.local import DiffService

    config: Config = ic.config
    differs = ic.get_by_type(types.DIFF)
    return DiffService.from_differs(differs, config.order, sync_fs=config.sync_fs)


async def _init_grpc(ic: InitContext) -> Any:
    from pycontainerd.plugins.services.diff.service import DiffServicer

    return DiffServicer(ic.get_by_id(types.SERVICE, SERVICE_ID))


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.SERVICE,
            id=SERVICE_ID,
            requires=(types.DIFF,),
            config=Config,
            init=_init_local,
        ),
        Registration(type=types.GRPC, id="diff", requires=(types.SERVICE,), init=_init_grpc),
    ]
