"""Registration of ``io.containerd.grpc.v1.cri``: the CRI server. It joins the runtime
(``io.containerd.cri.v1.runtime``) and image (``io.containerd.cri.v1.images``) plugins with an
in-process client pinned to ``k8s.io`` and serves ``runtime.v1.RuntimeService`` and
``runtime.v1.ImageService`` on the daemon's gRPC socket. Its config holds only the server and
streaming settings (``[plugins."io.containerd.grpc.v1.cri"]``)."""

from __future__ import annotations

import logging
from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types
from pycontainerd.plugins.cri.config import ServerConfig
from pycontainerd.plugins.cri.config_migration import migrate_cri

log = logging.getLogger(__name__)


def _optional_by_type(ic: InitContext, type_: str) -> dict[str, Any]:
    from pycontainerd.core import errdefs

    try:
        return ic.get_by_type(type_)
    except errdefs.NotFound:
        return {}


async def _init(ic: InitContext) -> Any:
    from pycontainerd.core import errdefs
    from pycontainerd.plugins.cri.client import Client
    from pycontainerd.plugins.cri.service import CRIService

    runtime = ic.get_by_id(types.CRI, "runtime")
    images = ic.get_by_id(types.CRI, "images")
    client = Client.from_init_context(ic).merged(images.client)
    for handler, rt in runtime.config.containerd.runtimes.items():
        images.update_runtime_snapshotter(handler, images.runtime_snapshotter(rt))
    controllers = {
        **_optional_by_type(ic, types.SANDBOX_CONTROLLER),
        **_optional_by_type(ic, types.PODSANDBOX_CONTROLLER),
    }
    try:
        nri = ic.get_by_id(types.NRI, "nri")
    except errdefs.ContainerdError:
        log.info("cri: NRI is not available")
        nri = None
    service = CRIService(
        runtime=runtime,
        images=images,
        client=client,
        server_config=ic.config,
        warnings=ic.get_single(types.WARNING),
        sandbox_controllers=controllers,
    )
    from pycontainerd.plugins.cri.nri import CRINRI

    service.nri = CRINRI(c=service, api=nri)
    from pycontainerd.plugins.cri.sandbox.service import SandboxManager

    service.sandboxes = SandboxManager(c=service)
    from pycontainerd.plugins.cri.container.service import ContainerManager

    service.container_manager = ContainerManager(c=service)
    ready = ic.register_readiness()
    ic.spawn(service.start(ready), "cri start")
    return service


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.GRPC,
            id="cri",
            requires=(
                types.CRI,
                types.PODSANDBOX_CONTROLLER,
                types.SANDBOX_CONTROLLER,
                types.NRI,
                types.EVENT,
                types.SERVICE,
                types.LEASE,
                types.SANDBOX_STORE,
                types.TRANSFER,
                types.WARNING,
                types.SHIM,
            ),
            config=ServerConfig,
            config_migration=migrate_cri,
            init=_init,
        )
    ]
