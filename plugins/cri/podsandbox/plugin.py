"""Registration of ``io.containerd.podsandbox.controller.v1.podsandbox``: pod sandboxes as pause
containers, run through the in-process services in namespace ``k8s.io``."""

from __future__ import annotations

from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types


async def _init(ic: InitContext) -> Any:
    from pycontainerd.plugins.cri.client import Client
    from pycontainerd.plugins.cri.podsandbox.controller import Controller

    runtime = ic.get_by_id(types.CRI, "runtime")
    images = ic.get_by_id(types.CRI, "images")
    client = Client.from_init_context(ic).merged(images.client)
    return Controller(runtime=runtime, images=images, client=client)


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.PODSANDBOX_CONTROLLER,
            id="podsandbox",
            requires=(
                types.EVENT,
                types.LEASE,
                types.SANDBOX_STORE,
                types.CRI,
                types.SERVICE,
            ),
            init=_init,
        )
    ]
