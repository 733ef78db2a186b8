"""The CRI's in-memory containers (containerd's ``internal/cri/store/container``).

- :class:`Metadata`: what never changes after CreateContainer (id, name, sandbox, the
  ``ContainerConfig``, image, log path, stop signal). Kept as JSON in the containerd container
  record (extension ``io.cri-containerd.container.metadata``), so a restart rebuilds it.
- :class:`Status`: what changes (pid, created/started/finished times in ns, exit code, reason,
  message, resources); checkpointed as JSON to ``<cri root>/containers/<id>/status`` on every
  change, so exit codes survive a restart.
- :class:`Container`: both, plus its IO, the ``stopped`` event (set once the task has exited
  and its exit is recorded) and a lock serialising start/stop/remove.
- :class:`ContainerStore`: containers by id (unique id prefixes accepted, as crictl's short
  ids) with the ``<container>_<pod>_<namespace>_<uid>_<attempt>`` name index.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.plugins.cri.sandbox.store import NameIndex

#: type URL of the metadata JSON in the container extension (containerd's)
METADATA_TYPE_URL = "github.com/containerd/containerd/v2/internal/cri/store/container/Metadata"
METADATA_VERSION = "v1"
STATUS_VERSION = "v1"
STATUS_FILE = "status"

#: exit reasons (containerd's helpers.go)
REASON_COMPLETED = "Completed"
REASON_ERROR = "Error"
REASON_OOM_KILLED = "OOMKilled"
REASON_START_ERROR = "StartError"
REASON_UNKNOWN = "Unknown"
#: the exit code of a process the kernel's OOM killer ended
OOM_EXIT_CODE = 137
#: exit code recorded when a container's exit could not be observed
UNKNOWN_EXIT_CODE = 255

CREATED = "CONTAINER_CREATED"
RUNNING = "CONTAINER_RUNNING"
EXITED = "CONTAINER_EXITED"
UNKNOWN = "CONTAINER_UNKNOWN"


def _pb() -> Any:
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2

    return api_pb2


def message_to_json(msg: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def message_from_json(cls: Any, data: Any) -> Any:
    from google.protobuf import json_format

    msg = cls()
    if data:
        json_format.ParseDict(data, msg, ignore_unknown_fields=True)
    return msg


def make_container_name(metadata: Any, sandbox_metadata: Any) -> str:
    """``<container>_<pod>_<namespace>_<uid>_<attempt>`` (containerd's
    ``makeContainerName``; the attempt is the container's)."""
    return "_".join(
        [
            metadata.name,
            sandbox_metadata.name,
            sandbox_metadata.namespace,
            sandbox_metadata.uid,
            str(metadata.attempt),
        ]
    )


@attrs.define(eq=False, kw_only=True)
class Metadata:
    id: str
    name: str
    sandbox_id: str
    #: runtime.v1.ContainerConfig
    config: Any
    #: the CRI image id (config digest)
    image_ref: str = ""
    image_digest: str = ""
    image_name: str = ""
    log_path: str = ""
    stop_signal: str = ""
    process_label: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "Version": METADATA_VERSION,
            "Metadata": {
                "ID": self.id,
                "Name": self.name,
                "SandboxID": self.sandbox_id,
                "Config": message_to_json(self.config),
                "ImageRef": self.image_ref,
                "ImageDigest": self.image_digest,
                "ImageName": self.image_name,
                "LogPath": self.log_path,
                "StopSignal": self.stop_signal,
                "ProcessLabel": self.process_label,
            },
        }

    def to_typed(self) -> tuple[str, bytes]:
        return (METADATA_TYPE_URL, json.dumps(self.to_json(), separators=(",", ":")).encode())

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Metadata:
        if doc.get("Version") != METADATA_VERSION:
            raise errdefs.InvalidArgument(
                f"container metadata version {doc.get('Version')!r} is not supported"
            )
        m = doc.get("Metadata") or {}
        return cls(
            id=str(m.get("ID") or ""),
            name=str(m.get("Name") or ""),
            sandbox_id=str(m.get("SandboxID") or ""),
            config=message_from_json(_pb().ContainerConfig, m.get("Config")),
            image_ref=str(m.get("ImageRef") or ""),
            image_digest=str(m.get("ImageDigest") or ""),
            image_name=str(m.get("ImageName") or ""),
            log_path=str(m.get("LogPath") or ""),
            stop_signal=str(m.get("StopSignal") or ""),
            process_label=str(m.get("ProcessLabel") or ""),
        )

    @classmethod
    def from_typed(cls, value: tuple[str, bytes] | None) -> Metadata:
        if value is None:
            raise errdefs.NotFound("container metadata not found")
        try:
            doc = json.loads(value[1])
        except ValueError as e:
            raise errdefs.InvalidArgument(f"failed to decode container metadata: {e}") from None
        return cls.from_json(doc)


@attrs.define(kw_only=True)
class Status:
    """Times are ns since the epoch (0 = not yet)."""

    pid: int = 0
    created_at: int = 0
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    #: runtime.v1.ContainerResources as JSON (None: not known)
    resources: dict[str, Any] | None = None
    # in memory only
    starting: bool = False
    removing: bool = False
    unknown: bool = False

    def state(self) -> str:
        if self.unknown:
            return UNKNOWN
        if self.finished_at:
            return EXITED
        if self.started_at:
            return RUNNING
        if self.created_at:
            return CREATED
        return UNKNOWN

    def to_json(self) -> dict[str, Any]:
        return {
            "Version": STATUS_VERSION,
            "Status": {
                "Pid": self.pid,
                "CreatedAt": self.created_at,
                "StartedAt": self.started_at,
                "FinishedAt": self.finished_at,
                "ExitCode": self.exit_code,
                "Reason": self.reason,
                "Message": self.message,
                "Resources": self.resources,
            },
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Status:
        if doc.get("Version") != STATUS_VERSION:
            raise errdefs.InvalidArgument(
                f"container status version {doc.get('Version')!r} is not supported"
            )
        s = doc.get("Status") or {}
        return cls(
            pid=int(s.get("Pid") or 0),
            created_at=int(s.get("CreatedAt") or 0),
            started_at=int(s.get("StartedAt") or 0),
            finished_at=int(s.get("FinishedAt") or 0),
            exit_code=int(s.get("ExitCode") or 0),
            reason=str(s.get("Reason") or ""),
            message=str(s.get("Message") or ""),
            resources=s.get("Resources"),
        )


def exit_reason(exit_code: int, oom_killed: bool) -> str:
    """Completed (0), OOMKilled (the OOM killer ended it), else Error."""
    if oom_killed:
        return REASON_OOM_KILLED
    return REASON_COMPLETED if exit_code == 0 else REASON_ERROR


@attrs.define(eq=False)
class StatusStorage:
    """The checkpoint of one container's status: ``<root_dir>/status`` written atomically."""

    root_dir: str

    @property
    def path(self) -> str:
        return os.path.join(self.root_dir, STATUS_FILE)

    def save(self, status: Status) -> None:
        data = json.dumps(status.to_json(), separators=(",", ":")).encode()
        os.makedirs(self.root_dir, mode=0o755, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root_dir, prefix=".status")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def load(self) -> Status:
        try:
            with open(self.path, "rb") as f:
                doc = json.load(f)
        except FileNotFoundError:
            raise errdefs.NotFound(f"status checkpoint {self.path!r} not found") from None
        except (OSError, ValueError) as e:
            raise errdefs.DataLoss(f"failed to read status checkpoint {self.path!r}: {e}") from e
        return Status.from_json(doc)


@attrs.define(eq=False, kw_only=True)
class Container:
    metadata: Metadata
    status: Status = attrs.Factory(Status)
    storage: StatusStorage | None = None
    #: the container's IO (plugins.cri.io.container_io.ContainerIO), None when unknown
    io: Any = None
    #: the containerd snapshotter holding its writable layer (snapshot key = id)
    snapshotter: str = ""
    #: set once the task has exited and the exit has been recorded (or never started)
    stopped: asyncio.Event = attrs.Factory(asyncio.Event)
    #: the exit monitor task, when one runs
    monitor: asyncio.Task[Any] | None = None
    lock: asyncio.Lock = attrs.Factory(asyncio.Lock)
    #: the OCI spec as stored in the container record (loaded lazily)
    spec_json: dict[str, Any] | None = None
    #: previous CPU usage sample (timestamp ns, usage ns) for usage_nano_cores
    cpu_sample: tuple[int, int] | None = None

    @property
    def id(self) -> str:
        return self.metadata.id

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def sandbox_id(self) -> str:
        return self.metadata.sandbox_id

    @property
    def config(self) -> Any:
        return self.metadata.config

    def state(self) -> str:
        return self.status.state()

    def update(self, **changes: Any) -> Status:
        """Change status fields and checkpoint the result (the in-memory status changes only
        once the checkpoint is written)."""
        new = attrs.evolve(self.status, **changes)
        if self.storage is not None:
            self.storage.save(new)
        self.status = new
        return new

    def update_in_memory(self, **changes: Any) -> Status:
        """Change fields that are not checkpointed (starting, removing, unknown)."""
        self.status = attrs.evolve(self.status, **changes)
        return self.status


@attrs.define(eq=False)
class ContainerStore:
    _containers: dict[str, Container] = attrs.Factory(dict)
    names: NameIndex = attrs.Factory(NameIndex)

    def add(self, container: Container) -> None:
        if container.id in self._containers:
            raise errdefs.AlreadyExists(f"container {container.id!r} already exists")
        self._containers[container.id] = container

    def get(self, id_: str) -> Container:
        """The container with id ``id_`` or the only one whose id starts with it."""
        if not id_:
            raise errdefs.InvalidArgument("container id must not be empty")
        found = self._containers.get(id_)
        if found is not None:
            return found
        matches = [c for i, c in self._containers.items() if i.startswith(id_)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise errdefs.InvalidArgument(f"container id prefix {id_!r} is ambiguous")
        raise errdefs.NotFound(f"container {id_!r} not found")

    def list(self) -> list[Container]:
        return list(self._containers.values())

    def by_sandbox(self, sandbox_id: str) -> list[Container]:
        return [c for c in self._containers.values() if c.sandbox_id == sandbox_id]

    def delete(self, id_: str) -> None:
        self._containers.pop(id_, None)

    def __iter__(self) -> Iterator[Container]:
        return iter(list(self._containers.values()))

    def __len__(self) -> int:
        return len(self._containers)
