"""The NRI adaptation: plugins (external, pre-installed, in-process) and event dispatch.

:class:`NRI` is what the CRI plugin calls; see :mod:`pycontainerd.core.nri` for the API.
Plugins are kept sorted by index; every event goes to the subscribed plugins in that order,
one at a time, under one lock (so a plugin that connects is synchronized with a consistent
view and misses no event). Each request is bounded by the request timeout; a plugin that
times out or disconnects is dropped (a launched one is killed and reaped; containerd does not
restart plugins) and the call proceeds without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.nri import api, mux
from pycontainerd.core.nri.adjustment import CreateResult, UpdateResult, apply_adjustment
from pycontainerd.core.nri.api import pb
from pycontainerd.core.nri.metrics import NRIMetrics
from pycontainerd.core.nri.plugin import BuiltinPlugin, Plugin, Timeouts, TtrpcPlugin
from pycontainerd.core.nri.types import Container, PodSandbox
from pycontainerd.core.ttrpc import MAX_MESSAGE_LENGTH

log = logging.getLogger(__name__)

#: ``sync()`` lists the current pods and containers.
SyncFn = Callable[[], Awaitable[tuple[Iterable[PodSandbox], Iterable[Container]]]]
#: ``update(updates)`` applies container updates; returns the ones that failed.
UpdateFn = Callable[[list[pb.ContainerUpdate]], Awaitable[list[pb.ContainerUpdate]]]
#: ``evict(evictions)`` stops containers plugins asked to evict; returns the ones that failed.
EvictFn = Callable[[list[pb.ContainerEviction]], Awaitable[list[pb.ContainerEviction]]]

#: Payload budget of one Synchronize message (ttrpc's limit, less room for the envelope).
SYNC_CHUNK_LIMIT = MAX_MESSAGE_LENGTH - 64 * 1024


@attrs.define(kw_only=True)
class Config:
    """The adaptation's settings (the plugin config, decoded; timeouts in seconds)."""

    socket_path: str = api.DEFAULT_SOCKET_PATH
    plugin_path: str = api.DEFAULT_PLUGIN_PATH
    plugin_config_path: str = api.DEFAULT_PLUGIN_CONFIG_PATH
    registration_timeout: float = api.DEFAULT_REGISTRATION_TIMEOUT
    request_timeout: float = api.DEFAULT_REQUEST_TIMEOUT
    disable_connections: bool = False
    runtime_name: str = "pycontainerd"
    runtime_version: str = ""


@attrs.frozen(kw_only=True)
class CreateContainerResult:
    """What CreateContainer produced: the merged adjustment to apply to the spec, and the
    updates/evictions of other containers (already handed to the update/evict functions)."""

    adjustment: pb.ContainerAdjustment
    updates: list[pb.ContainerUpdate] = attrs.field(factory=list)
    evictions: list[pb.ContainerEviction] = attrs.field(factory=list)


# Container states as the adaptation tracks them (containerd's internal/nri).
_CREATED, _RUNNING, _STOPPED = "created", "running", "stopped"


@attrs.define(eq=False)
class NRI:
    config: Config = attrs.Factory(Config)
    builtin: list[BuiltinPlugin] = attrs.Factory(list)
    sync_chunk_limit: int = SYNC_CHUNK_LIMIT
    _plugins: list[Plugin] = attrs.Factory(list)
    _lock: asyncio.Lock = attrs.Factory(asyncio.Lock)
    _sync: SyncFn | None = None
    _update: UpdateFn | None = None
    _evict: EvictFn | None = None
    _server: asyncio.base_events.Server | None = None
    _tasks: set[asyncio.Task[Any]] = attrs.Factory(set)
    _state: dict[str, str] = attrs.Factory(dict)
    started: bool = False
    metrics: NRIMetrics = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.metrics = NRIMetrics(active=lambda: len(self.plugins))

    def prometheus_metrics(self) -> list[Any]:
        """containerd's NRI metrics (for the metrics server)."""
        return self.metrics.all()

    @property
    def timeouts(self) -> Timeouts:
        return Timeouts(
            registration=self.config.registration_timeout, request=self.config.request_timeout
        )

    @property
    def plugins(self) -> list[Plugin]:
        """Active plugins in invocation order."""
        return [p for p in self._plugins if not p.closed]

    # -- lifecycle

    async def start(
        self,
        sync: SyncFn | None = None,
        update: UpdateFn | None = None,
        evict: EvictFn | None = None,
    ) -> None:
        """Start built-in and pre-installed plugins, synchronize them with what ``sync()``
        lists, then accept external plugins on the socket (unless disabled)."""
        if self.started:
            return
        self._sync, self._update, self._evict = sync, update, evict
        self.started = True
        started: list[Plugin] = []
        for bp in self.builtin:
            bp.timeouts = self.timeouts
            bp.metrics = self.metrics
            await bp.start(self.config.runtime_name, self.config.runtime_version)
            started.append(bp)
        for p in await self._launch_preinstalled():
            started.append(p)
        async with self._lock:
            pods, ctrs = await self._list()
            for p in started:
                try:
                    updates = await p.synchronize(pods, ctrs, chunk_limit=self.sync_chunk_limit)
                except errdefs.ContainerdError as e:
                    log.warning("nri: failed to synchronize plugin %s: %s", p.name, e)
                    await p.close()
                    continue
                self._plugins.append(p)
                await self._apply_updates(updates, "post-sync")
            self._sort()
        if not self.config.disable_connections:
            await self._listen()
        else:
            log.info("nri: connections from external plugins disabled")

    async def close(self) -> None:
        """Stop listening; shut every plugin down; kill launched ones."""
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.config.socket_path)
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        plugins, self._plugins = self._plugins, []
        await asyncio.gather(*(p.shutdown() for p in plugins), return_exceptions=True)
        self.started = False

    stop = close

    # -- plugins

    def _sort(self) -> None:
        self._plugins = sorted((p for p in self._plugins if not p.closed), key=lambda p: p.sort_key)
        if self._plugins:
            log.info("nri: plugin invocation order: %s", ", ".join(p.name for p in self._plugins))

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def discover(self) -> list[tuple[str, str, str]]:
        """(index, name, config) of each pre-installed plugin (``NN-name`` executables)."""
        try:
            entries = sorted(os.scandir(self.config.plugin_path), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        except OSError as e:
            raise errdefs.FailedPrecondition(
                f"failed to discover plugins in {self.config.plugin_path}: {e}"
            ) from e
        found = []
        for entry in entries:
            try:
                st = entry.stat()
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
                continue
            try:
                idx, base = api.parse_plugin_name(entry.name)
            except errdefs.InvalidArgument as err:
                log.warning("nri: ignoring %s: %s", entry.path, err)
                continue
            found.append((idx, base, self._plugin_config(idx, base)))
        return found

    def _plugin_config(self, idx: str, base: str) -> str:
        for name in (f"{idx}-{base}.conf", f"{base}.conf"):
            path = os.path.join(self.config.plugin_config_path, name)
            try:
                with open(path, encoding="utf-8") as f:
                    return f.read()
            except FileNotFoundError:
                continue
            except OSError as e:
                raise errdefs.FailedPrecondition(
                    f'failed to read configuration for plugin "{idx}-{base}": {e}'
                ) from e
        return ""

    async def _launch_preinstalled(self) -> list[Plugin]:
        started: list[Plugin] = []
        for idx, base, cfg in self.discover():
            name = f"{idx}-{base}"
            log.info("nri: starting pre-installed plugin %s", name)
            try:
                p = await self._launch(idx, base, cfg)
                await p.start(self.config.runtime_name, self.config.runtime_version)
            except (errdefs.ContainerdError, OSError) as e:
                log.warning("nri: failed to start pre-installed plugin %s: %s", name, e)
                continue
            started.append(p)
        return started

    async def _launch(self, idx: str, base: str, cfg: str) -> TtrpcPlugin:
        path = os.path.join(self.config.plugin_path, f"{idx}-{base}")
        local, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        peer_fd = peer.fileno()

        def child_fd3() -> None:  # runs in the child between fork and exec
            if peer_fd == 3:
                os.set_inheritable(3, True)
            else:
                os.dup2(peer_fd, 3)

        try:
            proc = await asyncio.create_subprocess_exec(
                path,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={
                    api.PLUGIN_NAME_ENV: base,
                    api.PLUGIN_IDX_ENV: idx,
                    api.PLUGIN_SOCKET_ENV: "3",
                },
                close_fds=False,
                preexec_fn=child_fd3,
            )
        except BaseException:
            local.close()
            raise
        finally:
            peer.close()
        p = TtrpcPlugin(
            kind="pre-installed",
            index=idx,
            base=base,
            config=cfg,
            timeouts=self.timeouts,
            metrics=self.metrics,
            update_fn=self._unsolicited_update,
            process=proc,
            pid=proc.pid,
        )
        if proc.stdout is not None:
            self._spawn(_forward_output(p.name, proc.stdout), f"nri plugin {p.name} output")
        await p.connect(await mux.Mux.from_socket(local))
        return p

    async def _listen(self) -> None:
        path = self.config.socket_path
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        if os.path.exists(path) and await _answers(path):
            # another runtime (or another pycontainerd) serves NRI here: never steal it
            raise errdefs.FailedPrecondition(
                f"nri: socket {path} is in use by another runtime; set socket_path"
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._server = await asyncio.start_unix_server(self._accept, path=path)
        log.info("nri: listening for external plugins on %s", path)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            p = TtrpcPlugin(
                kind="external",
                config="",
                timeouts=self.timeouts,
                metrics=self.metrics,
                update_fn=self._unsolicited_update,
            )
            sock = writer.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError):
                p.pid = int.from_bytes(
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)[:4], "little"
                )
            await p.connect(mux.Mux(reader, writer))
            try:
                await p.start(self.config.runtime_name, self.config.runtime_version)
            except errdefs.ContainerdError as e:
                log.error("nri: failed to start external plugin: %s", e)
                return
            async with self._lock:
                try:
                    pods, ctrs = await self._list()
                    updates = await p.synchronize(pods, ctrs, chunk_limit=self.sync_chunk_limit)
                except errdefs.ContainerdError as e:
                    log.error("nri: failed to synchronize plugin %s: %s", p.name, e)
                    await p.close()
                    return
                self._plugins.append(p)
                self._sort()
                await self._apply_updates(updates, "post-sync")
            log.info("nri: plugin %s connected and synchronized", p.name)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _list(self) -> tuple[list[pb.PodSandbox], list[pb.Container]]:
        if self._sync is None:
            return [], []
        pods, ctrs = await self._sync()
        pod_protos = [p.to_proto() for p in pods]
        ctr_protos = [c.to_proto() for c in ctrs]
        for c in ctr_protos:
            if c.state == pb.CONTAINER_CREATED:
                self._state[c.id] = _CREATED
            elif c.state in (pb.CONTAINER_RUNNING, pb.CONTAINER_PAUSED):
                self._state[c.id] = _RUNNING
            elif c.state == pb.CONTAINER_STOPPED:
                self._state[c.id] = _STOPPED
        return pod_protos, ctr_protos

    async def _unsolicited_update(
        self, updates: list[pb.ContainerUpdate]
    ) -> list[pb.ContainerUpdate]:
        async with self._lock:
            if self._update is None:
                return updates
            return await self._update(updates)

    async def _apply_updates(self, updates: list[pb.ContainerUpdate], what: str) -> None:
        if not updates or self._update is None:
            return
        try:
            failed = await self._update(updates)
        except Exception as e:  # noqa: BLE001 - as containerd: logged, not fatal
            log.warning("nri: %s update failed: %s", what, e)
            return
        if failed:
            log.warning("nri: %s update failed for %s", what, [u.container_id for u in failed])

    async def _apply_evictions(self, evictions: list[pb.ContainerEviction], what: str) -> None:
        if not evictions or self._evict is None:
            return
        try:
            await self._evict(evictions)
        except Exception as e:  # noqa: BLE001
            log.warning("nri: %s eviction failed: %s", what, e)

    # -- dispatch

    async def _each(self, event: int, method: str, req: Any, resp_cls: Any = None):  # type: ignore[no-untyped-def]
        """(plugin, reply) for every subscribed plugin, in order; drops closed ones after."""
        for p in list(self._plugins):
            if p.closed:
                continue
            rpl = await p.request(event, method, req, resp_cls)
            yield p, rpl
        self._plugins = [p for p in self._plugins if not p.closed]

    async def _notify(self, event: int, method: str, req: Any, resp_cls: Any) -> None:
        async for _p, _rpl in self._each(event, method, req, resp_cls):
            pass

    # -- the CRI call points

    async def run_pod_sandbox(self, pod: PodSandbox) -> None:
        async with self._lock:
            await self._notify(
                pb.RUN_POD_SANDBOX,
                "RunPodSandbox",
                pb.RunPodSandboxRequest(pod=pod.to_proto()),
                pb.RunPodSandboxResponse,
            )
            self._state[pod.id] = _RUNNING

    async def update_pod_sandbox(
        self,
        pod: PodSandbox,
        overhead: pb.LinuxResources | None = None,
        resources: pb.LinuxResources | None = None,
    ) -> None:
        """A pod's resources are being updated (CRI UpdatePodSandboxResources); a plugin's
        error fails the update."""
        async with self._lock:
            req = pb.UpdatePodSandboxRequest(pod=pod.to_proto())
            if overhead is not None:
                req.overhead_linux_resources.CopyFrom(overhead)
            if resources is not None:
                req.linux_resources.CopyFrom(resources)
            await self._notify(
                pb.UPDATE_POD_SANDBOX, "UpdatePodSandbox", req, pb.UpdatePodSandboxResponse
            )

    async def post_update_pod_sandbox(self, pod: PodSandbox) -> None:
        async with self._lock:
            await self._notify(
                pb.POST_UPDATE_POD_SANDBOX,
                "PostUpdatePodSandbox",
                pb.PostUpdatePodSandboxRequest(pod=pod.to_proto()),
                pb.PostUpdatePodSandboxResponse,
            )

    async def stop_pod_sandbox(self, pod: PodSandbox) -> None:
        async with self._lock:
            if self._state.get(pod.id) not in (_CREATED, _RUNNING):
                return
            await self._notify(
                pb.STOP_POD_SANDBOX,
                "StopPodSandbox",
                pb.StopPodSandboxRequest(pod=pod.to_proto()),
                pb.StopPodSandboxResponse,
            )
            self._state[pod.id] = _STOPPED

    async def remove_pod_sandbox(self, pod: PodSandbox) -> None:
        async with self._lock:
            if pod.id not in self._state:
                return
            await self._notify(
                pb.REMOVE_POD_SANDBOX,
                "RemovePodSandbox",
                pb.RemovePodSandboxRequest(pod=pod.to_proto()),
                pb.RemovePodSandboxResponse,
            )
            self._state.pop(pod.id, None)

    async def create_container(self, pod: PodSandbox, ctr: Container) -> CreateContainerResult:
        """Ask every plugin for adjustments; merge them in index order (a field set by two
        plugins raises errdefs.Conflict naming both). Apply the returned adjustment to the
        spec with :func:`apply_adjustment`."""
        async with self._lock:
            req = pb.CreateContainerRequest(pod=pod.to_proto(), container=ctr.to_proto())
            result = CreateResult(req)
            self._state[ctr.id] = _CREATED
            async for p, rpl in self._each(
                pb.CREATE_CONTAINER, "CreateContainer", req, pb.CreateContainerResponse
            ):
                if rpl is not None:
                    self.metrics.adjusted(
                        p.name, "CreateContainer", len(rpl.update), len(rpl.evict)
                    )
                result.apply(rpl, p.name)
            rpl = result.response()
            await self._validate(req.pod, ctr, rpl, result)
            await self._apply_evictions(list(rpl.evict), "pre-create")
            await self._apply_updates(list(rpl.update), "pre-create")
            return CreateContainerResult(
                adjustment=rpl.adjust, updates=list(rpl.update), evictions=list(rpl.evict)
            )

    async def _validate(
        self,
        pod: pb.PodSandbox,
        ctr: Container,
        rpl: pb.CreateContainerResponse,
        result: CreateResult,
    ) -> None:
        """Let every validator (a plugin subscribed to ValidateContainerAdjustment) see the
        merged adjustment, who set what and which plugins took part, all at once; one
        rejection or failure fails the create (errdefs.FailedPrecondition)."""
        event = pb.VALIDATE_CONTAINER_ADJUSTMENT
        validators = [p for p in self._plugins if not p.closed and p.subscribed(event)]
        if not validators:
            return
        req = pb.ValidateContainerAdjustmentRequest(
            pod=pod,
            container=ctr.to_proto(),  # as it was before any plugin adjusted it
            adjust=rpl.adjust,
            update=list(rpl.update),
            owners=result.owners.to_proto(ctr.id),
            plugins=[
                pb.PluginInstance(name=p.base, index=p.index) for p in self._plugins if not p.closed
            ],
        )
        method = "ValidateContainerAdjustment"

        async def one(p: Plugin) -> str | None:
            try:
                got = await p.request(event, method, req, pb.ValidateContainerAdjustmentResponse)
            except Exception as e:  # noqa: BLE001 - any failure of a validator refuses
                return f"validator plugin {p.name} failed: {e}"
            if got is None:
                return f"validator plugin {p.name} failed: closed" if p.closed else None
            if got.reject:
                reason = got.reason or "unknown rejection reason"
                return f'validator "{p.name}" rejected container adjustment, reason: {reason}'
            return None

        errors = [e for e in await asyncio.gather(*(one(p) for p in validators)) if e]
        self._plugins = [p for p in self._plugins if not p.closed]
        if errors:
            raise errdefs.FailedPrecondition("; ".join(errors))

    async def post_create_container(self, pod: PodSandbox, ctr: Container) -> None:
        await self._simple(
            pb.POST_CREATE_CONTAINER,
            "PostCreateContainer",
            pb.PostCreateContainerRequest,
            pb.PostCreateContainerResponse,
            pod,
            ctr,
        )

    async def start_container(self, pod: PodSandbox, ctr: Container) -> None:
        await self._simple(
            pb.START_CONTAINER,
            "StartContainer",
            pb.StartContainerRequest,
            pb.StartContainerResponse,
            pod,
            ctr,
        )
        self._state[ctr.id] = _RUNNING

    async def post_start_container(self, pod: PodSandbox, ctr: Container) -> None:
        await self._simple(
            pb.POST_START_CONTAINER,
            "PostStartContainer",
            pb.PostStartContainerRequest,
            pb.PostStartContainerResponse,
            pod,
            ctr,
        )

    async def update_container(
        self, pod: PodSandbox, ctr: Container, resources: pb.LinuxResources
    ) -> pb.LinuxResources | None:
        """Let plugins adjust a resource update; the resources to apply (None: as
        requested). Updates plugins asked for other containers go to the update function."""
        async with self._lock:
            req = pb.UpdateContainerRequest(
                pod=pod.to_proto(), container=ctr.to_proto(), linux_resources=resources
            )
            result = UpdateResult(req)
            async for p, rpl in self._each(
                pb.UPDATE_CONTAINER, "UpdateContainer", req, pb.UpdateContainerResponse
            ):
                if rpl is not None:
                    self.metrics.adjusted(
                        p.name, "UpdateContainer", len(rpl.update), len(rpl.evict)
                    )
                    result.update(rpl.update, p.name)
                    result.evictions.extend(rpl.evict)
            await self._apply_evictions(result.evictions, "pre-update")
            others = [u for u in result.updates() if u.container_id != ctr.id]
            await self._apply_updates(others, "pre-update")
            return result.requested_resources()

    async def post_update_container(self, pod: PodSandbox, ctr: Container) -> None:
        await self._simple(
            pb.POST_UPDATE_CONTAINER,
            "PostUpdateContainer",
            pb.PostUpdateContainerRequest,
            pb.PostUpdateContainerResponse,
            pod,
            ctr,
        )

    async def stop_container(self, pod: PodSandbox, ctr: Container) -> list[pb.ContainerUpdate]:
        """Tell plugins a container stopped (once); returns the updates they asked for other
        containers (already handed to the update function)."""
        async with self._lock:
            return await self._stop_container(pod, ctr)

    async def _stop_container(self, pod: PodSandbox, ctr: Container) -> list[pb.ContainerUpdate]:
        if self._state.get(ctr.id) not in (_CREATED, _RUNNING):
            return []
        req = pb.StopContainerRequest(pod=pod.to_proto(), container=ctr.to_proto())
        result = UpdateResult(None)
        async for p, rpl in self._each(
            pb.STOP_CONTAINER, "StopContainer", req, pb.StopContainerResponse
        ):
            if rpl is not None:
                self.metrics.adjusted(p.name, "StopContainer", len(rpl.update), 0)
                result.update(rpl.update, p.name)
        self._state[ctr.id] = _STOPPED
        updates = result.updates()
        await self._apply_updates(updates, "post-stop")
        return updates

    async def remove_container(self, pod: PodSandbox, ctr: Container) -> None:
        async with self._lock:
            if ctr.id not in self._state:
                return
            await self._stop_container(pod, ctr)
            req = pb.RemoveContainerRequest(pod=pod.to_proto(), container=ctr.to_proto())
            await self._notify(
                pb.REMOVE_CONTAINER, "RemoveContainer", req, pb.RemoveContainerResponse
            )
            self._state.pop(ctr.id, None)

    async def _simple(
        self, event: int, method: str, req_cls: Any, resp_cls: Any, pod: PodSandbox, ctr: Container
    ) -> None:
        async with self._lock:
            req = req_cls(pod=pod.to_proto(), container=ctr.to_proto())
            await self._notify(event, method, req, resp_cls)

    async def synchronize(self, sync: SyncFn | None = None) -> None:
        """Re-synchronize every plugin with what ``sync()`` (or the start-time function)
        lists now; plugins that fail are dropped."""
        async with self._lock:
            if sync is not None:
                self._sync = sync
            pods, ctrs = await self._list()
            for p in list(self._plugins):
                try:
                    updates = await p.synchronize(pods, ctrs, chunk_limit=self.sync_chunk_limit)
                except errdefs.ContainerdError as e:
                    log.warning("nri: failed to synchronize plugin %s: %s", p.name, e)
                    await p.close()
                    continue
                await self._apply_updates(updates, "post-sync")
            self._sort()

    apply_adjustment = staticmethod(apply_adjustment)


async def _forward_output(name: str, stream: asyncio.StreamReader) -> None:
    while True:
        line = await stream.readline()
        if not line:
            return
        log.info("nri plugin %s: %s", name, line.decode(errors="replace").rstrip())


async def _answers(path: str) -> bool:
    """Whether something accepts connections on the unix socket ``path``."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), 2)
    except (TimeoutError, OSError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True
