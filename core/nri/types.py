"""Pods and containers as the CRI plugin describes them to NRI, and conversions between NRI
resources and OCI runtime-spec dicts.

The CRI plugin builds :class:`PodSandbox` and :class:`Container` values (a container usually
with :meth:`Container.from_oci_spec`); the adaptation turns them into NRI protos with
``to_proto()``. Adjustments and updates stay NRI protos (``api.pb.ContainerAdjustment``,
``api.pb.ContainerUpdate``, ``api.pb.LinuxResources``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from pycontainerd.core.nri.api import pb

#: Container states, as NRI numbers them.
CONTAINER_UNKNOWN = pb.CONTAINER_UNKNOWN
CONTAINER_CREATED = pb.CONTAINER_CREATED
CONTAINER_PAUSED = pb.CONTAINER_PAUSED
CONTAINER_RUNNING = pb.CONTAINER_RUNNING
CONTAINER_STOPPED = pb.CONTAINER_STOPPED

_STATES = {
    "unknown": CONTAINER_UNKNOWN,
    "created": CONTAINER_CREATED,
    "paused": CONTAINER_PAUSED,
    "running": CONTAINER_RUNNING,
    "stopped": CONTAINER_STOPPED,
    "exited": CONTAINER_STOPPED,
}


def _state(value: int | str) -> int:
    if isinstance(value, str):
        return _STATES.get(value.lower(), CONTAINER_UNKNOWN)
    return int(value)


@attrs.frozen(kw_only=True)
class PodSandbox:
    id: str
    name: str = ""
    uid: str = ""
    namespace: str = ""
    labels: Mapping[str, str] = attrs.field(factory=dict)
    annotations: Mapping[str, str] = attrs.field(factory=dict)
    runtime_handler: str = ""
    pid: int = 0
    ips: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    cgroup_parent: str = ""
    cgroups_path: str = ""
    #: (type, path) of the pod's Linux namespaces, e.g. ("network", "/var/run/netns/cni-...").
    namespaces: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=tuple)
    pod_overhead: Any = None  # pb.LinuxResources
    pod_resources: Any = None  # pb.LinuxResources

    def to_proto(self) -> pb.PodSandbox:
        p = pb.PodSandbox(
            id=self.id,
            name=self.name,
            uid=self.uid,
            namespace=self.namespace,
            runtime_handler=self.runtime_handler,
            pid=self.pid,
            ips=list(self.ips),
        )
        p.labels.update(self.labels)
        p.annotations.update(self.annotations)
        p.linux.cgroup_parent = self.cgroup_parent
        p.linux.cgroups_path = self.cgroups_path
        for t, path in self.namespaces:
            p.linux.namespaces.add(type=t, path=path)
        if self.pod_overhead is not None:
            p.linux.pod_overhead.CopyFrom(self.pod_overhead)
        if self.pod_resources is not None:
            p.linux.pod_resources.CopyFrom(self.pod_resources)
            p.linux.resources.CopyFrom(self.pod_resources)
        return p


@attrs.frozen(kw_only=True)
class Container:
    id: str
    pod_sandbox_id: str
    name: str = ""
    state: int = attrs.field(default=CONTAINER_UNKNOWN, converter=_state)
    labels: Mapping[str, str] = attrs.field(factory=dict)
    annotations: Mapping[str, str] = attrs.field(factory=dict)
    args: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    env: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: OCI mount dicts: {"destination", "type", "source", "options"}.
    mounts: tuple[Mapping[str, Any], ...] = attrs.field(default=(), converter=tuple)
    #: OCI hooks dict: {"prestart": [{"path", "args", "env", "timeout"}], ...}.
    hooks: Mapping[str, Any] = attrs.field(factory=dict)
    namespaces: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=tuple)
    #: OCI device dicts: {"path", "type", "major", "minor", "fileMode", "uid", "gid"}.
    devices: tuple[Mapping[str, Any], ...] = attrs.field(default=(), converter=tuple)
    #: OCI ``linux.resources`` dict.
    resources: Mapping[str, Any] | None = None
    oom_score_adj: int | None = None
    cgroups_path: str = ""
    sysctl: Mapping[str, str] = attrs.field(factory=dict)
    #: OCI rlimit dicts: {"type", "hard", "soft"}.
    rlimits: tuple[Mapping[str, Any], ...] = attrs.field(default=(), converter=tuple)
    pid: int = 0
    created_at: int = 0
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    status_reason: str = ""
    status_message: str = ""
    cdi_devices: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    uid: int | None = None
    gid: int | None = None
    additional_gids: tuple[int, ...] = attrs.field(default=(), converter=tuple)
    image_name: str = ""
    image_digest: str = ""
    #: The seccomp profile Kubernetes asked for: (SecurityProfile.ProfileType, localhost ref).
    seccomp_profile: tuple[int, str] | None = None

    @classmethod
    def from_oci_spec(
        cls,
        spec: Mapping[str, Any],
        *,
        id: str,  # noqa: A002 - NRI's field name
        pod_sandbox_id: str,
        **kw: Any,
    ) -> Container:
        """A container described by its OCI spec (args, env, mounts, hooks, annotations,
        Linux namespaces/devices/resources/cgroups path/sysctl, OOM score, rlimits, user);
        ``kw`` sets the rest (``name``, ``state``, ``labels``, ``pid``, ...)."""
        process = spec.get("process") or {}
        linux = spec.get("linux") or {}
        user = process.get("user") or {}
        values: dict[str, Any] = {
            "annotations": dict(spec.get("annotations") or {}),
            "args": process.get("args") or (),
            "env": process.get("env") or (),
            "mounts": spec.get("mounts") or (),
            "hooks": spec.get("hooks") or {},
            "namespaces": tuple(
                (ns.get("type", ""), ns.get("path", "")) for ns in linux.get("namespaces") or ()
            ),
            "devices": linux.get("devices") or (),
            "resources": linux.get("resources"),
            "oom_score_adj": process.get("oomScoreAdj"),
            "cgroups_path": linux.get("cgroupsPath", ""),
            "sysctl": dict(linux.get("sysctl") or {}),
            "rlimits": process.get("rlimits") or (),
        }
        if user:
            values["uid"] = user.get("uid", 0)
            values["gid"] = user.get("gid", 0)
            values["additional_gids"] = user.get("additionalGids") or ()
        values.update(kw)
        return cls(id=id, pod_sandbox_id=pod_sandbox_id, **values)

    def to_proto(self) -> pb.Container:
        c = pb.Container(
            id=self.id,
            pod_sandbox_id=self.pod_sandbox_id,
            name=self.name,
            state=self.state,  # type: ignore[arg-type]
            args=list(self.args),
            env=list(self.env),
            pid=self.pid,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            exit_code=self.exit_code,
            status_reason=self.status_reason,
            status_message=self.status_message,
        )
        c.labels.update(self.labels)
        c.annotations.update(self.annotations)
        for m in self.mounts:
            c.mounts.append(mount_from_oci(m))
        if self.hooks:
            c.hooks.CopyFrom(hooks_from_oci(self.hooks))
        linux = c.linux
        for t, path in self.namespaces:
            linux.namespaces.add(type=t, path=path)
        for d in self.devices:
            linux.devices.append(device_from_oci(d))
        if self.resources is not None:
            linux.resources.CopyFrom(resources_from_oci(self.resources))
        if self.oom_score_adj is not None:
            linux.oom_score_adj.value = int(self.oom_score_adj)
        linux.cgroups_path = self.cgroups_path
        linux.sysctl.update(self.sysctl)
        if self.seccomp_profile is not None:
            kind, ref = self.seccomp_profile
            linux.seccomp_profile.profile_type = kind  # type: ignore[assignment]
            linux.seccomp_profile.localhost_ref = ref
        for r in self.rlimits:
            c.rlimits.add(
                type=r.get("type", ""), hard=int(r.get("hard", 0)), soft=int(r.get("soft", 0))
            )
        for name in self.cdi_devices:
            c.CDI_devices.add(name=name)
        if self.uid is not None:
            c.user.uid = self.uid
            c.user.gid = self.gid or 0
            c.user.additional_gids.extend(self.additional_gids)
        if self.image_name or self.image_digest:
            c.image.name = self.image_name
            c.image.digest = self.image_digest
        return c


# -- OCI <-> NRI pieces


def mount_from_oci(m: Mapping[str, Any]) -> pb.Mount:
    return pb.Mount(
        destination=m.get("destination", ""),
        type=m.get("type", ""),
        source=m.get("source", ""),
        options=list(m.get("options") or ()),
    )


def mount_to_oci(m: pb.Mount) -> dict[str, Any]:
    out: dict[str, Any] = {"destination": m.destination}
    if m.type:
        out["type"] = m.type
    if m.source:
        out["source"] = m.source
    if m.options:
        out["options"] = list(m.options)
    return out


def hook_from_oci(h: Mapping[str, Any]) -> pb.Hook:
    hook = pb.Hook(
        path=h.get("path", ""), args=list(h.get("args") or ()), env=list(h.get("env") or ())
    )
    if h.get("timeout") is not None:
        hook.timeout.value = int(h["timeout"])
    return hook


def hook_to_oci(h: pb.Hook) -> dict[str, Any]:
    out: dict[str, Any] = {"path": h.path}
    if h.args:
        out["args"] = list(h.args)
    if h.env:
        out["env"] = list(h.env)
    if h.HasField("timeout"):
        out["timeout"] = int(h.timeout.value)
    return out


#: NRI hook list field -> OCI hooks key.
HOOK_KINDS = {
    "prestart": "prestart",
    "create_runtime": "createRuntime",
    "create_container": "createContainer",
    "start_container": "startContainer",
    "poststart": "poststart",
    "poststop": "poststop",
}


def hooks_from_oci(hooks: Mapping[str, Any]) -> pb.Hooks:
    out = pb.Hooks()
    for field, key in HOOK_KINDS.items():
        for h in hooks.get(key) or ():
            getattr(out, field).append(hook_from_oci(h))
    return out


def device_from_oci(d: Mapping[str, Any]) -> pb.LinuxDevice:
    dev = pb.LinuxDevice(
        path=d.get("path", ""),
        type=d.get("type", ""),
        major=int(d.get("major", 0)),
        minor=int(d.get("minor", 0)),
    )
    if d.get("fileMode") is not None:
        dev.file_mode.value = int(d["fileMode"])
    if d.get("uid") is not None:
        dev.uid.value = int(d["uid"])
    if d.get("gid") is not None:
        dev.gid.value = int(d["gid"])
    return dev


def device_to_oci(d: pb.LinuxDevice) -> dict[str, Any]:
    out: dict[str, Any] = {"path": d.path, "type": d.type, "major": d.major, "minor": d.minor}
    if d.HasField("file_mode"):
        out["fileMode"] = d.file_mode.value
    if d.HasField("uid"):
        out["uid"] = d.uid.value
    if d.HasField("gid"):
        out["gid"] = d.gid.value
    return out


_MEMORY = {
    "limit": "limit",
    "reservation": "reservation",
    "swap": "swap",
    "kernel": "kernel",
    "kernel_tcp": "kernelTCP",
    "swappiness": "swappiness",
    "disable_oom_killer": "disableOOMKiller",
    "use_hierarchy": "useHierarchy",
}
_CPU_OPTIONAL = {
    "shares": "shares",
    "quota": "quota",
    "period": "period",
    "realtime_runtime": "realtimeRuntime",
    "realtime_period": "realtimePeriod",
}


def resources_from_oci(r: Mapping[str, Any]) -> pb.LinuxResources:
    """NRI resources from an OCI ``linux.resources`` dict."""
    out = pb.LinuxResources()
    mem = r.get("memory") or {}
    for field, key in _MEMORY.items():
        if mem.get(key) is not None:
            getattr(out.memory, field).value = mem[key]
    cpu = r.get("cpu") or {}
    for field, key in _CPU_OPTIONAL.items():
        if cpu.get(key) is not None:
            getattr(out.cpu, field).value = cpu[key]
    if cpu.get("cpus"):
        out.cpu.cpus = cpu["cpus"]
    if cpu.get("mems"):
        out.cpu.mems = cpu["mems"]
    for h in r.get("hugepageLimits") or ():
        out.hugepage_limits.add(page_size=h.get("pageSize", ""), limit=int(h.get("limit", 0)))
    out.unified.update(r.get("unified") or {})
    for d in r.get("devices") or ():
        dc = out.devices.add(
            allow=bool(d.get("allow")), type=d.get("type", ""), access=d.get("access", "")
        )
        if d.get("major") is not None:
            dc.major.value = d["major"]
        if d.get("minor") is not None:
            dc.minor.value = d["minor"]
    pids = r.get("pids") or {}
    if pids.get("limit") is not None:
        out.pids.limit = int(pids["limit"])
    return out


def apply_resources(target: dict[str, Any], r: pb.LinuxResources) -> dict[str, Any]:
    """Set every field present in ``r`` on an OCI ``linux.resources`` dict (in place)."""
    if r.HasField("memory"):
        mem = target.setdefault("memory", {})
        for field, key in _MEMORY.items():
            if r.memory.HasField(field):  # type: ignore[arg-type]
                mem[key] = getattr(r.memory, field).value
    if r.HasField("cpu"):
        cpu = target.setdefault("cpu", {})
        for field, key in _CPU_OPTIONAL.items():
            if r.cpu.HasField(field):  # type: ignore[arg-type]
                cpu[key] = getattr(r.cpu, field).value
        if r.cpu.cpus:
            cpu["cpus"] = r.cpu.cpus
        if r.cpu.mems:
            cpu["mems"] = r.cpu.mems
    for h in r.hugepage_limits:
        limits = target.setdefault("hugepageLimits", [])
        limits[:] = [x for x in limits if x.get("pageSize") != h.page_size]
        limits.append({"pageSize": h.page_size, "limit": h.limit})
    if r.unified:
        target.setdefault("unified", {}).update(r.unified)
    for d in r.devices:
        entry: dict[str, Any] = {"allow": d.allow}
        if d.type:
            entry["type"] = d.type
        if d.HasField("major"):
            entry["major"] = d.major.value
        if d.HasField("minor"):
            entry["minor"] = d.minor.value
        if d.access:
            entry["access"] = d.access
        target.setdefault("devices", []).append(entry)
    if r.HasField("pids"):
        if r.pids.limit > -1:
            target.setdefault("pids", {})["limit"] = r.pids.limit
    return target
