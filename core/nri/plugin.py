"""The runtime's side of one NRI plugin: an external one that connected to the NRI socket, a
pre-installed one we launched from the plugin directory, or in-process Python hooks.

For ttrpc plugins the socket is multiplexed (:mod:`.mux`): we are the ttrpc client of the
plugin's ``Plugin`` service on conn 1 and serve ``Runtime`` (RegisterPlugin,
UpdateContainers) on conn 2. Every request is bounded by the request timeout; a plugin that
times out or whose connection breaks is closed (and, if we launched it, killed and reaped)
and the event goes on without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.nri import api, mux
from pycontainerd.core.nri.api import pb
from pycontainerd.core.nri.metrics import NRIMetrics
from pycontainerd.core.ttrpc import Client, Server

log = logging.getLogger(__name__)

UpdateFn = Callable[[list[pb.ContainerUpdate]], Awaitable[list[pb.ContainerUpdate]]]

#: Errors after which the plugin is dropped: it is gone, or did not answer in time.
_FATAL = (errdefs.DeadlineExceeded, errdefs.Unavailable, errdefs.Canceled, errdefs.DataLoss)


class PluginClosed(errdefs.Unavailable):
    pass


@attrs.define(eq=False, kw_only=True)
class Timeouts:
    registration: float = api.DEFAULT_REGISTRATION_TIMEOUT
    request: float = api.DEFAULT_REQUEST_TIMEOUT

    @property
    def sync(self) -> float:
        """The bound on a whole (possibly split) Synchronize. Synchronize is the last step of
        registration, so a plugin gets the longer of the two timeouts for it (containerd gives
        it the request timeout only, and drops plugins that take a moment to reconcile)."""
        return max(self.registration, self.request)


@attrs.define(eq=False, kw_only=True)
class Plugin:
    """Base: identity, subscription and state shared by every kind of plugin."""

    kind: str  # "external", "pre-installed", "builtin"
    index: str = ""
    base: str = ""
    config: str = ""
    events: int = 0
    closed: bool = False
    timeouts: Timeouts = attrs.Factory(Timeouts)
    metrics: NRIMetrics | None = None

    @property
    def name(self) -> str:
        return f"{self.index or '??'}-{self.base or 'plugin'}"

    @property
    def sort_key(self) -> tuple[str, str]:
        return (self.index, self.base)

    @contextlib.contextmanager
    def recorded(self, method: str) -> Iterator[None]:
        """Count one invocation of ``method`` (its outcome and latency) in the metrics."""
        start = time.monotonic()
        err: BaseException | None = None
        try:
            yield
        except BaseException as e:
            err = e
            raise
        finally:
            if self.metrics is not None:
                self.metrics.invocation(self.name, method, time.monotonic() - start, err)

    def subscribed(self, event: int) -> bool:
        return api.is_set(self.events, event)

    def set_events(self, mask: int) -> None:
        if mask == 0:
            mask = api.VALID_EVENTS
        elif extra := mask & ~api.VALID_EVENTS:
            raise errdefs.InvalidArgument(f"invalid plugin events: 0x{extra:x}")
        self.events = mask

    async def start(self, runtime_name: str, runtime_version: str) -> None:
        raise NotImplementedError

    async def request(self, event: int, method: str, req: Any, resp_cls: Any) -> Any:
        """Deliver an event the plugin subscribed to; None if it did not, or was dropped."""
        raise NotImplementedError

    async def synchronize(
        self, pods: list[pb.PodSandbox], containers: list[pb.Container], *, chunk_limit: int
    ) -> list[pb.ContainerUpdate]:
        raise NotImplementedError

    async def shutdown(self) -> None:
        """Say goodbye (best effort) and close."""
        await self.close()

    async def close(self) -> None:
        self.closed = True


@attrs.define(eq=False, kw_only=True)
class TtrpcPlugin(Plugin):
    """A plugin over a multiplexed socket (external, or pre-installed with fd 3)."""

    update_fn: UpdateFn | None = None
    process: asyncio.subprocess.Process | None = None
    pid: int = 0
    _mux: mux.Mux | None = None
    _client: Client | None = None
    _server: Server | None = None
    _tasks: list[asyncio.Task[Any]] = attrs.Factory(list)
    _registered: asyncio.Future[None] | None = None
    _deprecated_warned: set[int] = attrs.Factory(set)

    async def connect(self, trunk: mux.Mux) -> None:
        loop = asyncio.get_running_loop()
        self._mux = trunk
        self._registered = loop.create_future()
        creader, cwriter = trunk.open(mux.PLUGIN_SERVICE_CONN)
        sreader, swriter = trunk.open(mux.RUNTIME_SERVICE_CONN)
        self._client = Client(creader, cwriter)
        self._server = Server(require_same_user=False)
        self._server.register_service(pb.DESCRIPTOR.services_by_name["Runtime"], self)
        self._tasks.append(
            loop.create_task(self._server.serve_connection(sreader, swriter), name="nri runtime")
        )
        self._tasks.append(loop.create_task(self._watch(), name="nri plugin watch"))
        trunk.start()

    async def _watch(self) -> None:
        assert self._mux is not None
        await self._mux.wait_closed()
        if not self.closed:
            log.info("nri: connection to plugin %s closed", self.name)
        self.closed = True
        fut = self._registered
        if fut is not None and not fut.done():
            fut.set_exception(errdefs.Unavailable("failed to register plugin, connection closed"))
            fut.exception()  # whoever waits still gets it; nobody waiting is not an error

    # -- the Runtime service, called by the plugin

    async def RegisterPlugin(self, req: pb.RegisterPluginRequest) -> pb.Empty:  # noqa: N802
        fut = self._registered
        if self.kind == "external":
            try:
                api.check_plugin_name(req.plugin_name)
                api.check_plugin_index(req.plugin_idx)
            except errdefs.InvalidArgument as e:
                if fut is not None and not fut.done():
                    fut.set_exception(e)
                raise
            self.base, self.index = req.plugin_name, req.plugin_idx
        log.info(
            "nri: plugin %s registered (NRI version %s)", self.name, req.NRI_version or "unknown"
        )
        if fut is not None and not fut.done():
            fut.set_result(None)
        return pb.Empty()

    async def UpdateContainers(  # noqa: N802
        self, req: pb.UpdateContainersRequest
    ) -> pb.UpdateContainersResponse:
        log.info("nri: plugin %s requested container updates", self.name)
        if self.update_fn is None:
            return pb.UpdateContainersResponse(failed=list(req.update))
        failed = await self.update_fn(list(req.update))
        return pb.UpdateContainersResponse(failed=failed)

    # -- lifecycle

    async def start(self, runtime_name: str, runtime_version: str) -> None:
        assert self._registered is not None
        try:
            async with asyncio.timeout(self.timeouts.registration):
                await asyncio.shield(self._registered)
        except TimeoutError:
            await self.close()
            raise errdefs.DeadlineExceeded("plugin registration timed out") from None
        except errdefs.ContainerdError as e:
            await self.close()
            raise type(e)(f"failed to register plugin: {e}") from e
        try:
            rpl = await self._call(
                "Configure",
                pb.ConfigureRequest(
                    config=self.config,
                    runtime_name=runtime_name,
                    runtime_version=runtime_version,
                    registration_timeout=int(self.timeouts.registration * 1000),
                    request_timeout=int(self.timeouts.request * 1000),
                    NRI_version=api.NRI_VERSION,
                ),
                pb.ConfigureResponse,
            )
            self.set_events(rpl.events)
        except errdefs.ContainerdError as e:
            await self.close()
            raise type(e)(f"failed to configure plugin {self.name}: {e}") from e
        log.info(
            "nri: plugin %s subscribed to %s", self.name, ",".join(api.mask_events(self.events))
        )

    async def _call(
        self, method: str, req: Any, resp_cls: Any, *, timeout: float | None = None
    ) -> Any:
        if self.closed or self._client is None:
            raise PluginClosed(f"plugin {self.name} is closed")
        with self.recorded(method):
            return await self._client.call(
                api.PLUGIN_SERVICE,
                method,
                req,
                resp_cls,
                timeout=self.timeouts.request if timeout is None else timeout,
            )

    async def synchronize(
        self, pods: list[pb.PodSandbox], containers: list[pb.Container], *, chunk_limit: int
    ) -> list[pb.ContainerUpdate]:
        log.info("nri: synchronizing plugin %s", self.name)
        chunks = split_sync(pods, containers, chunk_limit)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeouts.sync
        rpl = pb.SynchronizeResponse()
        try:
            for i, req in enumerate(chunks):
                remaining = max(deadline - loop.time(), 0.001)
                rpl = await self._call(
                    "Synchronize", req, pb.SynchronizeResponse, timeout=remaining
                )
                if req.more and (rpl.update or rpl.more != req.more):
                    raise errdefs.FailedPrecondition("plugin does not handle split sync requests")
                log.debug("nri: sync chunk %d/%d sent to %s", i + 1, len(chunks), self.name)
        except errdefs.ContainerdError:
            await self.close()
            raise
        return list(rpl.update)

    async def request(self, event: int, method: str, req: Any, resp_cls: Any) -> Any:
        if self.closed or not self.subscribed(event):
            return None
        try:
            try:
                return await self._call(method, req, resp_cls)
            except errdefs.NotImplemented_:
                if event not in api.STATE_CHANGE_EVENTS:
                    raise
            if event not in self._deprecated_warned:
                self._deprecated_warned.add(event)
                log.warning(
                    "nri: plugin %s uses deprecated StateChange instead of a dedicated %s call",
                    self.name,
                    method,
                )
            sc = pb.StateChangeEvent(event=event)  # type: ignore[arg-type]
            if req.HasField("pod"):
                sc.pod.CopyFrom(req.pod)
            if "container" in req.DESCRIPTOR.fields_by_name and req.HasField("container"):
                sc.container.CopyFrom(req.container)
            await self._call("StateChange", sc, pb.Empty)
            return None
        except _FATAL as e:
            log.error(
                "nri: closing plugin %s, failed to handle %s request: %s", self.name, method, e
            )
            await self.close()
            return None

    async def shutdown(self) -> None:
        if not self.closed:
            with contextlib.suppress(errdefs.ContainerdError):
                await self._call(
                    "Shutdown", pb.Empty(), pb.Empty, timeout=min(self.timeouts.request, 1.0)
                )
        await self.close()

    async def close(self) -> None:
        self.closed = True
        if self._registered is not None and not self._registered.done():
            self._registered.cancel()
        if self._client is not None:
            await self._client.close()
        if self._mux is not None:
            await self._mux.close()
        for t in self._tasks:
            if not t.done():
                t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        await self.stop_process()

    async def stop_process(self) -> None:
        """Kill and reap a plugin we launched (containerd does not restart it)."""
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await proc.wait()


def split_sync(
    pods: list[pb.PodSandbox], containers: list[pb.Container], limit: int
) -> list[pb.SynchronizeRequest]:
    """Synchronize requests of at most ``limit`` serialized bytes each (one object per request
    at least); every request but the last has ``more`` set."""
    items: list[tuple[str, Any]] = [("pods", p) for p in pods] + [
        ("containers", c) for c in containers
    ]
    chunks: list[pb.SynchronizeRequest] = []
    cur = pb.SynchronizeRequest()
    size = 0
    for field, obj in items:
        n = obj.ByteSize() + 6  # tag + length prefix
        if size and size + n > limit:
            chunks.append(cur)
            cur, size = pb.SynchronizeRequest(), 0
        getattr(cur, field).append(obj)
        size += n
    chunks.append(cur)
    for c in chunks[:-1]:
        c.more = True
    return chunks


# -- in-process Python hooks


@attrs.define(eq=False, kw_only=True)
class BuiltinPlugin(Plugin):
    """In-process hooks of one pluggy plugin object (a module), treated like a plugin.

    ``handlers`` maps NRI RPC names to the hook implementation functions; a function may be
    async (bounded by the request timeout) or plain (it runs on the loop and must be quick).
    """

    handlers: dict[str, Callable[..., Any]] = attrs.Factory(dict)

    async def start(self, runtime_name: str, runtime_version: str) -> None:
        mask = 0
        for method in self.handlers:
            for ev, name in api.EVENT_NAMES.items():
                if name == method:
                    mask |= api.event_bit(ev)
        self.events = mask

    async def _invoke(self, method: str, **kwargs: Any) -> Any:
        fn = self.handlers.get(method)
        if fn is None:
            return None
        accepted = inspect.signature(fn).parameters
        args = {k: v for k, v in kwargs.items() if k in accepted}
        with self.recorded(method):
            result = fn(**args)
            if inspect.isawaitable(result):
                bound = self.timeouts.sync if method == "Synchronize" else self.timeouts.request
                async with asyncio.timeout(bound):
                    result = await result
            return result

    async def synchronize(
        self, pods: list[pb.PodSandbox], containers: list[pb.Container], *, chunk_limit: int
    ) -> list[pb.ContainerUpdate]:
        try:
            res = await self._invoke("Synchronize", pods=pods, containers=containers)
        except TimeoutError:
            await self.close()
            raise errdefs.DeadlineExceeded(f"plugin {self.name}: synchronize timed out") from None
        return list(res or [])

    async def request(self, event: int, method: str, req: Any, resp_cls: Any) -> Any:
        if self.closed or not self.subscribed(event):
            return None
        kwargs: dict[str, Any] = {"pod": req.pod, "request": req}
        if "container" in req.DESCRIPTOR.fields_by_name:
            kwargs["container"] = req.container
        if method == "UpdateContainer":
            kwargs["resources"] = req.linux_resources
        if method == "UpdatePodSandbox":
            kwargs["overhead"] = req.overhead_linux_resources
            kwargs["resources"] = req.linux_resources
        try:
            res = await self._invoke(method, **kwargs)
        except TimeoutError:
            log.error("nri: closing plugin %s, %s timed out", self.name, method)
            await self.close()
            return None
        return _as_response(method, res, resp_cls)


def _as_response(method: str, res: Any, resp_cls: Any) -> Any:
    """A hook's return value as the RPC's response message."""
    if res is None or resp_cls is None:
        return None
    if isinstance(res, resp_cls):
        return res
    if method == "CreateContainer":
        if isinstance(res, pb.ContainerAdjustment):
            return pb.CreateContainerResponse(adjust=res)
        if isinstance(res, tuple):
            adjust, *rest = res
            rpl = pb.CreateContainerResponse(update=list(rest[0]) if rest else [])
            if adjust is not None:
                rpl.adjust.CopyFrom(adjust)
            return rpl
    if method == "ValidateContainerAdjustment" and isinstance(res, str):
        return resp_cls(reject=True, reason=res)  # a reason: rejected
    if method in ("UpdateContainer", "StopContainer") and isinstance(res, list | tuple):
        return resp_cls(update=list(res))
    raise errdefs.InvalidArgument(
        f"nri hook for {method} returned {type(res).__name__}, expected {resp_cls.__name__}"
    )
