"""A connected shim and the task it runs (containerd ``core/runtime/v2/shim.go``).

:class:`TaskClient` speaks ``containerd.task.v2.Task`` or ``containerd.task.v3.Task`` (the
messages are the same on the wire, only the service name differs) over ttrpc, or v3 over gRPC.
:class:`ShimInstance` is one connection to a shim for one bundle; it notices when the
connection drops. :class:`ShimTask` and :class:`ShimProcess` implement the runtime contract
(:mod:`pycontainerd.core.runtime`) on top.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from google.protobuf import any_pb2, empty_pb2

from pycontainerd.api.containerd.runtime.task.v3 import shim_pb2
from pycontainerd.api.containerd.types import mount_pb2
from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.runtime import (
    CreateOpts,
    ExecOpts,
    Exit,
    ProcessInfo,
    State,
    Status,
    TypedValue,
    to_typed,
)
from pycontainerd.core.runtime.bundle import Bundle
from pycontainerd.plugins.runtimes.v2.binary import BootstrapParams, ShimLog

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 100.0
#: containerd's io.containerd.timeout.shim.shutdown
SHUTDOWN_TIMEOUT = 3.0
#: containerd's io.containerd.timeout.shim.load
LOAD_TIMEOUT = 5.0
#: containerd's io.containerd.timeout.task.state
STATE_TIMEOUT = 2.0
#: an ordinary shim call
CALL_TIMEOUT = 30.0
#: how long a waiter whose shim died waits for the dead-shim cleanup
CLEANUP_WAIT = 60.0


def _any(value: TypedValue | None) -> any_pb2.Any | None:
    if value is None:
        return None
    return any_pb2.Any(type_url=value[0], value=value[1])


def _ts(ts: Any) -> datetime.datetime | None:
    if ts is None or (not ts.seconds and not ts.nanos):
        return None
    return ts.ToDatetime(tzinfo=datetime.UTC)  # type: ignore[no-any-return]


class TaskClient:
    """The task API of one shim, v2 or v3, over ttrpc or gRPC."""

    def __init__(self, params: BootstrapParams, conn: Any, *, grpc_channel: Any = None) -> None:
        self.version = params.version
        self.protocol = params.protocol
        self.service = (
            "containerd.task.v3.Task" if params.version >= 3 else "containerd.task.v2.Task"
        )
        self._conn = conn  # ttrpc Client
        self._channel = grpc_channel

    @classmethod
    async def connect(
        cls, params: BootstrapParams, *, timeout: float = CONNECT_TIMEOUT
    ) -> TaskClient:
        if params.protocol == "grpc":
            import grpc

            from pycontainerd.core.server.sockets import strip_unix

            channel = grpc.aio.insecure_channel(f"unix:{strip_unix(params.address)}")
            try:
                async with asyncio.timeout(timeout):
                    await channel.channel_ready()
            except TimeoutError:
                await channel.close()
                raise errdefs.Unavailable(
                    f"failed to connect to shim at {params.address}"
                ) from None
            return cls(params, None, grpc_channel=channel)
        from pycontainerd.core.ttrpc import Client

        return cls(params, await Client.connect(params.address, timeout=timeout))

    @property
    def closed(self) -> bool:
        if self._conn is not None:
            return bool(self._conn.closed)
        return False

    async def wait_closed(self) -> None:
        if self._conn is not None:
            await self._conn.wait_closed()
            return
        import grpc

        while True:  # gRPC: watch the channel state
            state = self._channel.get_state()
            if state == grpc.ChannelConnectivity.SHUTDOWN:
                return
            if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                return
            await self._channel.wait_for_state_change(state)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        if self._channel is not None:
            await self._channel.close()

    async def call(
        self, method: str, request: Any, response_cls: type, timeout: float | None
    ) -> Any:
        if self._conn is not None:
            return await self._conn.call(
                self.service, method, request, response_cls, timeout=timeout
            )
        import grpc

        ns = namespaces.get()
        md = ((namespaces.GRPC_HEADER, ns),) if ns else ()
        stub = self._channel.unary_unary(
            f"/{self.service}/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_cls.FromString,
        )
        try:
            return await stub(request, timeout=timeout, metadata=md)
        except grpc.RpcError as e:
            raise errdefs.from_grpc(e) from None


@attrs.define(eq=False, kw_only=True)
class ShimInstance:
    """One connection to a shim on behalf of one bundle (task)."""

    bundle: Bundle
    params: BootstrapParams
    client: TaskClient
    shim_log: ShimLog | None = None
    #: called once when the connection drops without :meth:`close`
    on_close: Callable[[], Any] | None = None
    _closing: bool = False
    _watcher: asyncio.Task[None] | None = None
    #: the exit the dead-shim cleanup worked out, for waiters whose connection dropped
    dead_exit: asyncio.Future[Exit] = attrs.field(
        factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def id(self) -> str:
        return self.bundle.id

    @property
    def namespace(self) -> str:
        return self.bundle.namespace

    @property
    def endpoint(self) -> str:
        return self.params.endpoint

    def watch(self) -> None:
        """Start noticing the connection dropping (runs in the bundle's namespace)."""
        with namespaces.use(self.namespace):
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch(), name=f"shim watch {self.namespace}/{self.id}"
            )

    async def _watch(self) -> None:
        await self.client.wait_closed()
        if self._closing:
            return
        log.info("shim disconnected id=%s namespace=%s", self.id, self.namespace)
        if self.on_close is not None:
            result = self.on_close()
            if asyncio.iscoroutine(result):
                await result

    @property
    def closing(self) -> bool:
        """The connection was closed (or is being closed) on purpose."""
        return self._closing

    def expect_close(self) -> None:
        """The connection is about to drop on purpose (shutdown): not a dead shim."""
        self._closing = True

    async def close(self) -> None:
        """Drop the connection (the shim keeps running) without triggering ``on_close``."""
        self._closing = True
        await self.client.close()
        if self._watcher is not None and self._watcher is not asyncio.current_task():
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self.shim_log is not None:
            self.shim_log.close()

    async def delete(self) -> None:
        """Close the connection and remove the bundle."""
        await self.close()
        await asyncio.to_thread(self.bundle.delete)


def _state_from(resp: Any) -> State:
    try:
        status = Status(resp.status)
    except ValueError:
        status = Status.UNKNOWN
    return State(
        id=resp.id,
        exec_id=resp.exec_id,
        bundle=resp.bundle,
        pid=resp.pid,
        status=status,
        stdin=resp.stdin,
        stdout=resp.stdout,
        stderr=resp.stderr,
        terminal=resp.terminal,
        exit_status=resp.exit_status,
        exited_at=_ts(resp.exited_at) if resp.HasField("exited_at") else None,
    )


@attrs.define(eq=False)
class ShimProcess:
    """An exec'd process of a shim task."""

    _id: str
    _task: ShimTask

    @property
    def id(self) -> str:
        return self._id

    async def state(self) -> State:
        return await self._task._state(self._id)

    async def kill(self, signal: int, all: bool = False) -> None:  # noqa: A002
        await self._task._kill(self._id, signal, all)

    async def resize_pty(self, width: int, height: int) -> None:
        await self._task._resize(self._id, width, height)

    async def close_io(self) -> None:
        await self._task._close_io(self._id)

    async def start(self) -> int:
        return await self._task._start(self._id)

    async def wait(self) -> Exit:
        return await self._task._wait(self._id)

    async def delete(self) -> Exit:
        resp = await self._task._call(
            "Delete",
            shim_pb2.DeleteRequest(id=self._task.id, exec_id=self._id),
            shim_pb2.DeleteResponse,
        )
        return Exit(pid=resp.pid, status=resp.exit_status, timestamp=_ts(resp.exited_at))


@attrs.define(eq=False)
class ShimTask:
    """The task a shim runs for its bundle (the runtime contract's Task)."""

    shim: ShimInstance

    @property
    def id(self) -> str:
        return self.shim.id

    @property
    def namespace(self) -> str:
        return self.shim.namespace

    @property
    def bundle(self) -> str:
        return self.shim.bundle.path

    async def _call(
        self, method: str, request: Any, response_cls: type, timeout: float | None = CALL_TIMEOUT
    ) -> Any:
        with namespaces.use(self.namespace):
            return await self.shim.client.call(method, request, response_cls, timeout)

    # -- the init process

    async def pid(self) -> int:
        resp = await self._call(
            "Connect", shim_pb2.ConnectRequest(id=self.id), shim_pb2.ConnectResponse, LOAD_TIMEOUT
        )
        return int(resp.task_pid)

    async def connect(self) -> tuple[int, int]:
        """(shim pid, task pid)."""
        resp = await self._call(
            "Connect", shim_pb2.ConnectRequest(id=self.id), shim_pb2.ConnectResponse, LOAD_TIMEOUT
        )
        return int(resp.shim_pid), int(resp.task_pid)

    async def create(self, opts: CreateOpts) -> int:
        req = shim_pb2.CreateTaskRequest(
            id=self.id,
            bundle=self.bundle,
            stdin=opts.io.stdin,
            stdout=opts.io.stdout,
            stderr=opts.io.stderr,
            terminal=opts.io.terminal,
            checkpoint=opts.checkpoint,
            rootfs=[
                mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=m.options)
                for m in opts.rootfs
            ],
        )
        options = _any(opts.options())
        if options is not None:
            req.options.CopyFrom(options)
        resp = await self._call("Create", req, shim_pb2.CreateTaskResponse)
        return int(resp.pid)

    async def state(self) -> State:
        return await self._state("")

    async def kill(self, signal: int, all: bool = False) -> None:  # noqa: A002
        await self._kill("", signal, all)

    async def resize_pty(self, width: int, height: int) -> None:
        await self._resize("", width, height)

    async def close_io(self) -> None:
        await self._close_io("")

    async def start(self) -> int:
        return await self._start("")

    async def wait(self) -> Exit:
        return await self._wait("")

    async def pause(self) -> None:
        await self._call("Pause", shim_pb2.PauseRequest(id=self.id), empty_pb2.Empty)

    async def resume(self) -> None:
        await self._call("Resume", shim_pb2.ResumeRequest(id=self.id), empty_pb2.Empty)

    async def exec(self, exec_id: str, opts: ExecOpts) -> ShimProcess:
        from pycontainerd.core.metadata.validation import validate_identifier

        try:
            validate_identifier(exec_id)
        except errdefs.InvalidArgument as e:
            raise errdefs.InvalidArgument(f"invalid exec id {exec_id!r}: {e}") from None
        req = shim_pb2.ExecProcessRequest(
            id=self.id,
            exec_id=exec_id,
            terminal=opts.io.terminal,
            stdin=opts.io.stdin,
            stdout=opts.io.stdout,
            stderr=opts.io.stderr,
        )
        spec = _any(opts.spec)
        if spec is not None:
            req.spec.CopyFrom(spec)
        await self._call("Exec", req, empty_pb2.Empty)
        return ShimProcess(exec_id, self)

    async def pids(self) -> list[ProcessInfo]:
        resp = await self._call("Pids", shim_pb2.PidsRequest(id=self.id), shim_pb2.PidsResponse)
        return [
            ProcessInfo(pid=p.pid, info=to_typed(p.info) if p.HasField("info") else None)
            for p in resp.processes
        ]

    async def checkpoint(self, path: str, options: TypedValue | None) -> None:
        req = shim_pb2.CheckpointTaskRequest(id=self.id, path=path)
        if options is not None:
            req.options.CopyFrom(_any(options))
        await self._call("Checkpoint", req, empty_pb2.Empty)

    async def update(
        self, resources: TypedValue | None, annotations: Mapping[str, str] | None = None
    ) -> None:
        req = shim_pb2.UpdateTaskRequest(id=self.id, annotations=dict(annotations or {}))
        if resources is not None:
            req.resources.CopyFrom(_any(resources))
        await self._call("Update", req, empty_pb2.Empty)

    async def process(self, exec_id: str) -> ShimProcess:
        p = ShimProcess(exec_id, self)
        await p.state()  # NotFound for an unknown exec
        return p

    async def stats(self) -> TypedValue | None:
        resp = await self._call("Stats", shim_pb2.StatsRequest(id=self.id), shim_pb2.StatsResponse)
        return to_typed(resp.stats) if resp.HasField("stats") else None

    async def shutdown(self) -> None:
        """Ask the shim to exit (it does once it runs no task); the connection then drops."""
        with contextlib.suppress(errdefs.Unavailable, errdefs.DeadlineExceeded):
            await self._call(
                "Shutdown", shim_pb2.ShutdownRequest(id=self.id), empty_pb2.Empty, SHUTDOWN_TIMEOUT
            )

    async def delete(self, *, sandboxed: bool, remove_task: Callable[[], None]) -> Exit:
        """Delete the init process, shut the shim down, remove the bundle.

        When the shim answered, the task is removed from the runtime's list at once (the shim
        sent ``/tasks/delete``). When it is gone (connection closed), the list keeps it until
        the dead-shim cleanup has published the events."""
        shim_err: errdefs.ContainerdError | None = None
        resp: Any = None
        try:
            resp = await self._call(
                "Delete", shim_pb2.DeleteRequest(id=self.id), shim_pb2.DeleteResponse
            )
        except errdefs.Unavailable:
            if self.shim.closing:
                # another delete got there first and shut the shim down on purpose: no
                # dead-shim cleanup will come, the task is simply gone
                raise errdefs.NotFound(f"task {self.id!r}: not found") from None
            # the shim died under us: the dead-shim cleanup deletes and reports the exit
            try:
                async with asyncio.timeout(CLEANUP_WAIT):
                    return await asyncio.shield(self.shim.dead_exit)
            except TimeoutError:
                raise errdefs.Unavailable(f"shim of task {self.id!r} is gone") from None
        except errdefs.NotFound as e:
            shim_err = e
        if shim_err is None:
            remove_task()
        self.shim.expect_close()
        if not sandboxed:
            await self.shutdown()
        try:
            await self.shim.delete()
        except errdefs.ContainerdError as e:
            log.error("failed to delete shim id=%s: %s", self.id, e)
        remove_task()
        if shim_err is not None:
            raise shim_err
        return Exit(pid=resp.pid, status=resp.exit_status, timestamp=_ts(resp.exited_at))

    # -- shared with execs

    async def _state(self, exec_id: str) -> State:
        resp = await self._call(
            "State",
            shim_pb2.StateRequest(id=self.id, exec_id=exec_id),
            shim_pb2.StateResponse,
            STATE_TIMEOUT,
        )
        return _state_from(resp)

    async def _kill(self, exec_id: str, signal: int, all: bool) -> None:  # noqa: A002
        await self._call(
            "Kill",
            shim_pb2.KillRequest(id=self.id, exec_id=exec_id, signal=signal, all=all),
            empty_pb2.Empty,
        )

    async def _resize(self, exec_id: str, width: int, height: int) -> None:
        await self._call(
            "ResizePty",
            shim_pb2.ResizePtyRequest(id=self.id, exec_id=exec_id, width=width, height=height),
            empty_pb2.Empty,
        )

    async def _close_io(self, exec_id: str) -> None:
        await self._call(
            "CloseIO",
            shim_pb2.CloseIORequest(id=self.id, exec_id=exec_id, stdin=True),
            empty_pb2.Empty,
        )

    async def _start(self, exec_id: str) -> int:
        resp = await self._call(
            "Start", shim_pb2.StartRequest(id=self.id, exec_id=exec_id), shim_pb2.StartResponse
        )
        return int(resp.pid)

    async def _wait(self, exec_id: str) -> Exit:
        try:
            resp = await self._call(
                "Wait",
                shim_pb2.WaitRequest(id=self.id, exec_id=exec_id),
                shim_pb2.WaitResponse,
                None,
            )
        except errdefs.Unavailable:
            if exec_id or self.shim.closing:
                raise
            # the shim died: the exit is what the dead-shim cleanup found out
            try:
                async with asyncio.timeout(CLEANUP_WAIT):
                    return await asyncio.shield(self.shim.dead_exit)
            except TimeoutError:
                raise errdefs.Unavailable(f"shim of task {self.id!r} is gone") from None
        return Exit(pid=0, status=resp.exit_status, timestamp=_ts(resp.exited_at))
