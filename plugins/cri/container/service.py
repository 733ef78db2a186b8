"""CRI containers: create, start, stop, remove, exec, stats, events and recovery
(containerd's ``internal/cri/server/container_*.go`` and ``events.go``).

:class:`ContainerManager` hangs off the CRI service (``c.container_manager``); the RPC
handlers (:mod:`.handlers`), the streaming runtime (:mod:`pycontainerd.plugins.cri.streaming`)
and the pod sandbox code (``stop_all``/``remove_all``) call it. Containers are containerd
container records in ``k8s.io`` (label ``io.cri-containerd.kind=container``, the CRI metadata
as extension ``io.cri-containerd.container.metadata``) with tasks run through the in-process
tasks service; the store here is the Kubernetes index over them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import shutil
import signal as signal_
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import attrs
from google.protobuf import any_pb2

from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2
from pycontainerd.api.containerd.types.task import task_pb2
from pycontainerd.core import errdefs, leases
from pycontainerd.core.metadata.containers import Container as Record
from pycontainerd.core.metadata.containers import Runtime as RecordRuntime
from pycontainerd.core.runtime.spec import (
    LINUX_RESOURCES_TYPE_URL,
    PROCESS_TYPE_URL,
    from_any,
    to_any,
)
from pycontainerd.plugins.cri import constants
from pycontainerd.plugins.cri.container import cdi, image_volumes, sandboxes
from pycontainerd.plugins.cri.container import spec as specs
from pycontainerd.plugins.cri.container.store import (
    CREATED,
    EXITED,
    REASON_START_ERROR,
    REASON_UNKNOWN,
    RUNNING,
    UNKNOWN,
    UNKNOWN_EXIT_CODE,
    Container,
    ContainerStore,
    Metadata,
    Status,
    StatusStorage,
    exit_reason,
    make_container_name,
)
from pycontainerd.plugins.cri.io.container_io import ContainerIO, ExecIO, find_fifos
from pycontainerd.plugins.cri.sandbox import annotations as ann

log = logging.getLogger(__name__)

#: how long the exit monitor waits for the output to drain after an exit
OUTPUT_DRAIN_TIMEOUT = 5.0
#: exit code recorded when a start fails
START_ERROR_EXIT_CODE = 128
_TEMP_LEASE_EXPIRY = 3600


def _pb() -> Any:
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2

    return api_pb2


def now_ns() -> int:
    return time.time_ns()


def _ns(dt: datetime.datetime | None) -> int:
    if dt is None:
        return now_ns()
    return int(dt.timestamp() * 1e9)


def _from_ts(ts: Any) -> int:
    if ts is None or (not ts.seconds and not ts.nanos):
        return 0
    return int(ts.seconds) * 1_000_000_000 + int(ts.nanos)


def signal_number(name: str) -> int:
    """``SIGTERM``, ``TERM`` or ``15`` -> 15 (InvalidArgument otherwise)."""
    if not name:
        return int(signal_.SIGTERM)
    if name.isdigit():
        return int(name)
    n = name.upper()
    if not n.startswith("SIG"):
        n = "SIG" + n
    try:
        return int(getattr(signal_.Signals, n))
    except AttributeError:
        raise errdefs.InvalidArgument(f"unknown stop signal {name!r}") from None


def _cri_signal_name(value: int) -> str:
    """A ``runtime.v1.Signal`` as its OCI stop signal name ("" = runtime default)."""
    if not value:
        return ""
    return str(_pb().Signal.Name(value))


#: how long a kill that lost the shim connection waits for the exit monitor (s)
KILL_RACE_GRACE = 10.0


@attrs.define(eq=False)
class EventBroadcaster:
    """``GetContainerEvents``: every subscriber gets every event after it subscribed."""

    _queues: set[asyncio.Queue[Any]] = attrs.Factory(set)

    def publish(self, event: Any) -> None:
        for q in list(self._queues):
            q.put_nowait(event)

    async def subscribe(self) -> AsyncIterator[Any]:
        q: asyncio.Queue[Any] = asyncio.Queue()
        self._queues.add(q)
        try:
            while (item := await q.get()) is not None:
                yield item
        finally:
            self._queues.discard(q)

    def close(self) -> None:
        for q in list(self._queues):
            q.put_nowait(None)


@attrs.define(eq=False)
class ContainerManager:
    #: the CRI service (pycontainerd.plugins.cri.service.CRIService)
    c: Any
    store: ContainerStore = attrs.Factory(ContainerStore)
    _own_events: EventBroadcaster = attrs.Factory(EventBroadcaster)
    _closed: bool = False
    _background: set[asyncio.Task[Any]] = attrs.Factory(set)
    _started: asyncio.Event = attrs.Factory(asyncio.Event)
    #: id -> (metadata, status, image, the encoded ``containers`` entry of a list response):
    #: valid while the container's metadata and status objects (replaced, never changed in
    #: place) and its image in the CRI image store (likewise) are the same objects
    _listed: dict[str, tuple[Any, Any, Any, bytes]] = attrs.Factory(dict)
    #: image volumes (KEP-4639) of the containers
    volumes: image_volumes.ImageVolumes = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.volumes = image_volumes.ImageVolumes(self.c)

    @property
    def events(self) -> Any:
        """The CRI event broadcaster (``GetContainerEvents``): the pod sandbox code's, shared
        by sandboxes and containers; an own one without it."""
        sandboxes_ = getattr(self.c, "sandboxes", None)
        events = getattr(sandboxes_, "events", None)
        return events if events is not None else self._own_events

    async def startup(self) -> None:
        """Recover the containers of ``k8s.io``, hook into pod stop/remove, start the
        streaming server."""
        try:
            sandboxes_ = getattr(self.c, "sandboxes", None)
            if sandboxes_ is not None:
                sandboxes_.stop_hooks.append(lambda sb: self.stop_all(sb.id))
                sandboxes_.remove_hooks.append(lambda sb: self.remove_all(sb.id))
            await self.recover()
        finally:
            self._started.set()
        if getattr(self.c, "stream_server", None) is None:
            from pycontainerd.plugins.cri.streaming import start_stream_server

            try:
                self.c.stream_server = await start_stream_server(self.c)
            except errdefs.ContainerdError as e:
                log.error("cri: failed to start the streaming server: %s", e)

    async def wait_started(self, timeout: float = 60.0) -> None:
        """Until recovery at start-up is done (CRI calls wait for it)."""
        async with asyncio.timeout(timeout):
            await self._started.wait()

    # --- helpers ---------------------------------------------------------------------

    @property
    def client(self) -> Any:
        return self.c.client

    def root_dir(self, id_: str) -> str:
        return os.path.join(self.c.runtime.root_dir, "containers", id_)

    def volatile_dir(self, id_: str) -> str:
        return os.path.join(self.c.runtime.state_dir, "containers", id_)

    async def _tasks(self, method: str, request: Any) -> Any:
        with self.client.scope():
            return await getattr(self.client.require("tasks"), method)(request)

    async def _containers(self, method: str, *args: Any, **kw: Any) -> Any:
        with self.client.scope():
            return await getattr(self.client.require("containers"), method)(*args, **kw)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def get(self, id_: str) -> Container:
        return self.store.get(id_)

    async def _nri(self, hook: str, **kw: Any) -> None:
        """NRI hook points (``create_container``, ``start_container``, ``stop_container``,
        ``remove_container``, ``post_*``): called on ``c.nri`` when it offers a
        ``cri_<hook>`` coroutine, else nothing. A failing post-hook is logged."""
        nri = getattr(self.c, "nri", None)
        fn = getattr(nri, f"cri_{hook}", None) if nri is not None else None
        if fn is None:
            return
        if hook.startswith("post_"):
            try:
                await fn(**kw)
            except Exception as e:  # noqa: BLE001 - notifications only
                log.warning("nri %s failed: %s", hook, e)
            return
        await fn(**kw)

    # --- events ----------------------------------------------------------------------

    def emit(self, container_id: str, sandbox_id: str, event_type: int) -> None:
        pb = _pb()
        resp = pb.ContainerEventResponse(
            container_id=container_id,
            container_event_type=event_type,
            created_at=now_ns(),
        )
        with contextlib.suppress(Exception):
            mgr = self.c.sandboxes
            resp.pod_sandbox_status.CopyFrom(mgr.cri_status(mgr.store.get(sandbox_id)))
        with contextlib.suppress(errdefs.NotFound):
            resp.containers_statuses.append(self.to_status(self.store.get(container_id)))
        self.events.publish(resp)

    # --- create ----------------------------------------------------------------------

    async def create(self, request: Any) -> str:
        config = request.config
        sandbox_config = request.sandbox_config
        sb = sandboxes.get(self.c, request.pod_sandbox_id)
        if not sb.ready:
            raise errdefs.FailedPrecondition(f"sandbox container {sb.id!r} is not running")
        if not config.HasField("metadata"):
            raise errdefs.InvalidArgument("container config must include metadata")
        if not sandbox_config.HasField("metadata"):
            sandbox_config = sb.config
        if not sandbox_config.HasField("metadata"):
            raise errdefs.InvalidArgument("pod sandbox config must include metadata")
        stop_signal = _cri_signal_name(config.stop_signal)
        if stop_signal:
            signal_number(stop_signal)
        id_ = os.urandom(32).hex()
        name = make_container_name(config.metadata, sandbox_config.metadata)
        try:
            self.store.names.reserve(name, id_)
        except errdefs.AlreadyExists as e:
            raise errdefs.AlreadyExists(f"failed to reserve container name {name!r}: {e}") from None
        undo: list[tuple[str, Callable[[], Any]]] = [
            ("name", lambda: self.store.names.release_by_name(name))
        ]
        try:
            return await self._create(id_, name, sb, config, sandbox_config, stop_signal, undo)
        except BaseException as e:
            log.warning("failed to create container %s (%s), undoing: %s", name, id_, e)
            await asyncio.shield(self._undo(id_, undo))
            raise

    async def _undo(self, id_: str, undo: list[tuple[str, Callable[[], Any]]]) -> None:
        for what, fn in reversed(undo):
            try:
                result = fn()
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    await result
            except errdefs.NotFound:
                pass
            except Exception as e:  # noqa: BLE001 - every step is tried
                log.error("failed to clean up %s of container %s: %s", what, id_, e)

    async def _create(
        self,
        id_: str,
        name: str,
        sb: sandboxes.SandboxView,
        config: Any,
        sandbox_config: Any,
        stop_signal: str,
        undo: list[tuple[str, Callable[[], Any]]],
    ) -> str:
        image_ref = config.image.image
        try:
            image = self.c.images.local_resolve(image_ref)
        except errdefs.NotFound:
            raise errdefs.NotFound(f"failed to resolve image {image_ref!r}: not found") from None
        image_config = dict(image.spec.get("config") or {})
        volume_requests = self.volumes.check(config)
        handler = self.c.config.runtime(sb.runtime_handler)
        snapshotter = self.c.images.runtime_snapshotter(handler)

        root, volatile = self.root_dir(id_), self.volatile_dir(id_)
        await asyncio.to_thread(os.makedirs, root, 0o755, True)
        undo.append(("root dir", lambda: asyncio.to_thread(shutil.rmtree, root, True)))
        await asyncio.to_thread(os.makedirs, volatile, 0o755, True)
        undo.append(("volatile dir", lambda: asyncio.to_thread(shutil.rmtree, volatile, True)))

        rro = False
        with contextlib.suppress(Exception):
            features = await self.c.runtime_handler_features()
            f = features.get(sb.runtime_handler or self.c.config.containerd.default_runtime_name)
            rro = bool(f and f.recursive_read_only_mounts)

        lease_id = f"cri-container-{id_}"
        lease_mgr = self.client.leases
        if lease_mgr is not None:
            expire = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
                seconds=_TEMP_LEASE_EXPIRY
            )
            with self.client.scope():
                await lease_mgr.create(
                    lease_id,
                    {"containerd.io/gc.expire": expire.strftime("%Y-%m-%dT%H:%M:%SZ")},
                )

            async def drop_lease() -> None:
                with self.client.scope():
                    await lease_mgr.delete(lease_id)

            # the lease goes at the end whatever happens: the container record holds the
            # snapshot from then on
            undo.insert(0, ("lease", drop_lease))
        else:
            lease_id = ""
        try:
            record = await self._create_record(
                id_, name, sb, config, sandbox_config, stop_signal, image, image_config,
                handler, snapshotter, rro, lease_id, volume_requests, undo,
            )  # fmt: skip
        finally:
            if lease_id:
                # taken out of the undo list: it is dropped in every case
                undo[:] = [u for u in undo if u[0] != "lease"]
                with contextlib.suppress(errdefs.ContainerdError), self.client.scope():
                    await lease_mgr.delete(lease_id)
        container = record
        self.emit(container.id, sb.id, _pb().ContainerEventType.CONTAINER_CREATED_EVENT)
        await self._nri("post_create_container", sandbox=sb, container=container)
        return id_

    async def _create_record(
        self,
        id_: str,
        name: str,
        sb: sandboxes.SandboxView,
        config: Any,
        sandbox_config: Any,
        stop_signal: str,
        image: Any,
        image_config: dict[str, Any],
        handler: Any,
        snapshotter: str,
        rro: bool,
        lease_id: str,
        volume_requests: list[image_volumes.Request],
        undo: list[tuple[str, Callable[[], Any]]],
    ) -> Container:
        sn = self.client.snapshotter(snapshotter)
        if not image.chain_id:
            raise errdefs.FailedPrecondition(f"image {image.id!r} has no layers")
        with leases.use(lease_id or None):
            await self.c.images.ensure_unpacked(
                image, config.image.image, snapshotter, sb.runtime_handler
            )
            with self.client.scope():
                await sn.prepare(id_, image.chain_id)

        async def remove_snapshot() -> None:
            with self.client.scope():
                await sn.remove(id_)

        undo.append(("snapshot", remove_snapshot))

        # the user: resolved from the container's own rootfs (read-only mount)
        sc = config.linux.security_context
        userstr = specs.user_string(config, image_config)
        merge = sc.supplemental_groups_policy != 1
        with self.client.scope():
            mounts = await sn.mounts(id_)
        from pycontainerd.core.mount import with_temp_mount

        try:
            async with with_temp_mount(mounts, readonly=True) as rootfs:
                user = await asyncio.to_thread(specs.resolve_user, rootfs, userstr, merge)
        except errdefs.NotFound as e:
            raise errdefs.InvalidArgument(f"failed to resolve user {userstr!r}: {e}") from None

        # image volumes: views mounted on the host, the mounts turned into read-only binds
        volume_keys: list[str] = []
        if volume_requests:
            undo.append(
                ("image volumes", lambda: self.volumes.remove(id_, snapshotter, volume_keys))
            )
            await self.volumes.prepare(
                id_, config, volume_requests, snapshotter=snapshotter,
                handler=sb.runtime_handler, lease_id=lease_id, keys=volume_keys,
            )  # fmt: skip

        target_pid = 0
        if sc.namespace_options.pid == 3:  # TARGET
            target = self.store.get(sc.namespace_options.target_id)
            if target.sandbox_id != sb.id or target.state() != RUNNING:
                raise errdefs.InvalidArgument(
                    f"invalid target container {sc.namespace_options.target_id!r}"
                )
            target_pid = target.status.pid

        base = (
            self.c.runtime.base_oci_specs.get(handler.base_runtime_spec)
            if handler.base_runtime_spec
            else None
        )
        image_name = config.image.user_specified_image or (
            image.references[0] if image.references else config.image.image
        )
        cfg = self.c.config
        options = specs.SpecOptions(
            restrict_oom_score_adj=cfg.restrict_oom_score_adj,
            disable_proc_mount=cfg.disable_proc_mount,
            unset_seccomp_profile=cfg.unset_seccomp_profile,
            pod_annotations=tuple(handler.pod_annotations),
            container_annotations=tuple(handler.container_annotations),
            privileged_without_host_devices=handler.privileged_without_host_devices,
            privileged_without_host_devices_all_devices_allowed=(
                handler.privileged_without_host_devices_all_devices_allowed
            ),
            rro_supported=rro,
            base_spec=base,
            swap_available=specs.swap_controller_available(),
        )
        spec = await asyncio.to_thread(
            specs.container_spec,
            id_=id_,
            sandbox_id=sb.id,
            sandbox_pid=sb.pid,
            config=config,
            sandbox_config=sandbox_config,
            image_config=image_config,
            image_name=image_name,
            user=user,
            namespace=constants.K8S_NAMESPACE,
            paths=sb.paths,
            options=options,
            target_pid=target_pid,
        )
        if devices := cdi.requested(config):
            await asyncio.to_thread(
                cdi.inject,
                spec,
                devices,
                enabled=cfg.enable_cdi,
                spec_dirs=cfg.cdi_spec_dirs,
            )
        if not stop_signal:
            stop_signal = str(image_config.get("StopSignal") or "")
        log_path = ""
        if sandbox_config.log_directory and config.log_path:
            log_path = os.path.join(sandbox_config.log_directory, config.log_path)
        meta = Metadata(
            id=id_,
            name=name,
            sandbox_id=sb.id,
            config=config,
            image_ref=image.id,
            image_digest="",
            image_name=image.references[0] if image.references else "",
            log_path=log_path,
            stop_signal=stop_signal,
        )
        io = await asyncio.to_thread(
            ContainerIO.create,
            id_,
            self.volatile_dir(id_),
            tty=config.tty,
            stdin=config.stdin,
            stdin_once=config.stdin_once,
            max_line=cfg.max_container_log_line_size,
        )
        undo.append(("io", io.remove))

        labels = {k: v for k, v in dict(image_config.get("Labels") or {}).items()}
        labels.update(dict(config.labels))
        labels[ann.KIND_LABEL] = ann.KIND_CONTAINER
        labels.update(image_volumes.gc_labels(snapshotter, volume_keys))
        runtime_name, runtime_options = await self._runtime_info(sb, handler)
        adjusted = await self._nri_adjust(sb, meta, spec)
        record = Record(
            id=id_,
            labels=labels,
            image=meta.image_name or config.image.image,
            runtime=RecordRuntime(name=runtime_name, options=runtime_options),
            spec=to_any(adjusted),
            snapshotter=snapshotter,
            snapshot_key=id_,
            extensions={ann.CONTAINER_METADATA_EXTENSION: meta.to_typed()},
            sandbox=sb.id,
        )
        with leases.use(lease_id or None):
            await self._containers("create", record)
        undo.append(("container", lambda: self._containers("delete", id_)))

        container = Container(
            metadata=meta,
            storage=StatusStorage(self.root_dir(id_)),
            io=io,
            snapshotter=snapshotter,
            spec_json=adjusted,
        )
        await asyncio.to_thread(
            container.update,
            created_at=now_ns(),
            resources=specs.resources_to_cri(adjusted),
        )
        self.store.add(container)
        undo.append(("store", lambda: self.store.delete(id_)))
        return container

    async def _nri_adjust(self, sb: Any, meta: Metadata, spec: dict[str, Any]) -> dict[str, Any]:
        nri = getattr(self.c, "nri", None)
        fn = getattr(nri, "cri_create_container", None) if nri is not None else None
        if fn is None:
            return spec
        adjusted = await fn(sandbox=sb, metadata=meta, spec=spec)
        return adjusted if isinstance(adjusted, dict) else spec

    async def _runtime_info(self, sb: Any, handler: Any) -> tuple[str, Any]:
        """The runtime of the sandbox's pause container record (as containerd does), else the
        handler's."""
        try:
            record = await self._containers("get", sb.id)
            return record.runtime.name, record.runtime.options
        except errdefs.NotFound:
            from pycontainerd.plugins.cri.podsandbox.controller import runtime_options

            return handler.runtime_type, runtime_options(handler)

    # --- start -----------------------------------------------------------------------

    async def start(self, container_id: str) -> None:
        container = self.store.get(container_id)
        async with container.lock:
            await self._start(container)

    async def _start(self, container: Container) -> None:
        pb = _pb()
        state = container.state()
        if state != CREATED or container.status.starting or container.status.removing:
            raise errdefs.FailedPrecondition(
                f"container {container.id!r} is in {state} state"
                + (" (removing)" if container.status.removing else "")
            )
        sb = sandboxes.get(self.c, container.sandbox_id)
        if not sb.ready:
            raise errdefs.FailedPrecondition(f"sandbox container {sb.id!r} is not running")
        container.update_in_memory(starting=True)
        handler = self.c.config.runtime(sb.runtime_handler)
        task_created = False
        try:
            io: ContainerIO = container.io
            await io.start(container.metadata.log_path)
            fifos = io.fifos
            await self._tasks(
                "create",
                tasks_pb2.CreateTaskRequest(
                    container_id=container.id,
                    stdin=fifos.stdin,
                    stdout=fifos.stdout,
                    stderr=fifos.stderr,
                    terminal=fifos.terminal,
                    runtime_path=handler.runtime_path,
                ),
            )
            task_created = True
            io.open_stdin()
            await self._nri("start_container", sandbox=sb, container=container)
            # wait before start, so an early exit is never missed
            waiter = asyncio.get_running_loop().create_task(
                self._tasks("wait", tasks_pb2.WaitRequest(container_id=container.id))
            )
            started_at = now_ns()
            try:
                resp = await self._tasks("start", tasks_pb2.StartRequest(container_id=container.id))
            except BaseException:
                waiter.cancel()
                raise
            await asyncio.to_thread(container.update, pid=int(resp.pid), started_at=started_at)
        except BaseException as e:
            log.warning("failed to start container %s: %s", container.id, e)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    container.update,
                    pid=0,
                    finished_at=now_ns(),
                    exit_code=START_ERROR_EXIT_CODE,
                    reason=REASON_START_ERROR,
                    message=str(e),
                )
            if task_created:
                await asyncio.shield(self._delete_task(container.id, kill=True))
            with contextlib.suppress(Exception):
                await container.io.close()
            container.stopped.set()
            await asyncio.shield(self._nri("stop_container", sandbox=sb, container=container))
            raise
        finally:
            container.update_in_memory(starting=False)
        container.monitor = self._spawn(
            self._monitor(container, waiter), f"cri container exit monitor {container.id[:12]}"
        )
        self.emit(container.id, container.sandbox_id, pb.ContainerEventType.CONTAINER_STARTED_EVENT)
        await self._nri("post_start_container", sandbox=sb, container=container)

    async def _delete_task(self, id_: str, *, kill: bool) -> tuple[int, int] | None:
        """Kill (optionally) and delete the task; its (exit status, exited at ns)."""
        if kill:
            with contextlib.suppress(errdefs.NotFound, errdefs.FailedPrecondition):
                await self._tasks(
                    "kill",
                    tasks_pb2.KillRequest(container_id=id_, signal=signal_.SIGKILL, all=True),
                )
                with contextlib.suppress(TimeoutError, errdefs.ContainerdError):
                    async with asyncio.timeout(10):
                        await self._tasks("wait", tasks_pb2.WaitRequest(container_id=id_))
        try:
            resp = await self._tasks("delete", tasks_pb2.DeleteTaskRequest(container_id=id_))
        except errdefs.NotFound:
            return None
        except errdefs.ContainerdError as e:
            log.warning("failed to delete task of container %s: %s", id_, e)
            return None
        return int(resp.exit_status), _from_ts(resp.exited_at)

    async def _monitor(self, container: Container, waiter: asyncio.Future[Any] | None) -> None:
        """Wait for the task to exit, record the exit, delete the task."""
        id_ = container.id
        while True:
            try:
                if waiter is None:
                    waiter = asyncio.ensure_future(
                        self._tasks("wait", tasks_pb2.WaitRequest(container_id=id_))
                    )
                resp = await waiter
                code, exited = int(resp.exit_status), _from_ts(resp.exited_at) or now_ns()
                break
            except asyncio.CancelledError:
                raise
            except errdefs.ContainerdError as e:
                if self._closed:
                    return
                # a failed wait is no exit: ask for the task (the daemon may be going down)
                waiter = None
                try:
                    got = await self._tasks("get", tasks_pb2.GetRequest(container_id=id_))
                except errdefs.NotFound:
                    log.warning("container %s: task gone (%s); exit unknown", id_, e)
                    code, exited = UNKNOWN_EXIT_CODE, now_ns()
                    break
                except errdefs.ContainerdError:
                    got = None
                if got is not None and got.process.status == task_pb2.Status.STOPPED:
                    code = int(got.process.exit_status)
                    exited = _from_ts(got.process.exited_at) or now_ns()
                    break
                await asyncio.sleep(1.0)
        if self._closed:
            return
        await self._handle_exit(container, code, exited)

    async def _handle_exit(self, container: Container, code: int, exited: int) -> None:
        id_ = container.id
        oom = False
        with contextlib.suppress(Exception):
            oom = await asyncio.to_thread(self._oom_killed_of, container)
        await self._delete_task(id_, kill=False)
        if container.io is not None:
            with contextlib.suppress(TimeoutError):
                await container.io.wait_output(OUTPUT_DRAIN_TIMEOUT)
            await container.io.close()
        reason = exit_reason(code, oom)
        exited = max(exited, container.status.started_at)
        log.info("container %s exited with status %d (%s)", id_, code, reason)
        try:
            await asyncio.to_thread(
                container.update, pid=0, finished_at=exited, exit_code=code, reason=reason
            )
        except OSError as e:
            log.error("failed to checkpoint the exit of container %s: %s", id_, e)
            container.update_in_memory(pid=0, finished_at=exited, exit_code=code, reason=reason)
        container.stopped.set()
        self.emit(id_, container.sandbox_id, _pb().ContainerEventType.CONTAINER_STOPPED_EVENT)
        await self._nri("stop_container", container=container)

    def _oom_killed_of(self, container: Container) -> bool:
        return self._oom_killed_path(self._spec_cgroup(container))

    def _spec_cgroup(self, container: Container) -> str:
        spec = getattr(container, "spec_json", None)
        return str(((spec or {}).get("linux") or {}).get("cgroupsPath") or "")

    @staticmethod
    def _oom_killed_path(path: str) -> bool:
        if not path or ":" in path:
            return False
        for f in (
            f"/sys/fs/cgroup/memory{path}/memory.oom_control",
            f"/sys/fs/cgroup{path}/memory.events",
        ):
            try:
                with open(f) as fh:
                    for line in fh:
                        key, _, value = line.strip().partition(" ")
                        if key == "oom_kill" and int(value or 0) > 0:
                            return True
            except (OSError, ValueError):
                continue
        return False

    # --- stop / remove ---------------------------------------------------------------

    async def stop(self, container_id: str, timeout: float) -> None:
        try:
            container = self.store.get(container_id)
        except errdefs.NotFound:
            # StopContainer is idempotent: an unknown (already removed) container is not an
            # error (CRI api.proto; containerd 2.x answers OK, critest Idempotence checks it)
            log.debug("StopContainer: container %r not found, nothing to stop", container_id)
            return
        await self._stop(container, timeout)
        await self._nri("stop_container", container=container)

    async def _stop(self, container: Container, timeout: float) -> None:
        state = container.state()
        if container.status.starting:
            raise errdefs.FailedPrecondition(f"container {container.id!r} is still starting")
        if state not in (RUNNING, UNKNOWN):
            return
        if state == UNKNOWN and container.monitor is None:
            # nobody watches it: clean up what is there and record an unknown exit
            result = await self._delete_task(container.id, kill=True)
            code, exited = result if result is not None else (UNKNOWN_EXIT_CODE, now_ns())
            await asyncio.to_thread(
                container.update,
                pid=0,
                finished_at=exited or now_ns(),
                exit_code=code,
                reason=REASON_UNKNOWN,
            )
            container.update_in_memory(unknown=False)
            container.stopped.set()
            await self._nri("stop_container", container=container)
            return
        if timeout > 0:
            sig = signal_number(container.metadata.stop_signal)
            log.info("stopping container %s with signal %d", container.id, sig)
            await self._kill(
                container, tasks_pb2.KillRequest(container_id=container.id, signal=sig)
            )
            try:
                async with asyncio.timeout(timeout):
                    await container.stopped.wait()
                return
            except TimeoutError:
                log.info("container %s did not stop within %.0fs; killing", container.id, timeout)
        await self._kill(
            container,
            tasks_pb2.KillRequest(container_id=container.id, signal=signal_.SIGKILL, all=True),
        )
        await container.stopped.wait()

    async def _kill(self, container: Container, request: Any) -> None:
        """Signal the task. NotFound: it is gone. Unavailable (the shim connection closed
        under the call): the task exited and its exit monitor is deleting it, a kill racing
        that delete; fine once the monitor records the exit within ``KILL_RACE_GRACE``."""
        try:
            await self._tasks("kill", request)
        except errdefs.NotFound:
            pass
        except errdefs.Unavailable as e:
            try:
                async with asyncio.timeout(KILL_RACE_GRACE):
                    await container.stopped.wait()
            except TimeoutError:
                raise e from None
            log.debug("kill of container %s raced its exit (%s)", container.id, e)

    async def remove(self, container_id: str) -> None:
        try:
            container = self.store.get(container_id)
        except errdefs.NotFound:
            log.debug("container %s to remove is not found", container_id)
            return
        async with container.lock:
            if container.state() in (RUNNING, UNKNOWN):
                await self._stop(container, 0)
            container.update_in_memory(removing=True)
            try:
                await self._remove(container)
            except BaseException:
                container.update_in_memory(removing=False)
                raise
        self.emit(
            container.id, container.sandbox_id, _pb().ContainerEventType.CONTAINER_DELETED_EVENT
        )

    async def _remove(self, container: Container) -> None:
        id_ = container.id
        await self._nri("remove_container", container=container)
        with contextlib.suppress(errdefs.NotFound):
            record = await self._containers("get", id_)
            # image volumes before the record: unmounted while the record still holds them
            await self.volumes.remove(
                id_,
                record.snapshotter,
                image_volumes.keys_from_labels(record.snapshotter, record.labels),
            )
            await self._containers("delete", id_)
            if record.snapshotter and record.snapshot_key:
                with contextlib.suppress(errdefs.NotFound), self.client.scope():
                    await self.client.snapshotter(record.snapshotter).remove(record.snapshot_key)
        await self.volumes.remove(id_, container.snapshotter)
        if container.io is not None:
            await container.io.remove()
        await asyncio.to_thread(shutil.rmtree, self.root_dir(id_), True)
        await asyncio.to_thread(shutil.rmtree, self.volatile_dir(id_), True)
        self.store.delete(id_)
        self.store.names.release_by_name(container.name)
        invalidate = getattr(getattr(self.c.images, "snapshot_store", None), "invalidate", None)
        if invalidate is not None:
            invalidate()

    async def stop_all(self, sandbox_id: str, timeout: float = 0) -> None:
        """Stop every container of a pod (StopPodSandbox): SIGKILL unless ``timeout``."""
        errors = []
        for container in self.store.by_sandbox(sandbox_id):
            try:
                await self._stop(container, timeout)
            except errdefs.ContainerdError as e:
                errors.append(f"{container.id}: {e}")
        if errors:
            raise errdefs.Unknown(
                f"failed to stop containers of sandbox {sandbox_id!r}: {'; '.join(errors)}"
            )

    async def remove_all(self, sandbox_id: str) -> None:
        """Remove every container of a pod (RemovePodSandbox)."""
        errors = []
        for container in self.store.by_sandbox(sandbox_id):
            try:
                await self.remove(container.id)
            except errdefs.ContainerdError as e:
                errors.append(f"{container.id}: {e}")
        if errors:
            raise errdefs.Unknown(
                f"failed to remove containers of sandbox {sandbox_id!r}: {'; '.join(errors)}"
            )

    # --- status and list -------------------------------------------------------------

    def _image_info(self, container: Container) -> tuple[Any, str, str]:
        """(ImageSpec, image_ref, image_id) as containerd reports them: the first repo tag
        and repo digest of the image when it is still there."""
        pb = _pb()
        md = container.metadata
        spec = pb.ImageSpec()
        spec.CopyFrom(md.config.image)
        image_ref = md.image_ref
        try:
            image = self.c.images.get_image(md.image_ref)
        except errdefs.ContainerdError:
            return spec, image_ref, md.image_ref
        tags = [r for r in image.references if "@" not in r and not r.startswith("sha256:")]
        digests = [r for r in image.references if "@" in r]
        if tags:
            spec = pb.ImageSpec(image=tags[0])
        if digests:
            image_ref = digests[0]
        return spec, image_ref, image.id

    def to_status(self, container: Container) -> Any:
        pb = _pb()
        md, st = container.metadata, container.status
        image_spec, image_ref, image_id = self._image_info(container)
        status = pb.ContainerStatus(
            id=container.id,
            metadata=md.config.metadata,
            state=getattr(pb.ContainerState, st.state()),
            created_at=st.created_at,
            started_at=st.started_at,
            finished_at=st.finished_at,
            exit_code=st.exit_code,
            image=image_spec,
            image_ref=image_ref,
            image_id=image_id,
            reason=st.reason,
            message=st.message,
            labels=dict(md.config.labels),
            annotations=dict(md.config.annotations),
            mounts=list(md.config.mounts),
            log_path=md.log_path,
        )
        if md.stop_signal:
            with contextlib.suppress(ValueError):
                name = md.stop_signal.upper()
                status.stop_signal = pb.Signal.Value(
                    name if name.startswith("SIG") else "SIG" + name
                )
        if st.resources:
            from pycontainerd.plugins.cri.container.store import message_from_json

            status.resources.CopyFrom(message_from_json(pb.ContainerResources, st.resources))
        spec = getattr(container, "spec_json", None)
        if spec:
            user = (spec.get("process") or {}).get("user") or {}
            status.user.linux.uid = int(user.get("uid", 0))
            status.user.linux.gid = int(user.get("gid", 0))
            status.user.linux.supplemental_groups.extend(
                int(g) for g in user.get("additionalGids") or []
            )
        return status

    async def status(self, container_id: str, verbose: bool) -> Any:
        pb = _pb()
        container = self.store.get(container_id)
        await self._load_spec(container)
        resp = pb.ContainerStatusResponse(status=self.to_status(container))
        if verbose:
            info = {
                "sandboxID": container.sandbox_id,
                "pid": container.status.pid,
                "removing": container.status.removing,
                "snapshotKey": container.id,
                "snapshotter": container.snapshotter,
                "config": json.loads(
                    json.dumps(container.metadata.to_json()["Metadata"]["Config"])
                ),
                "runtimeSpec": getattr(container, "spec_json", None),
            }
            with contextlib.suppress(errdefs.ContainerdError):
                record = await self._containers("get", container.id)
                info["runtimeType"] = record.runtime.name
            resp.info["info"] = json.dumps(info)
        return resp

    async def _load_spec(self, container: Container) -> dict[str, Any] | None:
        spec = getattr(container, "spec_json", None)
        if spec is not None:
            return spec  # type: ignore[no-any-return]
        try:
            record = await self._containers("get", container.id)
        except errdefs.NotFound:
            return None
        spec = from_any(record.spec) if record.spec is not None else None
        container.spec_json = spec
        return spec

    def to_listed(self, container: Container) -> Any:
        pb = _pb()
        md, st = container.metadata, container.status
        image_spec, image_ref, image_id = self._image_info(container)
        return pb.Container(
            id=container.id,
            pod_sandbox_id=container.sandbox_id,
            metadata=md.config.metadata,
            image=image_spec,
            image_ref=image_ref,
            image_id=image_id,
            state=getattr(pb.ContainerState, st.state()),
            created_at=st.created_at,
            labels=dict(md.config.labels),
            annotations=dict(md.config.annotations),
        )

    def listed(self, containers: Iterable[Container]) -> bytes:
        """The ``repeated Container containers = 1`` field of a List/StreamContainers
        response for ``containers``, encoded: each entry is built once and reused until the
        container's status, metadata or image changes."""
        images: dict[str, Any] = {}
        cache = self._listed
        out = []
        for container in containers:
            md, st = container.metadata, container.status
            ref = md.image_ref
            if ref in images:
                image = images[ref]
            else:
                try:
                    image = images[ref] = self.c.images.get_image(ref)
                except errdefs.ContainerdError:
                    image = images[ref] = None
            hit = cache.get(container.id)
            if hit is not None and hit[0] is md and hit[1] is st and hit[2] is image:
                out.append(hit[3])
                continue
            data = self.to_listed(container).SerializeToString()
            entry = b"\x0a" + _varint(len(data)) + data
            cache[container.id] = (md, st, image, entry)
            out.append(entry)
        if len(cache) > 2 * len(self.store) + 64:
            live = {c.id for c in self.store}
            for id_ in [i for i in cache if i not in live]:
                del cache[id_]
        return b"".join(out)

    def list(self, flt: Any = None) -> list[Container]:
        containers = self.store.list()
        if flt is None:
            return containers
        if flt.id:
            try:
                want = self.store.get(flt.id).id
            except errdefs.ContainerdError:
                want = flt.id
            containers = [c for c in containers if c.id == want]
        if flt.pod_sandbox_id:
            sb = sandboxes.find(self.c, flt.pod_sandbox_id)
            want_sb = sb.id if sb is not None else flt.pod_sandbox_id
            containers = [c for c in containers if c.sandbox_id == want_sb]
        if flt.HasField("state"):
            name = _pb().ContainerState.Name(flt.state.state)
            containers = [c for c in containers if c.state() == name]
        if flt.label_selector:
            sel = dict(flt.label_selector)
            containers = [
                c for c in containers if all(c.config.labels.get(k) == v for k, v in sel.items())
            ]
        return containers

    # --- update / reopen -------------------------------------------------------------

    async def update_resources(self, container_id: str, resources: Any, annotations: Any) -> None:
        container = self.store.get(container_id)
        async with container.lock:
            state = container.state()
            if state not in (CREATED, RUNNING):
                raise errdefs.FailedPrecondition(f"container {container.id!r} is in {state} state")
            update_nri = getattr(getattr(self.c, "nri", None), "cri_update_container", None)
            if update_nri is not None:
                resources = await update_nri(container=container, resources=resources)
            record = await self._containers("get", container.id)
            spec = from_any(record.spec)
            old = json.dumps(spec)
            specs._set_resources(spec, resources, specs.swap_controller_available())
            if resources.oom_score_adj:
                spec.setdefault("process", {})["oomScoreAdj"] = specs.oom_score_adj(
                    resources.oom_score_adj, self.c.config.restrict_oom_score_adj
                )
            new_record = attrs.evolve(record, spec=to_any(spec))
            await self._containers("update", new_record, ["spec"])
            try:
                if state == RUNNING:
                    linux_res = (spec.get("linux") or {}).get("resources") or {}
                    await self._tasks(
                        "update",
                        tasks_pb2.UpdateTaskRequest(
                            container_id=container.id,
                            resources=any_pb2.Any(
                                type_url=LINUX_RESOURCES_TYPE_URL,
                                value=json.dumps(linux_res).encode(),
                            ),
                            annotations=dict(annotations or {}),
                        ),
                    )
            except BaseException:
                with contextlib.suppress(Exception):
                    await self._containers(
                        "update", attrs.evolve(record, spec=to_any(json.loads(old))), ["spec"]
                    )
                raise
            container.spec_json = spec
            await asyncio.to_thread(container.update, resources=specs.resources_to_cri(spec))
        await self._nri("post_update_container", container=container)

    async def reopen_log(self, container_id: str) -> None:
        container = self.store.get(container_id)
        if container.state() != RUNNING:
            raise errdefs.FailedPrecondition("container is not running")
        if container.io is not None:
            await container.io.reopen_log()

    # --- exec ------------------------------------------------------------------------

    async def exec_process(
        self,
        container_id: str,
        cmd: list[str],
        *,
        stdin: Any = None,
        stdout: Callable[[bytes], Any] | None = None,
        stderr: Callable[[bytes], Any] | None = None,
        tty: bool = False,
        resize: Any = None,
        timeout: float = 0,
    ) -> int:
        """Run ``cmd`` in the running container; its exit code. With ``timeout`` > 0 the
        process is killed after that long and DeadlineExceeded raised."""
        container = self.store.get(container_id)
        if container.state() != RUNNING:
            raise errdefs.FailedPrecondition(
                f"container {container.id!r} is in {container.state()} state"
            )
        if not cmd:
            raise errdefs.InvalidArgument("exec command must not be empty")
        spec = await self._load_spec(container)
        if spec is None:
            raise errdefs.NotFound(f"container {container.id!r} not found")
        process = dict(spec.get("process") or {})
        process["args"] = list(cmd)
        process["terminal"] = tty
        process.pop("consoleSize", None)
        exec_id = os.urandom(16).hex()
        eio = await asyncio.to_thread(
            ExecIO.create,
            self.volatile_dir(container.id),
            exec_id,
            tty=tty,
            stdin=stdin is not None,
            stdout=stdout is not None,
            stderr=stderr is not None and not tty,
        )
        cid = container.id
        started = False
        try:
            await eio.start_output(stdout, stderr)
            fifos = eio.fifos
            await self._tasks(
                "exec",
                tasks_pb2.ExecProcessRequest(
                    container_id=cid,
                    exec_id=exec_id,
                    terminal=tty,
                    stdin=fifos.stdin,
                    stdout=fifos.stdout,
                    stderr=fifos.stderr,
                    spec=any_pb2.Any(type_url=PROCESS_TYPE_URL, value=json.dumps(process).encode()),
                ),
            )
            waiter = asyncio.ensure_future(
                self._tasks("wait", tasks_pb2.WaitRequest(container_id=cid, exec_id=exec_id))
            )
            try:
                await self._tasks(
                    "start", tasks_pb2.StartRequest(container_id=cid, exec_id=exec_id)
                )
            except BaseException:
                waiter.cancel()
                raise
            started = True

            async def close_stdin() -> None:
                with contextlib.suppress(errdefs.ContainerdError):
                    await self._tasks(
                        "close_io",
                        tasks_pb2.CloseIORequest(container_id=cid, exec_id=exec_id, stdin=True),
                    )

            eio.start_input(stdin, close_stdin)
            resizer = None
            if resize is not None and tty:
                resizer = asyncio.ensure_future(self._resize_loop(cid, exec_id, resize))
            try:
                try:
                    async with asyncio.timeout(timeout if timeout > 0 else None):
                        resp = await asyncio.shield(waiter)
                except TimeoutError:
                    with contextlib.suppress(errdefs.ContainerdError):
                        await self._tasks(
                            "kill",
                            tasks_pb2.KillRequest(
                                container_id=cid, exec_id=exec_id, signal=signal_.SIGKILL
                            ),
                        )
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(10):
                            await waiter
                    raise errdefs.DeadlineExceeded(
                        f"timeout {timeout:g}s exceeded: context deadline exceeded"
                    ) from None
            finally:
                if resizer is not None:
                    resizer.cancel()
            drain = self._drain_timeout()
            if not await eio.wait_output(drain):
                log.warning("exec %s in %s: output not drained after %gs", exec_id, cid, drain)
            return int(resp.exit_status)
        finally:
            if started:
                with contextlib.suppress(errdefs.ContainerdError):
                    await self._tasks(
                        "delete_process",
                        tasks_pb2.DeleteProcessRequest(container_id=cid, exec_id=exec_id),
                    )
            await eio.close()

    def _drain_timeout(self) -> float | None:
        from pycontainerd.core import durations

        try:
            value = durations.parse(self.c.config.drain_exec_sync_io_timeout)
        except errdefs.ContainerdError:
            return None
        seconds = value.total_seconds() if hasattr(value, "total_seconds") else float(value)
        return seconds or None

    async def _resize_loop(self, container_id: str, exec_id: str, resize: Any) -> None:
        async for size in resize:
            with contextlib.suppress(errdefs.ContainerdError):
                await self._tasks(
                    "resize_pty",
                    tasks_pb2.ResizePtyRequest(
                        container_id=container_id,
                        exec_id=exec_id,
                        width=size.width,
                        height=size.height,
                    ),
                )

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> Any:
        out, err = bytearray(), bytearray()
        code = await self.exec_process(
            container_id, cmd, stdout=out.extend, stderr=err.extend, timeout=timeout
        )
        return _pb().ExecSyncResponse(stdout=bytes(out), stderr=bytes(err), exit_code=code)

    async def attach(
        self, container_id: str, stdin: Any, stdout: Any, stderr: Any, tty: bool, resize: Any
    ) -> None:
        container = self.store.get(container_id)
        if container.state() != RUNNING:
            raise errdefs.FailedPrecondition(
                f"container {container.id!r} is in {container.state()} state"
            )
        if container.io is None:
            raise errdefs.FailedPrecondition(f"container {container.id!r} has no io to attach to")
        resizer = None
        if resize is not None and tty:
            resizer = asyncio.ensure_future(self._resize_loop(container.id, "", resize))
        try:
            await container.io.attach(stdin, stdout, stderr)
        finally:
            if resizer is not None:
                resizer.cancel()

    # --- stats -----------------------------------------------------------------------

    async def _metrics(self, ids: list[str]) -> dict[str, Any]:
        if not ids:
            return {}
        resp = await self._tasks(
            "metrics", tasks_pb2.MetricsRequest(filters=[f"id=={i}" for i in ids])
        )
        out: dict[str, Any] = {}
        for m in resp.metrics:
            out[m.id] = m
        return out

    def _decode_metrics(self, metric: Any) -> Any:
        from pycontainerd.plugins.runtimes.pyrunc.metrics import message_class

        data = metric.data
        if not data.type_url.endswith("io.containerd.cgroups.v1.Metrics"):
            return None
        msg = message_class("Metrics")()
        msg.ParseFromString(data.value)
        return msg

    async def stats(self, containers: list[Container]) -> list[Any]:
        pb = _pb()
        running = [c for c in containers if c.state() == RUNNING]
        metrics = await self._metrics([c.id for c in running])
        with contextlib.suppress(Exception):
            await self.c.images.snapshot_store.sync(max_age=1.0)
        out = []
        for c in containers:
            ts = now_ns()
            st = pb.ContainerStats(
                attributes=pb.ContainerAttributes(
                    id=c.id,
                    metadata=c.config.metadata,
                    labels=dict(c.config.labels),
                    annotations=dict(c.config.annotations),
                )
            )
            with contextlib.suppress(errdefs.ContainerdError):
                sn = self.c.images.get_snapshot(c.id, c.snapshotter)
                st.writable_layer.timestamp = sn.timestamp
                st.writable_layer.fs_id.mountpoint = self.c.images.image_fs_paths.get(
                    c.snapshotter, ""
                )
                st.writable_layer.used_bytes.value = sn.size
                st.writable_layer.inodes_used.value = sn.inodes
            m = metrics.get(c.id)
            decoded = self._decode_metrics(m) if m is not None else None
            if decoded is not None:
                if m.HasField("timestamp"):
                    ts = _from_ts(m.timestamp)
                usage = int(decoded.cpu.usage.total)
                st.cpu.timestamp = ts
                st.cpu.usage_core_nano_seconds.value = usage
                if c.cpu_sample is not None and ts > c.cpu_sample[0]:
                    st.cpu.usage_nano_cores.value = max(
                        0, (usage - c.cpu_sample[1]) * 1_000_000_000 // (ts - c.cpu_sample[0])
                    )
                c.cpu_sample = (ts, usage)
                mem = decoded.memory
                working = int(mem.usage.usage)
                inactive = int(mem.total_inactive_file)
                working = working - inactive if inactive < working else 0
                st.memory.timestamp = ts
                st.memory.working_set_bytes.value = working
                st.memory.usage_bytes.value = int(mem.usage.usage)
                st.memory.rss_bytes.value = int(mem.total_rss)
                st.memory.page_faults.value = int(mem.total_pg_fault)
                st.memory.major_page_faults.value = int(mem.total_pg_maj_fault)
                st.memory.available_bytes.value = max(0, int(mem.usage.limit) - working)
            out.append(st)
        return out

    # --- recovery --------------------------------------------------------------------

    async def recover(self) -> None:
        """Rebuild the store from the container records of ``k8s.io`` with the container
        kind label, their status checkpoints and their tasks."""
        try:
            records = await self._containers(
                "list", [f'labels."{ann.KIND_LABEL}"=={ann.KIND_CONTAINER}']
            )
        except errdefs.ContainerdError as e:
            log.error("cri: failed to list containers to recover: %s", e)
            return
        for record in records:
            try:
                await self._recover_one(record)
            except Exception as e:  # noqa: BLE001 - one bad container does not stop the rest
                log.error("cri: failed to recover container %s: %s", record.id, e)
        log.info("cri: recovered %d containers", len(self.store))
        await self.volumes.recover({r.id: r.snapshotter for r in records})

    async def _recover_one(self, record: Record) -> None:
        meta = Metadata.from_typed(record.extensions.get(ann.CONTAINER_METADATA_EXTENSION))
        storage = StatusStorage(self.root_dir(meta.id))
        try:
            status = await asyncio.to_thread(storage.load)
        except errdefs.NotFound:
            status = Status(
                created_at=_ns(record.created_at) if record.created_at else now_ns(),
                unknown=False,
            )
        container = Container(
            metadata=meta, status=status, storage=storage, snapshotter=record.snapshotter
        )
        container.spec_json = from_any(record.spec) if record.spec is not None else None
        config = meta.config
        fifos = find_fifos(self.volatile_dir(meta.id), meta.id, stdin=config.stdin, tty=config.tty)
        if fifos is not None:
            container.io = ContainerIO(
                id=meta.id,
                fifos=fifos,
                tty=config.tty,
                stdin=config.stdin,
                stdin_once=config.stdin_once,
                max_line=self.c.config.max_container_log_line_size,
            )
        elif status.state() == CREATED:
            container.io = await asyncio.to_thread(
                ContainerIO.create,
                meta.id,
                self.volatile_dir(meta.id),
                tty=config.tty,
                stdin=config.stdin,
                stdin_once=config.stdin_once,
                max_line=self.c.config.max_container_log_line_size,
            )
        try:
            resp = await self._tasks("get", tasks_pb2.GetRequest(container_id=meta.id))
            proc = resp.process
        except errdefs.NotFound:
            proc = None
        if proc is None:
            if status.state() == RUNNING:
                # the task is gone (its shim died): exit unknown
                await asyncio.to_thread(
                    container.update,
                    pid=0,
                    finished_at=now_ns(),
                    exit_code=UNKNOWN_EXIT_CODE,
                    reason=REASON_UNKNOWN,
                )
            container.stopped.set()
        elif proc.status == task_pb2.Status.RUNNING or proc.status == task_pb2.Status.PAUSED:
            if not status.started_at:
                await asyncio.to_thread(container.update, started_at=now_ns())
            if status.pid != proc.pid:
                await asyncio.to_thread(container.update, pid=int(proc.pid))
            if container.io is not None:
                try:
                    await container.io.start(meta.log_path)
                except OSError as e:
                    log.warning("cri: failed to reattach io of container %s: %s", meta.id, e)
                container.io.open_stdin()
            container.monitor = self._spawn(
                self._monitor(container, None), f"cri container exit monitor {meta.id[:12]}"
            )
        elif proc.status == task_pb2.Status.STOPPED:
            result = await self._delete_task(meta.id, kill=False)
            code = proc.exit_status
            exited = _from_ts(proc.exited_at) or now_ns()
            if result is not None:
                code, exited = result[0], result[1] or exited
            if not status.started_at:
                container.update_in_memory(started_at=exited)
            await asyncio.to_thread(
                container.update,
                pid=0,
                finished_at=exited,
                exit_code=code,
                reason=exit_reason(code, self._oom_killed_path(self._spec_cgroup(container))),
            )
            container.stopped.set()
        else:
            # created but never started (a crash during StartContainer): take it down
            result = await self._delete_task(meta.id, kill=True)
            code = result[0] if result is not None else UNKNOWN_EXIT_CODE
            await asyncio.to_thread(
                container.update,
                pid=0,
                started_at=status.started_at or now_ns(),
                finished_at=now_ns(),
                exit_code=code,
                reason=REASON_UNKNOWN,
            )
            container.stopped.set()
        if container.state() == EXITED and container.io is not None:
            await container.io.close()
        self.store.add(container)
        self.store.names.reserve(meta.name, meta.id)

    # --- lifecycle -------------------------------------------------------------------

    async def close(self) -> None:
        self._closed = True
        self._own_events.close()
        server = getattr(self.c, "stream_server", None)
        if server is not None:
            with contextlib.suppress(Exception):
                await server.stop()
            self.c.stream_server = None
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for container in self.store:
            if container.io is not None:
                with contextlib.suppress(Exception):
                    await container.io.close()


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
