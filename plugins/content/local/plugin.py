"""Registration of the local content store: ``io.containerd.content.v1.content``."""

from __future__ import annotations

from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types


async def _init(ic: InitContext) -> Any:
    from pycontainerd.plugins.content.local.store import LocalStore

    root = ic.root
    ic.meta.exports["root"] = root
    return await LocalStore.open(root)


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [Registration(type=types.CONTENT, id="content", init=_init)]
