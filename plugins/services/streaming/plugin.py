"""``io.containerd.grpc.v1.streaming``: containerd.services.streaming.v1.Streaming."""

from __future__ import annotations

from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types


async def _init(ic: InitContext) -> Any:
    from pycontainerd.plugins.services.streaming.service import StreamingService

    return StreamingService(ic.get_by_id(types.STREAMING, "manager"))


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [Registration(type=types.GRPC, id="streaming", requires=(types.STREAMING,), init=_init)]
