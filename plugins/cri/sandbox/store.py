"""The CRI's in-memory pod sandboxes (containerd's ``internal/cri/store/sandbox`` and the
name ``registrar``).

- :class:`Metadata`: what never changes after RunPodSandbox (id, name, the
  ``PodSandboxConfig``, netns path, IPs, CNI result, runtime handler); persisted as JSON in
  the metadata sandbox record (extension ``metadata``) and in the pause container
  (``io.cri-containerd.sandbox.metadata``), so a restart can rebuild everything.
- :class:`Status`: what changes (state, pid, created/exited times, exit status).
- :class:`Sandbox`: both, plus the ``stopped`` event set once the pause task has exited.
- :class:`NameIndex`: reservation of ``<name>_<namespace>_<uid>_<attempt>`` names.
- :class:`SandboxStore`: sandboxes by id; lookups accept a unique id prefix (crictl's short
  ids), as containerd's truncindex does.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import json
from collections.abc import Iterator
from typing import Any

import attrs

from pycontainerd.core import errdefs

#: type URL of the metadata JSON in sandbox records and container extensions
METADATA_TYPE_URL = "github.com/containerd/containerd/v2/internal/cri/store/sandbox/Metadata"
METADATA_VERSION = "v1"


class State(enum.Enum):
    """containerd's sandbox states. UNKNOWN: created, or its state could not be found out
    (shown as NOTREADY to CRI clients)."""

    UNKNOWN = "SANDBOX_UNKNOWN"
    READY = "SANDBOX_READY"
    NOTREADY = "SANDBOX_NOTREADY"


def _pb() -> Any:
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2

    return api_pb2


def config_to_json(config: Any) -> dict[str, Any]:
    """A ``PodSandboxConfig`` as a JSON object (protobuf JSON mapping)."""
    from google.protobuf import json_format

    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def config_from_json(data: Any) -> Any:
    from google.protobuf import json_format

    msg = _pb().PodSandboxConfig()
    if data:
        json_format.ParseDict(data, msg, ignore_unknown_fields=True)
    return msg


#: containerd's typeurl of ``podsandbox.UpdatedResources``
UPDATED_RESOURCES_TYPE_URL = "io.containerd.cri.v1.UpdatedResources"


def updated_resources_to_typed(overhead: Any, resources: Any) -> tuple[str, bytes]:
    """The sandbox record extension for updated pod resources (CRI
    ``LinuxContainerResources`` or None each), JSON as containerd stores it."""
    from google.protobuf import json_format

    def enc(m: Any) -> Any:
        return None if m is None else json_format.MessageToDict(m, preserving_proto_field_name=True)

    doc = {"Overhead": enc(overhead), "Resources": enc(resources)}
    return UPDATED_RESOURCES_TYPE_URL, json.dumps(doc, separators=(",", ":")).encode()


def updated_resources_from_typed(value: bytes) -> tuple[Any, Any]:
    """(overhead, resources) from the extension's value; None where absent."""
    from google.protobuf import json_format

    doc = json.loads(value or b"{}")

    def dec(d: Any) -> Any:
        if d is None:
            return None
        msg = _pb().LinuxContainerResources()
        json_format.ParseDict(d, msg, ignore_unknown_fields=True)
        return msg

    return dec(doc.get("Overhead")), dec(doc.get("Resources"))


@attrs.define(eq=False, kw_only=True)
class Metadata:
    id: str
    name: str
    #: runtime.v1.PodSandboxConfig
    config: Any
    runtime_handler: str = ""
    netns_path: str = ""
    ip: str = ""
    additional_ips: list[str] = attrs.Factory(list)
    #: the CNI results as stored (``core.cni.Result.to_json``); None before/without CNI
    cni_result: list[dict[str, Any]] | None = None
    process_label: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "Version": METADATA_VERSION,
            "Metadata": {
                "ID": self.id,
                "Name": self.name,
                "Config": config_to_json(self.config),
                "RuntimeHandler": self.runtime_handler,
                "NetNSPath": self.netns_path,
                "IP": self.ip,
                "AdditionalIPs": list(self.additional_ips),
                "CNIResult": self.cni_result,
                "ProcessLabel": self.process_label,
            },
        }

    def to_typed(self) -> tuple[str, bytes]:
        return (METADATA_TYPE_URL, json.dumps(self.to_json(), separators=(",", ":")).encode())

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Metadata:
        if doc.get("Version") != METADATA_VERSION:
            raise errdefs.InvalidArgument(
                f"sandbox metadata version {doc.get('Version')!r} is not supported"
            )
        m = doc.get("Metadata") or {}
        return cls(
            id=str(m.get("ID") or ""),
            name=str(m.get("Name") or ""),
            config=config_from_json(m.get("Config")),
            runtime_handler=str(m.get("RuntimeHandler") or ""),
            netns_path=str(m.get("NetNSPath") or ""),
            ip=str(m.get("IP") or ""),
            additional_ips=[str(x) for x in m.get("AdditionalIPs") or []],
            cni_result=m.get("CNIResult"),
            process_label=str(m.get("ProcessLabel") or ""),
        )

    @classmethod
    def from_typed(cls, value: tuple[str, bytes] | None) -> Metadata:
        if value is None:
            raise errdefs.NotFound("sandbox metadata not found")
        try:
            doc = json.loads(value[1])
        except ValueError as e:
            raise errdefs.InvalidArgument(f"failed to decode sandbox metadata: {e}") from None
        return cls.from_json(doc)

    @property
    def host_network(self) -> bool:
        return bool(
            self.config.linux.security_context.namespace_options.network == _pb().NamespaceMode.NODE
        )


@attrs.define(eq=False, kw_only=True)
class Status:
    state: State = State.UNKNOWN
    pid: int = 0
    created_at: datetime.datetime | None = None
    exited_at: datetime.datetime | None = None
    exit_status: int = 0
    #: what the last UpdatePodSandboxResources set (CRI LinuxContainerResources), if anything
    overhead: Any = None
    resources: Any = None


@attrs.define(eq=False, kw_only=True)
class Sandbox:
    metadata: Metadata
    status: Status = attrs.Factory(Status)
    #: the sandboxer (sandbox controller name) that runs it
    sandboxer: str = "podsandbox"
    #: set once the sandbox's pause task has exited (or never ran)
    stopped: asyncio.Event = attrs.Factory(asyncio.Event)
    #: the exit monitor task, when one runs
    monitor: asyncio.Task[Any] | None = None
    #: serialises Stop/Remove of this sandbox
    lock: asyncio.Lock = attrs.Factory(asyncio.Lock)

    @property
    def id(self) -> str:
        return self.metadata.id

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def config(self) -> Any:
        return self.metadata.config

    @property
    def netns_path(self) -> str:
        return self.metadata.netns_path

    @property
    def state(self) -> State:
        return self.status.state


def make_sandbox_name(metadata: Any) -> str:
    """``<name>_<namespace>_<uid>_<attempt>`` (containerd's ``makeSandboxName``)."""
    return "_".join([metadata.name, metadata.namespace, metadata.uid, str(metadata.attempt)])


def new_id() -> str:
    """A sandbox/container id: 64 hex characters from 32 random bytes."""
    import os

    return os.urandom(32).hex()


@attrs.define(eq=False)
class NameIndex:
    """Reserved names -> the id holding each (containerd's registrar)."""

    _names: dict[str, str] = attrs.Factory(dict)

    def reserve(self, name: str, id_: str) -> None:
        """AlreadyExists when ``name`` is held by another id (reserving it again for the same
        id is fine)."""
        if not name or not id_:
            raise errdefs.InvalidArgument("name and id must not be empty")
        holder = self._names.get(name)
        if holder is not None and holder != id_:
            raise errdefs.AlreadyExists(f"name {name!r} is reserved for {holder!r}")
        self._names[name] = id_

    def release_by_name(self, name: str) -> None:
        self._names.pop(name, None)

    def release_by_id(self, id_: str) -> None:
        for name in [n for n, i in self._names.items() if i == id_]:
            del self._names[name]

    def get(self, name: str) -> str | None:
        return self._names.get(name)


@attrs.define(eq=False)
class SandboxStore:
    """Sandboxes by id, with a name index."""

    _sandboxes: dict[str, Sandbox] = attrs.Factory(dict)
    names: NameIndex = attrs.Factory(NameIndex)

    def add(self, sandbox: Sandbox) -> None:
        if sandbox.id in self._sandboxes:
            raise errdefs.AlreadyExists(f"sandbox {sandbox.id!r} already exists")
        self._sandboxes[sandbox.id] = sandbox

    def get(self, id_: str) -> Sandbox:
        """The sandbox with id ``id_`` or the only one whose id starts with it."""
        if not id_:
            raise errdefs.InvalidArgument("sandbox id must not be empty")
        found = self._sandboxes.get(id_)
        if found is not None:
            return found
        matches = [s for i, s in self._sandboxes.items() if i.startswith(id_)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise errdefs.InvalidArgument(f"sandbox id prefix {id_!r} is ambiguous")
        raise errdefs.NotFound(f"sandbox {id_!r} not found")

    def get_or_none(self, id_: str) -> Sandbox | None:
        """The sandbox with exactly this id, or None."""
        return self._sandboxes.get(id_)

    def list(self) -> list[Sandbox]:
        return list(self._sandboxes.values())

    def delete(self, id_: str) -> None:
        self._sandboxes.pop(id_, None)

    def __iter__(self) -> Iterator[Sandbox]:
        return iter(list(self._sandboxes.values()))

    def __len__(self) -> int:
        return len(self._sandboxes)
