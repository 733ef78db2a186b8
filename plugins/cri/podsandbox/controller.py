"""The ``podsandbox`` sandbox controller (containerd's ``internal/cri/server/podsandbox``): a
pod sandbox is a pause container run through the in-process containers and tasks services.

``start`` ensures the pinned sandbox image (pulled when absent), creates the sandbox
directories and files, the pause container (snapshot from the image in the runtime
handler's snapshotter, labels ``io.cri-containerd.kind=sandbox``, the CRI metadata as
extension ``io.cri-containerd.sandbox.metadata``) and its task with null IO, and starts it;
each step is undone, in reverse, when a later one fails. An exit monitor waits for the pause
task; on exit it deletes the task and resolves :meth:`wait`. ``stop`` kills the task and
waits for that; ``shutdown`` removes the container, its snapshot and the sandbox files.
Every call runs in namespace ``k8s.io`` and, while creating, under the sandbox's lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from google.protobuf import json_format

from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2
from pycontainerd.api.containerd.types.task import task_pb2
from pycontainerd.core import errdefs, leases
from pycontainerd.core.metadata.containers import Container, Runtime
from pycontainerd.core.runtime.spec import from_any, to_any
from pycontainerd.plugins.cri.client import Client
from pycontainerd.plugins.cri.config import Runtime as RuntimeHandler
from pycontainerd.plugins.cri.podsandbox import files
from pycontainerd.plugins.cri.podsandbox.spec import sandbox_spec
from pycontainerd.plugins.cri.sandbox import annotations as ann
from pycontainerd.plugins.cri.sandbox.paths import SandboxPaths
from pycontainerd.plugins.cri.sandbox.store import Metadata

log = logging.getLogger(__name__)

#: the exit status recorded when a sandbox's exit could not be observed
UNKNOWN_EXIT_CODE = 255
STOP_TIMEOUT = 30.0

READY = "SANDBOX_READY"
NOTREADY = "SANDBOX_NOTREADY"
UNKNOWN = "SANDBOX_UNKNOWN"


@attrs.frozen(kw_only=True)
class Exit:
    status: int = 0
    exited_at: datetime.datetime | None = None


@attrs.frozen(kw_only=True)
class Instance:
    """What ``start`` reports (containerd's ``ControllerInstance``)."""

    sandbox_id: str
    pid: int
    created_at: datetime.datetime
    labels: dict[str, str] = attrs.Factory(dict)


@attrs.frozen(kw_only=True)
class ControllerStatus:
    sandbox_id: str
    state: str
    pid: int = 0
    created_at: datetime.datetime | None = None
    exited_at: datetime.datetime | None = None
    info: dict[str, str] = attrs.Factory(dict)


@attrs.define(eq=False, kw_only=True)
class PodSandbox:
    """The controller's record of one sandbox."""

    id: str
    metadata: Metadata
    state: str = UNKNOWN
    pid: int = 0
    created_at: datetime.datetime | None = None
    image: str = ""
    snapshotter: str = ""
    runtime_type: str = ""
    runtime_options: tuple[str, bytes] | None = None
    spec: dict[str, Any] | None = None
    #: True once the pause container record exists
    container: bool = False
    exit: asyncio.Future[Exit] = attrs.Factory(lambda: asyncio.get_running_loop().create_future())
    monitor: asyncio.Task[Any] | None = None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _from_ts(ts: Any) -> datetime.datetime | None:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.ToDatetime(tzinfo=datetime.UTC)


def runtime_options(handler: RuntimeHandler) -> tuple[str, bytes] | None:
    """A handler's ``options`` table as the typed options of its runtime type:
    ``containerd.runc.v1.Options`` (Go field names as keys) for runc shims,
    ``runtimeoptions.v1.Options`` for others; None when there are none."""
    from pycontainerd.plugins.cri import constants

    opts = dict(handler.options or {})
    if handler.runtime_type in constants.RUNC_RUNTIME_TYPES:
        from pycontainerd.api.containerd.types.runc.options import oci_pb2

        msg = oci_pb2.Options()
        names = {f.json_name.lower(): f.name for f in msg.DESCRIPTOR.fields}
        names.update({f.name.replace("_", ""): f.name for f in msg.DESCRIPTOR.fields})
        for key, value in opts.items():
            field = names.get(str(key).lower().replace("_", ""))
            if field is None:
                raise errdefs.InvalidArgument(
                    f"unknown option {key!r} for runtime type {handler.runtime_type!r}"
                )
            try:
                setattr(msg, field, value)
            except (TypeError, ValueError) as e:
                raise errdefs.InvalidArgument(f"invalid runtime option {key!r}: {e}") from None
        return ("containerd.runc.v1.Options", msg.SerializeToString())
    if not opts:
        return None
    from pycontainerd.api.containerd.types.runtimeoptions.v1 import api_pb2

    msg = api_pb2.Options(
        type_url=str(opts.get("TypeUrl") or opts.get("type_url") or ""),
        config_path=str(opts.get("ConfigPath") or opts.get("config_path") or ""),
    )
    return ("runtimeoptions.v1.Options", msg.SerializeToString())


def _ignore_not_found(e: BaseException) -> bool:
    return isinstance(e, errdefs.NotFound)


@attrs.define(eq=False, kw_only=True)
class Controller:
    """``io.containerd.podsandbox.controller.v1.podsandbox``."""

    #: the CRI runtime plugin (config, root/state dirs, base specs)
    runtime: Any
    #: the CRI image service (local resolution, pulls)
    images: Any
    client: Client
    _sandboxes: dict[str, PodSandbox] = attrs.Factory(dict)
    _closed: bool = False

    # --- helpers -------------------------------------------------------------------------

    def paths(self, id_: str) -> SandboxPaths:
        return SandboxPaths(self.runtime.root_dir, self.runtime.state_dir, id_)

    def sandbox_image(self) -> str:
        from pycontainerd.plugins.cri.config import DEFAULT_SANDBOX_IMAGE

        return str(self.images.config.pinned_images.get("sandbox") or DEFAULT_SANDBOX_IMAGE)

    def _get(self, id_: str) -> PodSandbox:
        found = self._sandboxes.get(id_)
        if found is None:
            raise errdefs.NotFound(f"sandbox {id_!r} not found in the podsandbox controller")
        return found

    async def _ensure_image(self, ref: str, config: Any, handler: str) -> Any:
        try:
            return self.images.local_resolve(ref)
        except errdefs.NotFound:
            pass
        log.info("pulling sandbox image %s", ref)
        try:
            image_id = await self.images.pull_image(
                ref, sandbox_config=config, runtime_handler=handler
            )
        except errdefs.ContainerdError as e:
            raise errdefs.from_code(e.code, f"failed to pull sandbox image {ref!r}: {e}") from e
        return self.images.get_image(image_id)

    async def _tasks_call(self, method: str, request: Any) -> Any:
        with self.client.scope():
            return await getattr(self.client.require("tasks"), method)(request)

    # --- the controller API --------------------------------------------------------------

    async def create(self, metadata: Metadata) -> None:
        """Record a sandbox to start (containerd's ``Controller.Create``)."""
        if metadata.id in self._sandboxes:
            raise errdefs.AlreadyExists(f"sandbox {metadata.id!r} already exists")
        self._sandboxes[metadata.id] = PodSandbox(id=metadata.id, metadata=metadata)

    async def start(self, id_: str) -> Instance:
        """Run the pause container of a created sandbox."""
        sb = self._get(id_)
        md = sb.metadata
        config = md.config
        handler_name = md.runtime_handler
        handler: RuntimeHandler = self.runtime.runtime(handler_name)
        undo: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        try:
            with leases.use(id_), self.client.scope():
                ref = self.sandbox_image()
                image = await self._ensure_image(ref, config, handler_name)
                snapshotter = self.images.runtime_snapshotter(handler)
                sb.image = ref
                sb.snapshotter = snapshotter
                sb.runtime_type = handler.runtime_type
                sb.runtime_options = runtime_options(handler)

                paths = self.paths(id_)
                undo.append(("sandbox files", lambda: asyncio.to_thread(files.remove, paths)))
                await asyncio.to_thread(files.make_dirs, paths)
                base = (
                    self.runtime.base_oci_specs.get(handler.base_runtime_spec)
                    if handler.base_runtime_spec
                    else None
                )
                spec = sandbox_spec(
                    id_=id_,
                    config=config,
                    image_config=dict(image.spec.get("config") or {}),
                    image_name=ref,
                    netns_path=md.netns_path,
                    paths=paths,
                    pod_annotations=handler.pod_annotations,
                    restrict_oom_score_adj=self.runtime.config.restrict_oom_score_adj,
                    enable_unprivileged_ports=self.runtime.config.enable_unprivileged_ports,
                    enable_unprivileged_icmp=self.runtime.config.enable_unprivileged_icmp,
                    base_spec=base,
                )
                sb.spec = spec
                await asyncio.to_thread(files.setup, paths, config)

                sn = self.client.snapshotter(snapshotter)
                if not image.chain_id:
                    raise errdefs.FailedPrecondition(f"sandbox image {ref!r} has no layers")
                await self.images.ensure_unpacked(image, ref, snapshotter, handler_name)
                await sn.prepare(id_, image.chain_id)
                undo.append(("snapshot", lambda: sn.remove(id_)))

                labels = {k: v for k, v in dict(config.labels).items()}
                labels.update(
                    {
                        k: v
                        for k, v in dict(
                            (image.spec.get("config") or {}).get("Labels") or {}
                        ).items()
                        if k not in labels
                    }
                )
                labels[ann.KIND_LABEL] = ann.KIND_SANDBOX
                container = Container(
                    id=id_,
                    labels=labels,
                    image=ref,
                    runtime=Runtime(name=handler.runtime_type, options=sb.runtime_options),
                    spec=to_any(spec),
                    snapshotter=snapshotter,
                    snapshot_key=id_,
                    extensions={ann.SANDBOX_METADATA_EXTENSION: md.to_typed()},
                )
                containers = self.client.require("containers")
                created = await containers.create(container)
                sb.container = True
                sb.created_at = created.created_at
                undo.append(("container", lambda: containers.delete(id_)))

                await self._tasks_call(
                    "create",
                    tasks_pb2.CreateTaskRequest(
                        container_id=id_, runtime_path=handler.runtime_path
                    ),
                )
                undo.append(("task", lambda: self._delete_task(id_, kill=True)))
                # wait before start, so an early exit is never missed
                sb.monitor = asyncio.get_running_loop().create_task(
                    self._monitor(sb), name=f"podsandbox exit monitor {id_[:12]}"
                )
                resp = await self._tasks_call("start", tasks_pb2.StartRequest(container_id=id_))
        except BaseException as e:
            log.warning("failed to start sandbox %s, undoing: %s", id_, e)
            await asyncio.shield(self._undo(id_, undo))
            if sb.monitor is not None:
                sb.monitor.cancel()
            sb.container = False
            self._sandboxes.pop(id_, None)
            raise
        sb.pid = int(resp.pid)
        sb.created_at = sb.created_at or _now()
        sb.state = READY
        return Instance(sandbox_id=id_, pid=sb.pid, created_at=sb.created_at)

    async def _undo(self, id_: str, undo: list[tuple[str, Callable[[], Awaitable[Any]]]]) -> None:
        with leases.use(id_), self.client.scope():
            for what, fn in reversed(undo):
                try:
                    await fn()
                except errdefs.NotFound:
                    pass
                except Exception as e:  # noqa: BLE001 - every step is tried
                    log.error("failed to clean up %s of sandbox %s: %s", what, id_, e)

    async def _delete_task(self, id_: str, *, kill: bool) -> Exit:
        if kill:
            with contextlib.suppress(errdefs.NotFound, errdefs.FailedPrecondition):
                await self._tasks_call(
                    "kill", tasks_pb2.KillRequest(container_id=id_, signal=signal.SIGKILL, all=True)
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(STOP_TIMEOUT):
                        await self._tasks_call("wait", tasks_pb2.WaitRequest(container_id=id_))
        resp = await self._tasks_call("delete", tasks_pb2.DeleteTaskRequest(container_id=id_))
        return Exit(status=int(resp.exit_status), exited_at=_from_ts(resp.exited_at))

    async def _monitor(self, sb: PodSandbox) -> None:
        """Wait for the pause task to exit; delete it; resolve :meth:`wait`."""
        id_ = sb.id
        try:
            resp = await self._tasks_call("wait", tasks_pb2.WaitRequest(container_id=id_))
            exit_ = Exit(status=int(resp.exit_status), exited_at=_from_ts(resp.exited_at) or _now())
        except asyncio.CancelledError:
            raise
        except errdefs.ContainerdError as e:
            if self._closed:
                return  # the daemon is going down; the task lives on
            log.warning("failed to wait for sandbox %s: %s", id_, e)
            exit_ = Exit(status=UNKNOWN_EXIT_CODE, exited_at=_now())
        if self._closed:
            return
        log.info("sandbox %s exited with status %d", id_, exit_.status)
        try:
            await self._delete_task(id_, kill=True)
        except errdefs.NotFound:
            pass
        except errdefs.ContainerdError as e:
            log.warning("failed to delete the task of sandbox %s: %s", id_, e)
        sb.state = NOTREADY
        sb.pid = 0
        if not sb.exit.done():
            sb.exit.set_result(exit_)

    async def stop(self, id_: str) -> None:
        """Kill the pause task and wait until its exit is handled; unmount /dev/shm."""
        sb = self._get(id_)
        if sb.state in (READY, UNKNOWN) and sb.container:
            try:
                await self._tasks_call(
                    "kill", tasks_pb2.KillRequest(container_id=id_, signal=signal.SIGKILL, all=True)
                )
            except errdefs.NotFound:
                pass
            except errdefs.FailedPrecondition as e:
                log.debug("kill of sandbox %s: %s", id_, e)
            if sb.monitor is None or sb.monitor.done():
                # nobody watches the task (unknown state): clean up here
                with contextlib.suppress(errdefs.NotFound):
                    await self._delete_task(id_, kill=True)
                sb.state = NOTREADY
                if not sb.exit.done():
                    sb.exit.set_result(Exit(status=UNKNOWN_EXIT_CODE, exited_at=_now()))
            else:
                try:
                    async with asyncio.timeout(STOP_TIMEOUT):
                        await asyncio.shield(sb.exit)
                except TimeoutError:
                    raise errdefs.DeadlineExceeded(
                        f"sandbox {id_!r} did not exit within {STOP_TIMEOUT:.0f}s of SIGKILL"
                    ) from None
        await asyncio.to_thread(files.unmount_shm, self.paths(id_))

    async def wait(self, id_: str) -> Exit:
        """The pause task's exit, once it happened."""
        return await asyncio.shield(self._get(id_).exit)

    async def status(self, id_: str, verbose: bool = False) -> ControllerStatus:
        sb = self._get(id_)
        info: dict[str, str] = {}
        if verbose:
            info["info"] = json.dumps(self._info(sb))
        exited = sb.exit.result().exited_at if sb.exit.done() else None
        return ControllerStatus(
            sandbox_id=id_,
            state=sb.state,
            pid=sb.pid,
            created_at=sb.created_at,
            exited_at=exited,
            info=info,
        )

    def _info(self, sb: PodSandbox) -> dict[str, Any]:
        from pycontainerd.core.netns import NetNS

        md = sb.metadata
        options: Any = None
        if sb.runtime_options is not None and sb.runtime_options[0].endswith(
            "containerd.runc.v1.Options"
        ):
            from pycontainerd.api.containerd.types.runc.options import oci_pb2

            msg = oci_pb2.Options()
            msg.ParseFromString(sb.runtime_options[1])
            options = json_format.MessageToDict(msg)
        netns_closed = False
        if md.netns_path:
            try:
                netns_closed = NetNS.load(md.netns_path).closed()
            except errdefs.ContainerdError:
                netns_closed = True
        return {
            "pid": sb.pid,
            "processStatus": {READY: "running", NOTREADY: "stopped"}.get(sb.state, "unknown"),
            "netNamespaceClosed": netns_closed,
            "image": sb.image,
            "snapshotKey": sb.id,
            "snapshotter": sb.snapshotter,
            "runtimeHandler": md.runtime_handler,
            "runtimeType": sb.runtime_type,
            "runtimeOptions": options,
            "config": json_format.MessageToDict(md.config),
            "runtimeSpec": sb.spec,
            "cniResult": md.cni_result,
            "sandboxMetadata": md.to_json()["Metadata"],
        }

    async def shutdown(self, id_: str) -> None:
        """Delete the pause task, container and snapshot, and the sandbox's files."""
        sb = self._sandboxes.get(id_)
        paths = self.paths(id_)
        with self.client.scope():
            with contextlib.suppress(errdefs.NotFound):
                await self._delete_task(id_, kill=True)
            if sb is not None and sb.monitor is not None and not sb.monitor.done():
                sb.monitor.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sb.monitor
            snapshotter = sb.snapshotter if sb is not None else ""
            try:
                container = await self.client.require("containers").get(id_)
            except errdefs.NotFound:
                container = None
            if container is not None:
                snapshotter = container.snapshotter or snapshotter
                await self.client.require("containers").delete(id_)
            if snapshotter:
                try:
                    await self.client.snapshotter(snapshotter).remove(id_)
                except errdefs.NotFound:
                    pass
        await asyncio.to_thread(files.remove, paths)
        self._sandboxes.pop(id_, None)

    async def recover(self, metadata: Metadata) -> ControllerStatus:
        """Rebuild the record of a sandbox after a restart: READY when its pause task still
        runs (an exit monitor follows it again), NOTREADY otherwise (a stopped task is
        deleted)."""
        id_ = metadata.id
        sb = PodSandbox(id=id_, metadata=metadata, state=NOTREADY)
        self._sandboxes[id_] = sb
        with self.client.scope():
            try:
                container = await self.client.require("containers").get(id_)
            except errdefs.NotFound:
                container = None
            if container is not None:
                sb.container = True
                sb.image = container.image
                sb.snapshotter = container.snapshotter
                sb.runtime_type = container.runtime.name
                sb.runtime_options = container.runtime.options
                sb.created_at = container.created_at
                if container.spec is not None:
                    with contextlib.suppress(ValueError):
                        sb.spec = from_any(container.spec)
                try:
                    resp = await self._tasks_call("get", tasks_pb2.GetRequest(container_id=id_))
                    process = resp.process
                except errdefs.NotFound:
                    process = None
                except errdefs.ContainerdError as e:
                    log.warning("failed to get the task of sandbox %s: %s", id_, e)
                    process = None
                    sb.state = UNKNOWN
                if process is not None:
                    if process.status == task_pb2.RUNNING:
                        sb.state = READY
                        sb.pid = int(process.pid)
                        sb.monitor = asyncio.get_running_loop().create_task(
                            self._monitor(sb), name=f"podsandbox exit monitor {id_[:12]}"
                        )
                    else:
                        with contextlib.suppress(errdefs.ContainerdError):
                            await self._delete_task(id_, kill=True)
        if sb.state != READY and not sb.exit.done() and sb.state != UNKNOWN:
            sb.exit.set_result(Exit(status=UNKNOWN_EXIT_CODE, exited_at=_now()))
        return ControllerStatus(
            sandbox_id=id_, state=sb.state, pid=sb.pid, created_at=sb.created_at
        )

    async def close(self) -> None:
        self._closed = True
        monitors = [s.monitor for s in self._sandboxes.values() if s.monitor is not None]
        for m in monitors:
            m.cancel()
        await asyncio.gather(*monitors, return_exceptions=True)
