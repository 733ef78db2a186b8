"""Registration of ``io.containerd.streaming.v1.manager``: the registry of client streams
(progress, credentials, archive bytes) that transfer requests refer to by id."""

from __future__ import annotations

from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types


async def _init(ic: InitContext) -> Any:
    from pycontainerd.core.transfer.streaming import StreamManager

    return StreamManager()


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(type=types.STREAMING, id="manager", requires=(types.METADATA,), init=_init)
    ]
