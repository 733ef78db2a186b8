"""The shim's task service: containerd's task API (v2 and v3, wire-identical) over runc.

One shim serves every container of its group (a pod), each with an init process and exec
processes. Exits come from the :class:`~.reaper.Reaper`; events go through the
:class:`~.publisher.Publisher` in the order containerd requires: create -> start -> exit ->
delete, exec-added -> exec-started -> exit (an exit that happens while Start is still running
is held back until the start event is out).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import attrs
from google.protobuf import any_pb2, empty_pb2

from pycontainerd.api.containerd.events import task_pb2 as events
from pycontainerd.api.containerd.runtime.task.v3 import shim_pb2
from pycontainerd.api.containerd.types.runc.options import oci_pb2
from pycontainerd.api.containerd.types.task import task_pb2 as task_types
from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.mount import Mount, mount_all, unmount_recursive
from pycontainerd.core.runc import Runc, RuncNotFound, RuncNotRunning
from pycontainerd.plugins.runtimes.pyrunc import bundle as bundle_files
from pycontainerd.plugins.runtimes.pyrunc.oom import OOMWatcher
from pycontainerd.plugins.runtimes.pyrunc.publisher import Publisher, timestamp
from pycontainerd.plugins.runtimes.pyrunc.stdio import ProcessIO

log = logging.getLogger(__name__)

Status = task_types.Status
EARLY_EXIT_TTL = 60.0


def unpack_options(options: any_pb2.Any | None) -> oci_pb2.Options:
    """containerd.runc.v1.Options from a Create request (empty when absent)."""
    opts = oci_pb2.Options()
    if options is None or not options.type_url:
        return opts
    if not options.type_url.endswith("containerd.runc.v1.Options"):
        raise errdefs.InvalidArgument(f"unsupported runtime options type {options.type_url!r}")
    try:
        opts.ParseFromString(options.value)
    except Exception as e:  # noqa: BLE001 - protobuf decode errors
        raise errdefs.InvalidArgument(f"invalid runtime options: {e}") from e
    return opts


def runc_for(bundle: str, namespace: str, opts: oci_pb2.Options) -> Runc:
    doc = {"binary_name": opts.binary_name, "root": opts.root}
    return Runc(
        command=bundle_files.runc_command(doc),
        root=bundle_files.runc_root(doc, namespace),
        log=os.path.join(bundle, bundle_files.RUNC_LOG),
        systemd_cgroup=opts.systemd_cgroup,
    )


@attrs.define(eq=False)
class Process:
    container: Container
    id: str  # exec id; "" for the init process
    io: ProcessIO
    spec: dict[str, Any] | None = None  # exec processes
    pid: int = 0
    status: int = Status.CREATED
    exit_status: int = 0
    exited_at: float = 0.0
    starting: bool = False
    _pending_exit: tuple[int, float] | None = attrs.field(default=None, init=False)
    exited: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)

    @property
    def is_init(self) -> bool:
        return not self.id

    @property
    def process_id(self) -> str:
        """The id containerd reports for it: the container id for the init process."""
        return self.id or self.container.id


@attrs.define(eq=False)
class Container:
    id: str
    bundle: str
    namespace: str
    runc: Runc
    rootfs: list[Mount]
    spec: dict[str, Any]
    init: Process = attrs.field(init=False)
    execs: dict[str, Process] = attrs.field(factory=dict, init=False)
    oom: OOMWatcher | None = attrs.field(default=None, init=False)

    def process(self, exec_id: str) -> Process:
        if not exec_id:
            return self.init
        p = self.execs.get(exec_id)
        if p is None:
            raise errdefs.NotFound(f"process {exec_id} does not exist in container {self.id}")
        return p

    @property
    def has_own_pid_namespace(self) -> bool:
        for ns in (self.spec.get("linux") or {}).get("namespaces") or []:
            if ns.get("type") == "pid":
                return not ns.get("path")
        return False


@attrs.define(eq=False)
class TaskService:
    """Handlers named like the Task RPCs; requests are v3 messages (wire-identical to v2)."""

    namespace: str
    publisher: Publisher
    #: set when the shim should exit (Shutdown)
    shutdown_requested: asyncio.Event = attrs.field(factory=asyncio.Event)
    #: called once when the shim decides to go: stop accepting connections at once, so that
    #: a ``start`` for the same group forks a new shim instead of joining this one
    on_stopping: Callable[[], None] | None = None
    _stopping: bool = attrs.field(default=False, init=False)
    containers: dict[str, Container] = attrs.field(factory=dict, init=False)
    _by_pid: dict[int, Process] = attrs.field(factory=dict, init=False)
    _early_exits: dict[int, tuple[int, float]] = attrs.field(factory=dict, init=False)
    _tasks: set[asyncio.Task[Any]] = attrs.field(factory=set, init=False)

    # -- helpers

    def _ns(self) -> str:
        return namespaces.get() or self.namespace

    def _publish(self, container: Container, topic: str, event: Any) -> None:
        self.publisher.publish(container.namespace, topic, event)

    def _container(self, id: str) -> Container:
        c = self.containers.get(id)
        if c is None:
            raise errdefs.NotFound(f"container {id!r} not created: not found")
        return c

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _track(self, p: Process, pid: int) -> None:
        p.pid = pid
        self._by_pid[pid] = p
        early = self._early_exits.pop(pid, None)
        if early is not None:
            self._exited(p, *early)

    # -- exits (from the reaper)

    def on_exit(self, pid: int, status: int, when: float) -> None:
        p = self._by_pid.pop(pid, None)
        if p is None:
            now = time.monotonic()
            self._early_exits = {
                k: v for k, v in self._early_exits.items() if now - v[1] < EARLY_EXIT_TTL
            }
            self._early_exits[pid] = (status, when)
            return
        self._exited(p, status, when)

    def _exited(self, p: Process, status: int, when: float) -> None:
        self._by_pid.pop(p.pid, None)
        if p.starting:
            p._pending_exit = (status, when)
            return
        if p.exited.is_set():
            return
        p.status = Status.STOPPED
        p.exit_status = status
        p.exited_at = when
        c = p.container
        log.debug("exit id=%s exec=%s pid=%d status=%d", c.id, p.id, p.pid, status)
        self._publish(
            c,
            "/tasks/exit",
            events.TaskExit(
                container_id=c.id,
                id=p.process_id,
                pid=p.pid,
                exit_status=status,
                exited_at=timestamp(when),
            ),
        )
        p.exited.set()
        self._spawn(p.io.wait_output(), f"drain {c.id}/{p.id}")
        if p.is_init:
            if c.oom is not None:
                c.oom.close()
                c.oom = None
            if not c.has_own_pid_namespace and any(
                not e.exited.is_set() and e.pid for e in c.execs.values()
            ):
                self._spawn(self._kill_all(c), f"kill all {c.id}")

    async def _kill_all(self, c: Container) -> None:
        with contextlib.suppress(errdefs.ContainerdError):
            await c.runc.kill(c.id, signal.SIGKILL, all=True)

    # -- RPCs

    async def State(self, req: shim_pb2.StateRequest) -> shim_pb2.StateResponse:
        c = self._container(req.id)
        p = c.process(req.exec_id)
        status = p.status
        if p.is_init and status in (Status.RUNNING, Status.PAUSED) and not p.exited.is_set():
            with contextlib.suppress(errdefs.ContainerdError):
                st = (await c.runc.state(c.id)).get("status", "")
                status = {
                    "created": Status.CREATED,
                    "running": Status.RUNNING,
                    "paused": Status.PAUSED,
                    "pausing": Status.PAUSING,
                    "stopped": Status.STOPPED,
                }.get(st, status)
        resp = shim_pb2.StateResponse(
            id=p.process_id,
            bundle=c.bundle,
            pid=p.pid,
            status=status,
            stdin=p.io.stdin,
            stdout=p.io.stdout,
            stderr=p.io.stderr,
            terminal=p.io.terminal,
            exit_status=p.exit_status,
            exec_id=p.id,
        )
        if p.exited.is_set():
            resp.exited_at.CopyFrom(timestamp(p.exited_at))
        return resp

    async def Create(self, req: shim_pb2.CreateTaskRequest) -> shim_pb2.CreateTaskResponse:
        if not req.id:
            raise errdefs.InvalidArgument("task id must not be empty")
        if req.id in self.containers:
            raise errdefs.AlreadyExists(f"task {req.id} already exists")
        if self._stopping:
            raise errdefs.Unavailable("shim is shutting down")
        if req.checkpoint:
            raise errdefs.NotImplemented_("pyrunc shim: restore from checkpoint is not supported")
        bundle = req.bundle or os.getcwd()
        ns = self._ns()
        opts = unpack_options(req.options if req.HasField("options") else None)
        try:
            with open(os.path.join(bundle, "config.json")) as f:
                spec = json.load(f)
        except FileNotFoundError as e:
            raise errdefs.InvalidArgument(f"bundle {bundle}: config.json not found") from e
        except ValueError as e:
            raise errdefs.InvalidArgument(f"bundle {bundle}: invalid config.json: {e}") from e
        bundle_files.write_options(
            bundle,
            binary_name=opts.binary_name,
            root=opts.root,
            systemd_cgroup=opts.systemd_cgroup,
        )
        mounts = [
            Mount(type=m.type, source=m.source, target=m.target, options=tuple(m.options))
            for m in req.rootfs
        ]
        rootfs = os.path.join(bundle, "rootfs")
        if mounts:
            os.makedirs(rootfs, mode=0o711, exist_ok=True)
            try:
                await mount_all(mounts, rootfs)
            except errdefs.ContainerdError:
                raise
            except OSError as e:
                raise errdefs.Unknown(f"failed to mount rootfs component {mounts}: {e}") from e
        c = Container(
            id=req.id,
            bundle=bundle,
            namespace=ns,
            runc=runc_for(bundle, ns, opts),
            rootfs=mounts,
            spec=spec,
        )
        pio = ProcessIO(
            stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, terminal=req.terminal
        )
        c.init = Process(container=c, id="", io=pio)
        self.containers[c.id] = c
        try:
            stdio = pio.prepare()
            pid = await c.runc.create(
                c.id,
                bundle,
                pid_file=os.path.join(bundle, bundle_files.INIT_PID_FILE),
                stdio=stdio,
                console_socket=pio.console_socket,
                no_pivot=opts.no_pivot_root,
                no_new_keyring=opts.no_new_keyring,
            )
            await pio.started()
        except BaseException:
            self.containers.pop(c.id, None)
            pio.close_now()
            with contextlib.suppress(Exception):
                await c.runc.delete(c.id, force=True)
            if mounts:
                with contextlib.suppress(Exception):
                    await unmount_recursive(rootfs)
            raise
        self._track(c.init, pid)
        c.oom = OOMWatcher.for_pid(pid, lambda: self._oom(c))
        self._publish(
            c,
            "/tasks/create",
            events.TaskCreate(
                container_id=c.id,
                bundle=bundle,
                rootfs=list(req.rootfs),
                io=events.TaskIO(
                    stdin=req.stdin,
                    stdout=req.stdout,
                    stderr=req.stderr,
                    terminal=req.terminal,
                ),
                checkpoint=req.checkpoint,
                pid=pid,
            ),
        )
        return shim_pb2.CreateTaskResponse(pid=pid)

    def _oom(self, c: Container) -> None:
        log.info("oom event id=%s", c.id)
        self._publish(c, "/tasks/oom", events.TaskOOM(container_id=c.id))

    async def Start(self, req: shim_pb2.StartRequest) -> shim_pb2.StartResponse:
        c = self._container(req.id)
        p = c.process(req.exec_id)
        if p.status != Status.CREATED or p.starting:
            raise errdefs.FailedPrecondition(
                f"cannot start {'exec ' + p.id if p.id else 'task ' + c.id}: not in created state"
            )
        p.starting = True
        try:
            if p.is_init:
                await c.runc.start(c.id)
                p.status = Status.RUNNING
                self._publish(c, "/tasks/start", events.TaskStart(container_id=c.id, pid=p.pid))
            else:
                if c.init.exited.is_set():
                    raise errdefs.FailedPrecondition(f"container {c.id} is not running")
                stdio = p.io.prepare()
                try:
                    pid = await c.runc.exec(
                        c.id,
                        p.spec or {},
                        pid_file=os.path.join(c.bundle, f"{p.id}.pid"),
                        stdio=stdio,
                        console_socket=p.io.console_socket,
                    )
                    await p.io.started()
                except BaseException:
                    p.io.close_now()
                    raise
                p.status = Status.RUNNING
                p.pid = pid
                self._publish(
                    c,
                    "/tasks/exec-started",
                    events.TaskExecStarted(container_id=c.id, exec_id=p.id, pid=pid),
                )
                p.starting = False
                self._track(p, pid)
        finally:
            p.starting = False
        if p._pending_exit is not None:
            status, when = p._pending_exit
            p._pending_exit = None
            self._exited(p, status, when)
        return shim_pb2.StartResponse(pid=p.pid)

    async def Delete(self, req: shim_pb2.DeleteRequest) -> shim_pb2.DeleteResponse:
        c = self._container(req.id)
        p = c.process(req.exec_id)
        if p.status in (Status.RUNNING, Status.PAUSED) and not p.exited.is_set():
            what = f"exec {p.id}" if p.id else f"task {c.id}"
            raise errdefs.FailedPrecondition(f"cannot delete running {what}")
        if not p.is_init:
            c.execs.pop(p.id, None)
            p.io.close_now()
            self._by_pid.pop(p.pid, None)
            return self._delete_response(p)
        if any(not e.exited.is_set() and e.status == Status.RUNNING for e in c.execs.values()):
            await self._kill_all(c)
        self._by_pid.pop(p.pid, None)  # a created (never started) init is killed: no exit event
        try:
            await c.runc.delete(c.id, force=p.status == Status.CREATED)
        except RuncNotFound:
            pass
        if not p.exited.is_set():
            p.status = Status.STOPPED
            p.exited_at = time.time()
            p.exited.set()
        for e in list(c.execs.values()):
            e.io.close_now()
            if not e.exited.is_set():
                e.status = Status.STOPPED
                e.exited.set()
        p.io.close_now()
        if c.oom is not None:
            c.oom.close()
            c.oom = None
        if c.rootfs:
            try:
                await unmount_recursive(os.path.join(c.bundle, "rootfs"))
            except Exception as e:  # noqa: BLE001 - report, the task is gone either way
                log.warning("failed to unmount rootfs id=%s error=%s", c.id, e)
        self.containers.pop(c.id, None)
        self._publish(
            c,
            "/tasks/delete",
            events.TaskDelete(
                container_id=c.id,
                pid=p.pid,
                exit_status=p.exit_status,
                exited_at=timestamp(p.exited_at),
            ),
        )
        return self._delete_response(p)

    def _delete_response(self, p: Process) -> shim_pb2.DeleteResponse:
        resp = shim_pb2.DeleteResponse(pid=p.pid, exit_status=p.exit_status)
        if p.exited_at:
            resp.exited_at.CopyFrom(timestamp(p.exited_at))
        return resp

    async def Pids(self, req: shim_pb2.PidsRequest) -> shim_pb2.PidsResponse:
        c = self._container(req.id)
        pids = await c.runc.ps(c.id)
        exec_of = {e.pid: e.id for e in c.execs.values() if e.pid}
        resp = shim_pb2.PidsResponse()
        for pid in pids:
            info = resp.processes.add(pid=pid)
            exec_id = exec_of.get(pid)
            if exec_id:
                details = oci_pb2.ProcessDetails(exec_id=exec_id)
                info.info.CopyFrom(
                    any_pb2.Any(
                        type_url=details.DESCRIPTOR.full_name, value=details.SerializeToString()
                    )
                )
        return resp

    async def Pause(self, req: shim_pb2.PauseRequest) -> empty_pb2.Empty:
        c = self._container(req.id)
        if c.init.status != Status.RUNNING or c.init.exited.is_set():
            raise errdefs.FailedPrecondition(f"cannot pause task {c.id}: not running")
        c.init.status = Status.PAUSING
        try:
            await c.runc.pause(c.id)
        except BaseException:
            c.init.status = Status.RUNNING
            raise
        c.init.status = Status.PAUSED
        self._publish(c, "/tasks/paused", events.TaskPaused(container_id=c.id))
        return empty_pb2.Empty()

    async def Resume(self, req: shim_pb2.ResumeRequest) -> empty_pb2.Empty:
        c = self._container(req.id)
        if c.init.status != Status.PAUSED:
            raise errdefs.FailedPrecondition(f"cannot resume task {c.id}: not paused")
        await c.runc.resume(c.id)
        c.init.status = Status.RUNNING
        self._publish(c, "/tasks/resumed", events.TaskResumed(container_id=c.id))
        return empty_pb2.Empty()

    async def Checkpoint(self, req: shim_pb2.CheckpointTaskRequest) -> empty_pb2.Empty:
        raise errdefs.NotImplemented_("pyrunc shim: checkpoint is not implemented")

    async def Kill(self, req: shim_pb2.KillRequest) -> empty_pb2.Empty:
        c = self._container(req.id)
        p = c.process(req.exec_id)
        sig = req.signal or signal.SIGTERM
        if p.exited.is_set():
            raise errdefs.NotFound(f"process {p.process_id} already finished: not found")
        if p.is_init:
            try:
                await c.runc.kill(c.id, sig, all=req.all)
            except RuncNotRunning as e:
                raise errdefs.NotFound(f"process {p.process_id} already finished: {e}") from e
            return empty_pb2.Empty()
        if not p.pid:
            raise errdefs.FailedPrecondition(f"exec {p.id} has not been started")
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError as e:
            raise errdefs.NotFound(f"process {p.id} already finished: not found") from e
        return empty_pb2.Empty()

    async def Exec(self, req: shim_pb2.ExecProcessRequest) -> empty_pb2.Empty:
        c = self._container(req.id)
        if not req.exec_id:
            raise errdefs.InvalidArgument("exec id must not be empty")
        if req.exec_id in c.execs:
            raise errdefs.AlreadyExists(f"id {req.exec_id}: already exists")
        if c.init.exited.is_set():
            raise errdefs.FailedPrecondition(f"container {c.id} is not running")
        try:
            spec = json.loads(req.spec.value) if req.spec.value else {}
        except ValueError as e:
            raise errdefs.InvalidArgument(f"invalid exec process spec: {e}") from e
        if not isinstance(spec, dict) or not spec.get("args"):
            raise errdefs.InvalidArgument("exec process spec must have args")
        pio = ProcessIO(
            stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, terminal=req.terminal
        )
        c.execs[req.exec_id] = Process(container=c, id=req.exec_id, io=pio, spec=spec)
        self._publish(
            c, "/tasks/exec-added", events.TaskExecAdded(container_id=c.id, exec_id=req.exec_id)
        )
        return empty_pb2.Empty()

    async def ResizePty(self, req: shim_pb2.ResizePtyRequest) -> empty_pb2.Empty:
        p = self._container(req.id).process(req.exec_id)
        try:
            p.io.resize(req.width, req.height)
        except OSError as e:
            raise errdefs.Unknown(f"failed to resize pty: {e}") from e
        return empty_pb2.Empty()

    async def CloseIO(self, req: shim_pb2.CloseIORequest) -> empty_pb2.Empty:
        p = self._container(req.id).process(req.exec_id)
        if req.stdin:
            p.io.close_stdin()
        return empty_pb2.Empty()

    async def Update(self, req: shim_pb2.UpdateTaskRequest) -> empty_pb2.Empty:
        c = self._container(req.id)
        if not req.resources.value:
            raise errdefs.InvalidArgument("update: no resources given")
        try:
            json.loads(req.resources.value)
        except ValueError as e:
            raise errdefs.InvalidArgument(f"update: invalid resources: {e}") from e
        await c.runc.update(c.id, bytes(req.resources.value))
        return empty_pb2.Empty()

    async def Wait(self, req: shim_pb2.WaitRequest) -> shim_pb2.WaitResponse:
        p = self._container(req.id).process(req.exec_id)
        await p.exited.wait()
        resp = shim_pb2.WaitResponse(exit_status=p.exit_status)
        resp.exited_at.CopyFrom(timestamp(p.exited_at))
        return resp

    async def Stats(self, req: shim_pb2.StatsRequest) -> shim_pb2.StatsResponse:
        from pycontainerd.plugins.runtimes.pyrunc import metrics

        c = self._container(req.id)
        data = await c.runc.stats(c.id)
        return shim_pb2.StatsResponse(stats=metrics.pack_runc_stats(data))

    async def Connect(self, req: shim_pb2.ConnectRequest) -> shim_pb2.ConnectResponse:
        c = self.containers.get(req.id)
        return shim_pb2.ConnectResponse(
            shim_pid=os.getpid(), task_pid=c.init.pid if c is not None else 0
        )

    async def Shutdown(self, req: shim_pb2.ShutdownRequest) -> empty_pb2.Empty:
        if req.now or not self.containers:
            log.info("shutdown requested now=%s", req.now)
            # answer first, then stop (the reply goes out before the server closes)
            if not self._stopping:
                self._stopping = True
                if self.on_stopping is not None:
                    self.on_stopping()
            asyncio.get_running_loop().call_later(0.05, self.shutdown_requested.set)
        return empty_pb2.Empty()

    async def close(self) -> None:
        for c in list(self.containers.values()):
            if c.oom is not None:
                c.oom.close()
            for p in [c.init, *c.execs.values()]:
                p.io.close_now()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
