"""The CRI service object (containerd's ``criService``): what every CRI handler gets as ``c``.

It holds the runtime plugin (config, CRI root/state dirs), the image service, the in-process
client pinned to ``k8s.io``, the server config, and the other plugins the CRI uses (sandbox
controllers, NRI, warnings, events). The pod sandbox and container code adds its stores and
helpers here as fields, and its start-up work (recovery, event monitor) to :meth:`start`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.plugins.cri import constants
from pycontainerd.plugins.cri.client import Client
from pycontainerd.plugins.cri.config import RuntimeConfig, ServerConfig
from pycontainerd.plugins.cri.images.service import CRIImageService
from pycontainerd.plugins.cri.runtime.features import HandlerFeatures
from pycontainerd.plugins.cri.runtime.runtime import CRIRuntime

log = logging.getLogger(__name__)


@attrs.define(eq=False, kw_only=True)
class NetworkStatus:
    ready: bool
    message: str = ""
    #: the loaded network configs (for ``Status`` verbose info)
    networks: list[Any] = attrs.Factory(list)


@attrs.define(eq=False, kw_only=True)
class CRIService:
    runtime: CRIRuntime
    images: CRIImageService
    client: Client
    server_config: ServerConfig = attrs.Factory(ServerConfig)
    warnings: Any = None
    #: sandboxer name -> controller (``io.containerd.sandbox.controller.v1`` and
    #: ``io.containerd.podsandbox.controller.v1`` instances)
    sandbox_controllers: dict[str, Any] = attrs.Factory(dict)
    #: the CRI's NRI call points (``plugins.cri.nri.CRINRI``); None: no NRI
    nri: Any = None
    #: pod CIDRs kubelet handed over in UpdateRuntimeConfig
    pod_cidrs: list[str] = attrs.Factory(list)
    #: runtime handler -> features (None: unknown); filled on first use
    handler_features: dict[str, HandlerFeatures | None] | None = None
    #: pod sandboxes (``plugins.cri.sandbox.service.SandboxManager``): store, events, hooks
    sandboxes: Any = None
    #: containers (``plugins.cri.container.service.ContainerManager``)
    container_manager: Any = None
    #: the streaming server (exec/attach/port-forward URLs), once started
    stream_server: Any = None
    _tasks: list[asyncio.Task[Any]] = attrs.Factory(list)
    _closed: bool = False

    @property
    def config(self) -> RuntimeConfig:
        return self.runtime.config

    # --- lifecycle ---------------------------------------------------------------------

    def register_grpc(self, server: Any) -> None:
        from pycontainerd.plugins.cri import server as cri_server

        cri_server.register(server, self)

    async def start(self, ready: Any) -> None:
        """Background start-up (spawned by the plugin): follow image record changes in
        ``k8s.io``, then report ready."""
        if self.client.events is not None:
            self._tasks.append(
                asyncio.get_running_loop().create_task(
                    self._follow_images(), name="cri image events"
                )
            )
        if self.sandboxes is not None:
            await self.sandboxes.start()
        if self.container_manager is not None:
            await self.container_manager.startup()
        if self.nri is not None and hasattr(self.nri, "start"):
            await self.nri.start()
        ready()

    async def _follow_images(self) -> None:
        """Keep the CRI image index in line with image records others change (``ctr -n k8s.io
        images import|rm``): containerd's CRI event monitor does this for image events."""
        sub = self.client.events.subscribe(
            f'namespace=="{constants.K8S_NAMESPACE}",topic~="^/images/"'
        )
        async with sub:
            async for envelope in sub:
                name, ok = envelope.field(["event", "name"])
                if not ok:
                    continue
                try:
                    await self.images.update_image(name)
                except errdefs.ContainerdError as e:
                    log.warning(
                        "cri: failed to update image %s after %s: %s", name, envelope.topic, e
                    )
                except Exception:  # noqa: BLE001 - the follower must outlive one bad event
                    log.exception("cri: failed to update image %s", name)

    async def close(self) -> None:
        self._closed = True
        if self.nri is not None and hasattr(self.nri, "close"):
            await self.nri.close()
        if self.container_manager is not None:
            await self.container_manager.close()
        if self.sandboxes is not None:
            await self.sandboxes.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # --- helpers shared by handlers ----------------------------------------------------

    async def runtime_handler_features(self) -> dict[str, HandlerFeatures | None]:
        """Per handler, what it supports (asked once)."""
        if self.handler_features is None:
            from pycontainerd.plugins.cri.runtime.features import introspect

            found: dict[str, HandlerFeatures | None] = {}
            for name, rt in self.config.containerd.runtimes.items():
                found[name] = await introspect(rt)
            self.handler_features = found
        return self.handler_features

    async def network_status(self) -> NetworkStatus:
        """Whether the default CNI network is ready: the status of the pod sandbox code's
        own CNI instance (the one RunPodSandbox uses, reloaded when its conf dir changed),
        else whether a conflist is in ``cni.conf_dir``."""
        from pycontainerd.core.cni.config import load_conf_dir

        if self.sandboxes is not None:
            net = self.sandboxes.network_plugin("")
            await asyncio.to_thread(net.reload_if_changed)
            try:
                net.status()
            except errdefs.FailedPrecondition as e:
                return NetworkStatus(ready=False, message=str(e))
            return NetworkStatus(
                ready=True, networks=[n.config for n in net.networks if n.config.source]
            )

        cni = self.config.cni
        try:
            networks = await asyncio.to_thread(load_conf_dir, cni.conf_dir, cni.max_conf_num)
        except (errdefs.ContainerdError, OSError) as e:
            return NetworkStatus(ready=False, message=str(e))
        if not networks:
            return NetworkStatus(ready=False, message="cni plugin not initialized")
        return NetworkStatus(ready=True, networks=networks)
