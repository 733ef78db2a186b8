"""Write NRI plugins in Python: the plugin side of the NRI protocol.

A plugin is any object with handler methods named after the events (all optional, plain or
``async``)::

    configure(config, runtime_name, runtime_version) -> event mask | None
    synchronize(pods, containers) -> [ContainerUpdate] | None
    shutdown()
    run_pod_sandbox(pod) / stop_pod_sandbox(pod) / remove_pod_sandbox(pod)
    update_pod_sandbox(pod, overhead, resources) / post_update_pod_sandbox(pod)
    create_container(pod, container) -> ContainerAdjustment | (adjustment, [updates]) | None
    post_create_container / start_container / post_start_container(pod, container)
    update_container(pod, container, resources) -> [ContainerUpdate] | None
    post_update_container(pod, container) / remove_container(pod, container)
    stop_container(pod, container) -> [ContainerUpdate] | None
    validate_container_adjustment(request) -> None (accept) | reason (reject) | response

Messages are NRI protos (:data:`pycontainerd.core.nri.api.pb`). The stub subscribes to the
events the object has handlers for (or to ``events``, a mask or names), connects to the NRI
socket (or uses the socket the runtime passed as fd ``$NRI_PLUGIN_SOCKET`` when it launched
us), registers, answers Configure and Synchronize (collecting split Synchronize requests) and
then serves events until the runtime goes away::

    asyncio.run(Stub(MyPlugin(), name="my-plugin", index="10").run())
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
from typing import Any

from pycontainerd.core import errdefs
from pycontainerd.core.nri import api, mux
from pycontainerd.core.nri.api import pb
from pycontainerd.core.ttrpc import Client, Server

log = logging.getLogger(__name__)

#: handler method -> event
_HANDLERS = {
    "run_pod_sandbox": pb.RUN_POD_SANDBOX,
    "stop_pod_sandbox": pb.STOP_POD_SANDBOX,
    "remove_pod_sandbox": pb.REMOVE_POD_SANDBOX,
    "update_pod_sandbox": pb.UPDATE_POD_SANDBOX,
    "post_update_pod_sandbox": pb.POST_UPDATE_POD_SANDBOX,
    "create_container": pb.CREATE_CONTAINER,
    "post_create_container": pb.POST_CREATE_CONTAINER,
    "start_container": pb.START_CONTAINER,
    "post_start_container": pb.POST_START_CONTAINER,
    "update_container": pb.UPDATE_CONTAINER,
    "post_update_container": pb.POST_UPDATE_CONTAINER,
    "stop_container": pb.STOP_CONTAINER,
    "remove_container": pb.REMOVE_CONTAINER,
    "validate_container_adjustment": pb.VALIDATE_CONTAINER_ADJUSTMENT,
}
_BY_EVENT = {ev: h for h, ev in _HANDLERS.items()}


async def _call(fn: Any, *args: Any) -> Any:
    res = fn(*args)
    if inspect.isawaitable(res):
        res = await res
    return res


class Stub:
    def __init__(
        self,
        plugin: object,
        *,
        name: str = "",
        index: str = "",
        socket_path: str = api.DEFAULT_SOCKET_PATH,
        events: int | str | None = None,
    ) -> None:
        self.plugin = plugin
        self.name = os.environ.get(api.PLUGIN_NAME_ENV) or name
        self.index = os.environ.get(api.PLUGIN_IDX_ENV) or index
        api.check_plugin_name(self.name)
        api.check_plugin_index(self.index)
        self.socket_path = socket_path
        handled = api.event_mask(*(ev for h, ev in _HANDLERS.items() if hasattr(plugin, h)))
        if events is None:
            self.events = handled
        else:
            self.events = events if isinstance(events, int) else api.event_mask(events)
        self.registration_timeout = api.DEFAULT_REGISTRATION_TIMEOUT
        self.request_timeout = api.DEFAULT_REQUEST_TIMEOUT
        self.runtime_name = ""
        self.runtime_version = ""
        self.runtime_nri_version = ""
        self._mux: mux.Mux | None = None
        self._client: Client | None = None
        self._server: Server | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._configured: asyncio.Future[None] | None = None
        self._sync_pods: list[pb.PodSandbox] = []
        self._sync_ctrs: list[pb.Container] = []

    @property
    def full_name(self) -> str:
        return f"{self.index}-{self.name}"

    # -- connection

    def _connect(self) -> socket.socket:
        env = os.environ.get(api.PLUGIN_SOCKET_ENV)
        if env:
            try:
                fd = int(env)
            except ValueError as e:
                raise errdefs.InvalidArgument(
                    f"invalid socket in environment ({api.PLUGIN_SOCKET_ENV}={env!r})"
                ) from e
            return socket.socket(fileno=fd)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket_path)
        except OSError as e:
            sock.close()
            raise errdefs.Unavailable(f"failed to connect to NRI service: {e}") from e
        return sock

    async def start(self, sock: socket.socket | None = None) -> None:
        """Connect, register and wait for the runtime's Configure."""
        loop = asyncio.get_running_loop()
        trunk = await mux.Mux.from_socket(sock if sock is not None else self._connect())
        self._mux = trunk
        self._configured = loop.create_future()
        sreader, swriter = trunk.open(mux.PLUGIN_SERVICE_CONN)
        creader, cwriter = trunk.open(mux.RUNTIME_SERVICE_CONN)
        self._server = Server(require_same_user=False)
        self._server.register_service(pb.DESCRIPTOR.services_by_name["Plugin"], _Service(self))
        self._serve_task = loop.create_task(
            self._server.serve_connection(sreader, swriter), name="nri stub"
        )
        self._client = Client(creader, cwriter)
        trunk.start()
        await self._client.call(
            api.RUNTIME_SERVICE,
            "RegisterPlugin",
            pb.RegisterPluginRequest(plugin_name=self.name, plugin_idx=self.index),
            pb.Empty,
            timeout=self.registration_timeout,
        )
        async with asyncio.timeout(self.registration_timeout + self.request_timeout):
            await self._configured
        log.info("nri stub: plugin %s started", self.full_name)

    async def wait(self) -> None:
        """Until the runtime closes the connection."""
        if self._mux is not None:
            await self._mux.wait_closed()

    async def run(self) -> None:
        await self.start()
        try:
            await self.wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._mux is not None:
            await self._mux.close()
        if self._serve_task is not None:
            self._serve_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._serve_task

    async def update_containers(
        self,
        updates: list[pb.ContainerUpdate],
        evictions: list[pb.ContainerEviction] = (),  # type: ignore[assignment]
    ) -> list[pb.ContainerUpdate]:
        """Unsolicited updates; returns the ones that failed."""
        if self._client is None:
            raise errdefs.FailedPrecondition("nri stub: not started")
        rpl = await self._client.call(
            api.RUNTIME_SERVICE,
            "UpdateContainers",
            pb.UpdateContainersRequest(update=updates, evict=list(evictions)),
            pb.UpdateContainersResponse,
            timeout=self.request_timeout,
        )
        return list(rpl.failed)

    def handler(self, name: str) -> Any:
        return getattr(self.plugin, name, None)


class _Service:
    """The Plugin ttrpc service, dispatching to the plugin object."""

    def __init__(self, stub: Stub) -> None:
        self.stub = stub

    async def Configure(self, req: pb.ConfigureRequest) -> pb.ConfigureResponse:  # noqa: N802
        s = self.stub
        s.runtime_name, s.runtime_version = req.runtime_name, req.runtime_version
        s.runtime_nri_version = req.NRI_version
        if req.registration_timeout:
            s.registration_timeout = req.registration_timeout / 1000
        if req.request_timeout:
            s.request_timeout = req.request_timeout / 1000
        try:
            events = s.events
            fn = s.handler("configure")
            if fn is not None:
                got = await _call(fn, req.config, req.runtime_name, req.runtime_version)
                if got:
                    events = got if isinstance(got, int) else api.event_mask(got)
            if extra := events & ~s.events:
                raise errdefs.InvalidArgument(f"plugin subscribed for unhandled events 0x{extra:x}")
        except BaseException as e:
            if s._configured is not None and not s._configured.done():
                s._configured.set_exception(e if isinstance(e, Exception) else RuntimeError(e))
            raise
        if s._configured is not None and not s._configured.done():
            s._configured.set_result(None)
        return pb.ConfigureResponse(events=events)

    async def Synchronize(self, req: pb.SynchronizeRequest) -> pb.SynchronizeResponse:  # noqa: N802
        s = self.stub
        fn = s.handler("synchronize")
        if fn is None:
            return pb.SynchronizeResponse(more=req.more)
        s._sync_pods.extend(req.pods)
        s._sync_ctrs.extend(req.containers)
        if req.more:
            return pb.SynchronizeResponse(more=True)
        pods, ctrs = s._sync_pods, s._sync_ctrs
        s._sync_pods, s._sync_ctrs = [], []
        updates = await _call(fn, pods, ctrs)
        return pb.SynchronizeResponse(update=list(updates or []))

    async def Shutdown(self, req: pb.Empty) -> pb.Empty:  # noqa: N802
        fn = self.stub.handler("shutdown")
        if fn is not None:
            await _call(fn)
        return pb.Empty()

    async def _event(self, name: str, *args: Any) -> Any:
        fn = self.stub.handler(name)
        return None if fn is None else await _call(fn, *args)

    async def RunPodSandbox(self, req: Any) -> Any:  # noqa: N802
        await self._event("run_pod_sandbox", req.pod)
        return pb.RunPodSandboxResponse()

    async def StopPodSandbox(self, req: Any) -> Any:  # noqa: N802
        await self._event("stop_pod_sandbox", req.pod)
        return pb.StopPodSandboxResponse()

    async def RemovePodSandbox(self, req: Any) -> Any:  # noqa: N802
        await self._event("remove_pod_sandbox", req.pod)
        return pb.RemovePodSandboxResponse()

    async def UpdatePodSandbox(self, req: Any) -> Any:  # noqa: N802
        await self._event(
            "update_pod_sandbox", req.pod, req.overhead_linux_resources, req.linux_resources
        )
        return pb.UpdatePodSandboxResponse()

    async def PostUpdatePodSandbox(self, req: Any) -> Any:  # noqa: N802
        await self._event("post_update_pod_sandbox", req.pod)
        return pb.PostUpdatePodSandboxResponse()

    async def ValidateContainerAdjustment(  # noqa: N802
        self, req: pb.ValidateContainerAdjustmentRequest
    ) -> pb.ValidateContainerAdjustmentResponse:
        res = await self._event("validate_container_adjustment", req)
        if isinstance(res, pb.ValidateContainerAdjustmentResponse):
            return res
        if res:
            return pb.ValidateContainerAdjustmentResponse(reject=True, reason=str(res))
        return pb.ValidateContainerAdjustmentResponse()

    async def CreateContainer(self, req: Any) -> pb.CreateContainerResponse:  # noqa: N802
        res = await self._event("create_container", req.pod, req.container)
        if res is None:
            return pb.CreateContainerResponse()
        if isinstance(res, pb.CreateContainerResponse):
            return res
        if isinstance(res, pb.ContainerAdjustment):
            return pb.CreateContainerResponse(adjust=res)
        adjust, updates = res
        rpl = pb.CreateContainerResponse(update=list(updates or []))
        if adjust is not None:
            rpl.adjust.CopyFrom(adjust)
        return rpl

    async def PostCreateContainer(self, req: Any) -> Any:  # noqa: N802
        await self._event("post_create_container", req.pod, req.container)
        return pb.PostCreateContainerResponse()

    async def StartContainer(self, req: Any) -> Any:  # noqa: N802
        await self._event("start_container", req.pod, req.container)
        return pb.StartContainerResponse()

    async def PostStartContainer(self, req: Any) -> Any:  # noqa: N802
        await self._event("post_start_container", req.pod, req.container)
        return pb.PostStartContainerResponse()

    async def UpdateContainer(self, req: Any) -> pb.UpdateContainerResponse:  # noqa: N802
        res = await self._event("update_container", req.pod, req.container, req.linux_resources)
        return pb.UpdateContainerResponse(update=list(res or []))

    async def PostUpdateContainer(self, req: Any) -> Any:  # noqa: N802
        await self._event("post_update_container", req.pod, req.container)
        return pb.PostUpdateContainerResponse()

    async def StopContainer(self, req: Any) -> pb.StopContainerResponse:  # noqa: N802
        res = await self._event("stop_container", req.pod, req.container)
        return pb.StopContainerResponse(update=list(res or []))

    async def RemoveContainer(self, req: Any) -> Any:  # noqa: N802
        await self._event("remove_container", req.pod, req.container)
        return pb.RemoveContainerResponse()

    async def StateChange(self, req: pb.StateChangeEvent) -> pb.Empty:  # noqa: N802
        name = _BY_EVENT.get(req.event)
        if name is not None:
            if req.event in (pb.RUN_POD_SANDBOX, pb.STOP_POD_SANDBOX, pb.REMOVE_POD_SANDBOX):
                await self._event(name, req.pod)
            else:
                await self._event(name, req.pod, req.container)
        return pb.Empty()
