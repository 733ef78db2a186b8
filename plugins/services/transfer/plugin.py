"""``io.containerd.grpc.v1.transfer``: containerd.services.transfer.v1.Transfer (requires the
transfer service and the stream manager, for progress and credential streams)."""

from __future__ import annotations

from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types


async def _init(ic: InitContext) -> Any:
    from pycontainerd.plugins.services.transfer.service import TransferService

    transferrers = list(ic.get_by_type(types.TRANSFER).values())
    return TransferService(transferrers, ic.get_by_id(types.STREAMING, "manager"))


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.GRPC,
            id="transfer",
            requires=(types.TRANSFER, types.STREAMING),
            init=_init,
        )
    ]
