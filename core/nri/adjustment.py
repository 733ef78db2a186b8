"""The adjustment model: combining what several plugins ask for, and applying the result to
an OCI runtime spec.

Plugins are consulted in index order. Each one sees the container as the previous ones left
it. A field (an annotation key, a mount destination, an env name, the memory limit, ...) may
be set by one plugin only: a second plugin setting it is a conflict, reported with both plugin
names (``plugins "20-b" and "10-a" both tried to set MemLimit``). A plugin may remove what
an earlier one (or the container itself) had, by prefixing the key with ``-``; a later plugin
may then set it again. Hooks accumulate. The merged adjustment keeps the removal markers so
that :func:`apply_adjustment` removes from the spec too.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from typing import Any

from pycontainerd.core import errdefs
from pycontainerd.core.nri import types
from pycontainerd.core.nri.api import is_marked_for_removal, mark_for_removal, pb


class Owners:
    """Who set what, per container: (container id, field, key) -> plugin, or "-plugin" when
    that plugin removed it."""

    def __init__(self) -> None:
        self._owners: dict[tuple[str, str, str], str] = {}

    def claim(self, cid: str, field: str, plugin: str, key: str = "") -> None:
        other = self._owners.get((cid, field, key))
        if other is not None:
            clearer, cleared = is_marked_for_removal(other)
            if not (cleared and clearer == plugin):
                what = f"{field} {key}".rstrip()
                raise errdefs.Conflict(
                    f"plugins {plugin!r} and {clearer!r} both tried to set {what}".replace("'", '"')
                )
        self._owners[(cid, field, key)] = plugin

    def clear(self, cid: str, field: str, plugin: str, key: str = "") -> None:
        self._owners[(cid, field, key)] = mark_for_removal(plugin)

    def accumulate(self, cid: str, field: str, plugin: str) -> None:
        """Several plugins may add to ``field`` (OCI hooks): remember them all, "a,b"."""
        old = self._owners.get((cid, field, ""))
        self._owners[(cid, field, "")] = f"{old},{plugin}" if old else plugin

    def owner(self, cid: str, field: str, key: str = "") -> str | None:
        return self._owners.get((cid, field, key))

    def to_proto(self, cid: str | None = None) -> pb.OwningPlugins:
        """NRI's ``OwningPlugins`` (what validators get): per container, simple fields by
        ``api.Field`` number, compound ones (annotations, mounts, env, ...) by key."""
        out = pb.OwningPlugins()
        for (c, field, key), plugin in self._owners.items():
            if cid is not None and c != cid:
                continue
            num = pb.Field.Value(field)
            owners = out.owners[c]
            if field in COMPOUND_FIELDS:
                owners.compound[num].owners[key] = plugin
            else:
                owners.simple[num] = plugin
        return out


#: Fields owned per key (NRI's compound fields); the others have one owner.
COMPOUND_FIELDS = frozenset(
    {
        "Annotations",
        "Mounts",
        "Devices",
        "CdiDevices",
        "Env",
        "HugepageLimits",
        "CgroupsUnified",
        "Rlimits",
        "Namespace",
        "Sysctl",
        "LinuxNetDevices",
    }
)


# Field names as NRI's api.Field enum spells them (used in conflict messages).
_MEM_FIELDS = {
    "limit": "MemLimit",
    "reservation": "MemReservation",
    "swap": "MemSwapLimit",
    "kernel": "MemKernelLimit",
    "kernel_tcp": "MemTCPLimit",
    "swappiness": "MemSwappiness",
    "disable_oom_killer": "MemDisableOomKiller",
    "use_hierarchy": "MemUseHierarchy",
}
_CPU_FIELDS = {
    "shares": "CPUShares",
    "quota": "CPUQuota",
    "period": "CPUPeriod",
    "realtime_runtime": "CPURealtimeRuntime",
    "realtime_period": "CPURealtimePeriod",
}


def merge_resources(
    target: pb.LinuxResources,
    src: pb.LinuxResources,
    owners: Owners,
    cid: str,
    plugin: str,
    *also: pb.LinuxResources,
) -> None:
    """Copy every field set in ``src`` into ``target`` (and ``also``), claiming each."""
    dests = (target, *also)
    if src.HasField("memory"):
        for field, name in _MEM_FIELDS.items():
            if src.memory.HasField(field):  # type: ignore[arg-type]
                owners.claim(cid, name, plugin)
                for d in dests:
                    getattr(d.memory, field).CopyFrom(getattr(src.memory, field))
    if src.HasField("cpu"):
        for field, name in _CPU_FIELDS.items():
            if src.cpu.HasField(field):  # type: ignore[arg-type]
                owners.claim(cid, name, plugin)
                for d in dests:
                    getattr(d.cpu, field).CopyFrom(getattr(src.cpu, field))
        if src.cpu.cpus:
            owners.claim(cid, "CPUSetCPUs", plugin)
            for d in dests:
                d.cpu.cpus = src.cpu.cpus
        if src.cpu.mems:
            owners.claim(cid, "CPUSetMems", plugin)
            for d in dests:
                d.cpu.mems = src.cpu.mems
    for h in src.hugepage_limits:
        owners.claim(cid, "HugepageLimits", plugin, h.page_size)
        for d in dests:
            d.hugepage_limits.append(h)
    for d_ in src.devices:
        for d in dests:
            d.devices.append(d_)
    for k, v in src.unified.items():
        owners.claim(cid, "CgroupsUnified", plugin, k)
        for d in dests:
            d.unified[k] = v
    if src.HasField("blockio_class"):
        owners.claim(cid, "BlockioClass", plugin)
        for d in dests:
            d.blockio_class.CopyFrom(src.blockio_class)
    if src.HasField("rdt_class"):
        owners.claim(cid, "RdtClass", plugin)
        for d in dests:
            d.rdt_class.CopyFrom(src.rdt_class)
    if src.HasField("pids"):
        owners.claim(cid, "PidsLimit", plugin)
        for d in dests:
            d.pids.CopyFrom(src.pids)


class CreateResult:
    """Collects the replies to one CreateContainer from plugins in index order."""

    def __init__(self, request: pb.CreateContainerRequest, owners: Owners | None = None) -> None:
        self.request = request  # its container is updated as plugins adjust it
        self.container = request.container
        self.cid = request.container.id
        self.owners = owners or Owners()
        self.adjust = pb.ContainerAdjustment()
        self.updates = UpdateResult(None, creating=self.cid, owners=self.owners)
        self.evictions: list[pb.ContainerEviction] = []

    def apply(self, rpl: pb.CreateContainerResponse | None, plugin: str) -> None:
        if rpl is None:
            return
        if rpl.HasField("adjust"):
            self.apply_adjustment(rpl.adjust, plugin)
        self.updates.update(rpl.update, plugin)
        self.evictions.extend(rpl.evict)

    def response(self) -> pb.CreateContainerResponse:
        return pb.CreateContainerResponse(
            adjust=self.adjust, update=self.updates.updates(), evict=self.evictions
        )

    # -- one plugin's adjustment

    def apply_adjustment(self, adj: pb.ContainerAdjustment, plugin: str) -> None:
        self._annotations(adj.annotations, plugin)
        self._mounts(adj.mounts, plugin)
        self._env(adj.env, plugin)
        self._args(adj.args, plugin)
        if adj.HasField("hooks"):
            self._hooks(adj.hooks, plugin)
        if adj.HasField("linux"):
            self._linux(adj.linux, plugin)
        for r in adj.rlimits:
            self.owners.claim(self.cid, "Rlimits", plugin, r.type)
            self.container.rlimits.append(r)
            self.adjust.rlimits.append(r)
        for d in adj.CDI_devices:
            self.owners.claim(self.cid, "CdiDevices", plugin, d.name)
            self.adjust.CDI_devices.append(d)

    def _annotations(self, annotations: Any, plugin: str) -> None:
        if not annotations:
            return
        delete = set()
        setting = {}
        for k, v in annotations.items():
            key, marked = is_marked_for_removal(k)
            if marked:
                delete.add(key)
            else:
                setting[k] = v
        out, ctr = self.adjust.annotations, self.container.annotations
        for key in delete:
            self.owners.clear(self.cid, "Annotations", plugin, key)
            ctr.pop(key, None)
            out.pop(key, None)
            out[mark_for_removal(key)] = ""
        for k, v in setting.items():
            self.owners.claim(self.cid, "Annotations", plugin, k)
            ctr[k] = v
            out[k] = v
            out.pop(mark_for_removal(k), None)

    def _mounts(self, mounts: Iterable[pb.Mount], plugin: str) -> None:
        add, delete = [], {}
        for m in mounts:
            key, marked = is_marked_for_removal(m.destination)
            if marked:
                delete[key] = m
            else:
                add.append(m)
        if not add and not delete:
            return
        changed = {m.destination for m in add} | set(delete)
        kept = [m for m in self.adjust.mounts if m.destination not in changed]
        for m in self.adjust.mounts:
            if m.destination in delete:
                self.owners.clear(self.cid, "Mounts", plugin, m.destination)
        _replace(self.adjust.mounts, kept)
        _replace(
            self.container.mounts,
            [m for m in self.container.mounts if m.destination not in changed],
        )
        for m in add:
            self.owners.claim(self.cid, "Mounts", plugin, m.destination)
            self.adjust.mounts.append(m)
            self.container.mounts.append(m)
        added = {m.destination for m in add}
        for key, m in delete.items():
            if key not in added:
                self.adjust.mounts.append(m)

    def _env(self, env: Iterable[pb.KeyValue], plugin: str) -> None:
        add, delete = [], set()
        for e in env:
            key, marked = is_marked_for_removal(e.key)
            if marked:
                delete.add(key)
            else:
                add.append(e)
        if not add and not delete:
            return
        changed = {e.key for e in add} | delete
        for e in self.adjust.env:
            if e.key in delete:
                self.owners.clear(self.cid, "Env", plugin, e.key)
        _replace(
            self.adjust.env,
            [e for e in self.adjust.env if is_marked_for_removal(e.key)[0] not in changed],
        )
        kept_env = [s for s in self.container.env if s.partition("=")[0] not in changed]
        del self.container.env[:]
        self.container.env.extend(kept_env)
        for e in add:
            self.owners.claim(self.cid, "Env", plugin, e.key)
            self.adjust.env.append(e)
            self.container.env.append(f"{e.key}={e.value}")
        added = {e.key for e in add}
        for key in sorted(delete - added):
            self.adjust.env.add(key=mark_for_removal(key))

    def _args(self, args: Iterable[str], plugin: str) -> None:
        args = list(args)
        if not args:
            return
        if args[0] == "":
            self.owners.clear(self.cid, "Args", plugin)
            args = args[1:]
        self.owners.claim(self.cid, "Args", plugin)
        del self.adjust.args[:]
        self.adjust.args.extend(args)
        del self.container.args[:]
        self.container.args.extend(args)

    def _hooks(self, hooks: pb.Hooks, plugin: str) -> None:
        if any(getattr(hooks, field) for field in types.HOOK_KINDS):
            self.owners.accumulate(self.cid, "OciHooks", plugin)
        for field in types.HOOK_KINDS:
            items = getattr(hooks, field)
            if items:
                getattr(self.adjust.hooks, field).extend(items)
                getattr(self.container.hooks, field).extend(items)

    def _linux(self, lin: pb.LinuxContainerAdjustment, plugin: str) -> None:
        cid, out, ctr = self.cid, self.adjust.linux, self.container.linux
        if lin.devices:
            add, delete = [], set()
            for d in lin.devices:
                key, marked = is_marked_for_removal(d.path)
                if marked:
                    delete.add(key)
                else:
                    add.append(d)
            changed = {d.path for d in add} | delete
            for d in out.devices:
                if d.path in delete:
                    self.owners.clear(cid, "Devices", plugin, d.path)
            _replace(out.devices, [d for d in out.devices if d.path not in changed])
            _replace(ctr.devices, [d for d in ctr.devices if d.path not in changed])
            for d in add:
                self.owners.claim(cid, "Devices", plugin, d.path)
                out.devices.append(d)
                ctr.devices.append(d)
            for key in sorted(delete - {d.path for d in add}):
                out.devices.add(path=mark_for_removal(key))
        if lin.HasField("resources"):
            merge_resources(out.resources, lin.resources, self.owners, cid, plugin, ctr.resources)
        if lin.cgroups_path:
            self.owners.claim(cid, "CgroupsPath", plugin)
            out.cgroups_path = ctr.cgroups_path = lin.cgroups_path
        if lin.HasField("oom_score_adj"):
            self.owners.claim(cid, "OomScoreAdj", plugin)
            out.oom_score_adj.CopyFrom(lin.oom_score_adj)
            ctr.oom_score_adj.CopyFrom(lin.oom_score_adj)
        for field, name in (
            ("io_priority", "IoPriority"),
            ("seccomp_policy", "SeccompPolicy"),
            ("scheduler", "LinuxSched"),
            ("memory_policy", "MemoryPolicy"),
            ("rdt", "RdtClosID"),
        ):
            if lin.HasField(field):  # type: ignore[arg-type]
                self.owners.claim(cid, name, plugin)
                getattr(out, field).CopyFrom(getattr(lin, field))
        for ns in lin.namespaces:
            key, _ = is_marked_for_removal(ns.type)
            self.owners.claim(cid, "Namespace", plugin, key)
            out.namespaces.append(ns)
        for k, v in lin.sysctl.items():
            key, marked = is_marked_for_removal(k)
            if marked:
                self.owners.clear(cid, "Sysctl", plugin, key)
                ctr.sysctl.pop(key, None)
                out.sysctl[k] = ""
            else:
                self.owners.claim(cid, "Sysctl", plugin, k)
                ctr.sysctl[k] = v
                out.sysctl[k] = v
        for k, v in lin.net_devices.items():
            key, marked = is_marked_for_removal(k)
            if marked:
                self.owners.clear(cid, "LinuxNetDevices", plugin, key)
            else:
                self.owners.claim(cid, "LinuxNetDevices", plugin, k)
            out.net_devices[k].CopyFrom(v)


class UpdateResult:
    """Collects container updates (UpdateContainer, StopContainer, CreateContainer replies)."""

    def __init__(
        self,
        request: pb.UpdateContainerRequest | None,
        *,
        creating: str = "",
        owners: Owners | None = None,
    ) -> None:
        self.request = request
        self.creating = creating
        self.owners = owners or Owners()
        self._updates: dict[str, pb.ContainerUpdate] = {}
        self.evictions: list[pb.ContainerEviction] = []

    @property
    def requested_id(self) -> str:
        return self.request.container.id if self.request is not None else ""

    def update(self, updates: Iterable[pb.ContainerUpdate], plugin: str) -> None:
        for u in updates:
            cid = u.container_id
            if self.creating and cid == self.creating:
                raise errdefs.Conflict(f'plugin "{plugin}" asked update of "{cid}" during creation')
            acc = self._updates.get(cid)
            if acc is None:
                acc = pb.ContainerUpdate(container_id=cid, ignore_failure=u.ignore_failure)
                if cid == self.requested_id and self.request is not None:
                    acc.linux.resources.CopyFrom(self.request.linux_resources)
                self._updates[cid] = acc
            else:
                acc.ignore_failure = acc.ignore_failure and u.ignore_failure
            if not u.HasField("linux") or not u.linux.HasField("resources"):
                continue
            try:
                merge_resources(acc.linux.resources, u.linux.resources, self.owners, cid, plugin)
            except errdefs.Conflict:
                if not u.ignore_failure:
                    raise

    def updates(self) -> list[pb.ContainerUpdate]:
        """Updates of other containers (first seen first), then the requested container's."""
        rid = self.requested_id
        out = [u for cid, u in self._updates.items() if cid != rid]
        if rid and rid in self._updates:
            out.append(self._updates[rid])
        return out

    def requested_resources(self) -> pb.LinuxResources | None:
        """The requested container's resources after every plugin, or None if unchanged."""
        u = self._updates.get(self.requested_id)
        return u.linux.resources if u is not None else None


def _replace(repeated: Any, items: list[Any]) -> None:
    items = [copy.deepcopy(i) for i in items]
    del repeated[:]
    repeated.extend(items)


# -- applying an adjustment to an OCI spec (a dict as in config.json)


def apply_adjustment(
    spec: dict[str, Any],
    adjustment: pb.ContainerAdjustment | None,
    *,
    cdi_injector: Any = None,
) -> dict[str, Any]:
    """Apply a (merged) adjustment to an OCI runtime spec dict, in place; return the spec.

    Annotations, env, args, hooks, Linux devices (and their cgroup allow rules), resources
    (memory limit also sets swap to the same value, as NRI does), cgroups path, OOM score,
    sysctl, namespaces, mounts (re-sorted by depth) and rlimits. ``-key`` entries remove.
    CDI devices are handed to ``cdi_injector(spec, names)``; without an injector they are
    refused with FailedPrecondition, so a request is never silently lost.
    """
    if adjustment is None:
        return spec
    a = adjustment
    if a.annotations:
        ann = spec.setdefault("annotations", {})
        for k, v in a.annotations.items():
            key, marked = is_marked_for_removal(k)
            if marked:
                ann.pop(key, None)
            else:
                ann[k] = v
    if a.env:
        _apply_env(spec, a.env)
    if a.args:
        spec.setdefault("process", {})["args"] = list(a.args)
    if a.HasField("hooks"):
        hooks = spec.setdefault("hooks", {})
        for field, key in types.HOOK_KINDS.items():
            for h in getattr(a.hooks, field):
                hooks.setdefault(key, []).append(types.hook_to_oci(h))
    if a.CDI_devices:
        names = [d.name for d in a.CDI_devices]
        if cdi_injector is None:
            raise errdefs.FailedPrecondition(
                f"nri: cannot inject CDI devices {names}: CDI is not enabled"
            )
        cdi_injector(spec, names)
    if a.HasField("linux"):
        _apply_linux(spec, a.linux)
    if a.mounts:
        _apply_mounts(spec, a.mounts)
    for r in a.rlimits:
        spec.setdefault("process", {}).setdefault("rlimits", []).append(
            {"type": r.type, "hard": r.hard, "soft": r.soft}
        )
    return spec


def _apply_env(spec: dict[str, Any], env: Iterable[pb.KeyValue]) -> None:
    process = spec.setdefault("process", {})
    mod: dict[str, pb.KeyValue] = {}
    for e in env:
        key, _ = is_marked_for_removal(e.key)
        mod[key] = e
    out: list[str] = []
    for entry in process.get("env") or []:
        k, sep, _ = entry.partition("=")
        if not sep:
            continue
        m = mod.pop(k, None)
        if m is None:
            out.append(entry)
        elif not is_marked_for_removal(m.key)[1]:
            out.append(f"{m.key}={m.value}")
    for e in env:
        if not is_marked_for_removal(e.key)[1] and e.key in mod:
            out.append(f"{e.key}={e.value}")
            del mod[e.key]
    process["env"] = out


def _device_access(d: pb.LinuxDevice) -> str:
    return "rwm"


def _apply_linux(spec: dict[str, Any], lin: pb.LinuxContainerAdjustment) -> None:
    linux = spec.setdefault("linux", {})
    for d in lin.devices:
        key, marked = is_marked_for_removal(d.path)
        linux["devices"] = [x for x in linux.get("devices") or [] if x.get("path") != key]
        if marked:
            continue
        linux["devices"].append(types.device_to_oci(d))
        rule = {
            "allow": True,
            "type": d.type,
            "major": d.major,
            "minor": d.minor,
            "access": _device_access(d),
        }
        linux.setdefault("resources", {}).setdefault("devices", []).append(rule)
    if lin.cgroups_path:
        linux["cgroupsPath"] = lin.cgroups_path
    if lin.HasField("oom_score_adj"):
        spec.setdefault("process", {})["oomScoreAdj"] = int(lin.oom_score_adj.value)
    for ns in lin.namespaces:
        key, marked = is_marked_for_removal(ns.type)
        nss = [x for x in linux.get("namespaces") or [] if x.get("type") != key]
        if not marked:
            entry = {"type": ns.type}
            if ns.path:
                entry["path"] = ns.path
            nss.append(entry)
        linux["namespaces"] = nss
    for k, v in lin.sysctl.items():
        key, marked = is_marked_for_removal(k)
        sysctl = linux.setdefault("sysctl", {})
        if marked:
            sysctl.pop(key, None)
        else:
            sysctl[k] = v
    if lin.HasField("resources"):
        r = lin.resources
        res = linux.setdefault("resources", {})
        limit = r.memory.limit.value if r.HasField("memory") and r.memory.HasField("limit") else 0
        only = pb.LinuxResources()
        only.CopyFrom(r)
        if only.HasField("memory"):
            # NRI sets the memory limit (and swap to the same value) only when non-zero
            only.memory.ClearField("limit")
            only.memory.ClearField("swap")
        types.apply_resources(res, only)
        if limit:
            mem = res.setdefault("memory", {})
            mem["limit"] = limit
            mem["swap"] = limit
    if lin.HasField("seccomp_policy"):
        p = lin.seccomp_policy
        linux["seccomp"] = {
            "defaultAction": p.default_action,
            "architectures": list(p.architectures),
            "flags": list(p.flags),
            "listenerPath": p.listener_path,
            "listenerMetadata": p.listener_metadata,
            "syscalls": [
                {
                    "names": list(s.names),
                    "action": s.action,
                    **({"errnoRet": s.errno_ret.value} if s.HasField("errno_ret") else {}),
                    "args": [
                        {"index": x.index, "value": x.value, "valueTwo": x.value_two, "op": x.op}
                        for x in s.args
                    ],
                }
                for s in p.syscalls
            ],
        }


def _apply_mounts(spec: dict[str, Any], mounts: Iterable[pb.Mount]) -> None:
    current = list(spec.get("mounts") or [])
    for m in mounts:
        key, marked = is_marked_for_removal(m.destination)
        current = [x for x in current if x.get("destination") != key]
        if not marked:
            current.append(types.mount_to_oci(m))
    current.sort(
        key=lambda x: (
            os.path.normpath(x.get("destination", "")).count("/"),
            x.get("destination", ""),
        )
    )
    spec["mounts"] = current
