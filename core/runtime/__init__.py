"""The runtime contract (containerd ``core/runtime``): what a platform runtime, a task and a
process can do, the value types they exchange, and the ``/tasks/*`` event topics.

The runtime v2 implementation (shims over ttrpc) lives in
:mod:`pycontainerd.plugins.runtimes.v2`; bundle helpers in :mod:`.bundle`; client-side stdio
FIFOs in :mod:`.cio`.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from pycontainerd.core.mount import Mount

__all__ = [
    "CreateOpts",
    "ExecOpts",
    "Exit",
    "IO",
    "PlatformRuntime",
    "Process",
    "ProcessInfo",
    "State",
    "Status",
    "Task",
    "TASK_CREATE_TOPIC",
    "TASK_START_TOPIC",
    "TASK_EXIT_TOPIC",
    "TASK_DELETE_TOPIC",
    "TASK_EXEC_ADDED_TOPIC",
    "TASK_EXEC_STARTED_TOPIC",
    "TASK_PAUSED_TOPIC",
    "TASK_RESUMED_TOPIC",
    "TASK_CHECKPOINTED_TOPIC",
    "TASK_OOM_TOPIC",
    "UNKNOWN_EXIT_STATUS",
]

TASK_CREATE_TOPIC = "/tasks/create"
TASK_START_TOPIC = "/tasks/start"
TASK_EXIT_TOPIC = "/tasks/exit"
TASK_DELETE_TOPIC = "/tasks/delete"
TASK_EXEC_ADDED_TOPIC = "/tasks/exec-added"
TASK_EXEC_STARTED_TOPIC = "/tasks/exec-started"
TASK_PAUSED_TOPIC = "/tasks/paused"
TASK_RESUMED_TOPIC = "/tasks/resumed"
TASK_CHECKPOINTED_TOPIC = "/tasks/checkpointed"
TASK_OOM_TOPIC = "/tasks/oom"

#: The exit status reported for a task whose shim died without telling (containerd: 255).
UNKNOWN_EXIT_STATUS = 255

#: A protobuf ``Any`` as carried around: (type_url, serialized value).
TypedValue = tuple[str, bytes]


class Status(enum.IntEnum):
    """A process's status; the values are ``containerd.v1.types.Status``'s."""

    UNKNOWN = 0
    CREATED = 1
    RUNNING = 2
    STOPPED = 3
    PAUSED = 4
    PAUSING = 5


@attrs.frozen(kw_only=True)
class IO:
    """Paths (FIFOs, files, ``binary://``/``file://`` URIs) the shim connects stdio to."""

    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False


@attrs.frozen(kw_only=True)
class Exit:
    pid: int = 0
    status: int = 0
    timestamp: datetime.datetime | None = None


@attrs.frozen(kw_only=True)
class State:
    id: str = ""
    exec_id: str = ""
    bundle: str = ""
    pid: int = 0
    status: Status = Status.UNKNOWN
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    exit_status: int = 0
    exited_at: datetime.datetime | None = None


@attrs.frozen(kw_only=True)
class ProcessInfo:
    """One process of a task (``ListPids``); ``info`` a packed Any when the shim gave one."""

    pid: int
    info: TypedValue | None = None


def _mounts(value: Sequence[Mount]) -> tuple[Mount, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class CreateOpts:
    """Everything a runtime needs to create a task (containerd ``runtime.CreateOpts``)."""

    #: the OCI spec as stored in the container record (type URL, JSON bytes)
    spec: TypedValue | None = None
    rootfs: tuple[Mount, ...] = attrs.field(default=(), converter=_mounts)
    io: IO = attrs.Factory(IO)
    #: checkpoint path to restore from ("" = none)
    checkpoint: str = ""
    #: runtime type (``io.containerd.runc.v2``) or an absolute shim path
    runtime: str = ""
    runtime_options: TypedValue | None = None
    task_options: TypedValue | None = None
    sandbox_id: str = ""

    def options(self) -> TypedValue | None:
        """The options handed to the shim: the task's, else the runtime's."""
        if self.task_options is not None and self.task_options[1]:
            return self.task_options
        return self.runtime_options


@attrs.frozen(kw_only=True)
class ExecOpts:
    #: an OCI runtime-spec Process (type URL, JSON bytes)
    spec: TypedValue | None = None
    io: IO = attrs.Factory(IO)


@runtime_checkable
class Process(Protocol):
    """A process of a task: the init process (``exec_id`` "") or an exec."""

    @property
    def id(self) -> str: ...

    async def state(self) -> State: ...

    async def kill(self, signal: int, all: bool = False) -> None: ...  # noqa: A002

    async def resize_pty(self, width: int, height: int) -> None: ...

    async def close_io(self) -> None: ...

    async def start(self) -> int: ...

    async def wait(self) -> Exit: ...

    async def delete(self) -> Exit: ...


@runtime_checkable
class Task(Process, Protocol):
    """A running container (the init process plus execs)."""

    @property
    def namespace(self) -> str: ...

    @property
    def bundle(self) -> str: ...

    async def pid(self) -> int: ...

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def exec(self, exec_id: str, opts: ExecOpts) -> Process: ...

    async def pids(self) -> list[ProcessInfo]: ...

    async def checkpoint(self, path: str, options: TypedValue | None) -> None: ...

    async def update(
        self, resources: TypedValue | None, annotations: Mapping[str, str] | None = None
    ) -> None: ...

    async def process(self, exec_id: str) -> Process: ...

    async def stats(self) -> TypedValue | None: ...


@runtime_checkable
class PlatformRuntime(Protocol):
    """Creates and tracks tasks; all calls work in the current namespace."""

    def id(self) -> str: ...

    async def create(self, task_id: str, opts: CreateOpts) -> Task: ...

    async def get(self, task_id: str) -> Task: ...

    async def tasks(self, all: bool = False) -> list[Task]: ...  # noqa: A002

    async def delete(self, task_id: str) -> Exit: ...


def to_typed(value: Any) -> TypedValue | None:
    """A protobuf Any (or ``(type_url, value)`` or None) as a :data:`TypedValue`."""
    if value is None:
        return None
    if isinstance(value, tuple):
        return (str(value[0]), bytes(value[1]))
    type_url = getattr(value, "type_url", "")
    data = getattr(value, "value", b"")
    if not type_url and not data:
        return None
    return (str(type_url), bytes(data))
