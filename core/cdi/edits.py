"""Applying CDI container edits to an OCI runtime spec held as a plain dict.

The rules are CDI's:

- ``env``: an entry replaces the existing entry with the same key, else it is appended;
- ``deviceNodes``: type, major and minor missing from a node are read from the host node
  (``hostPath``, else ``path``), as is the file mode; uid/gid default to the process user's
  when that is not root; a node replaces an existing ``linux.devices`` entry with the same
  path, else it is appended; block and char devices also get a cgroup allow rule in
  ``linux.resources.devices`` with the node's permissions (``rwm`` when unset, none for
  ``"none"``);
- ``netDevices``: set ``linux.netDevices[hostInterfaceName] = {"name": name}``;
- ``mounts``: a mount replaces an existing mount with the same destination, else it is
  appended; bind mounts get ``idmap``/``ridmap`` when the container has a user namespace; then
  all the spec's mounts are sorted, stably, by the depth of their destination;
- ``hooks``: appended to ``hooks[hookName]``;
- ``intelRdt``: replaces ``linux.intelRdt``;
- ``additionalGids``: added to ``process.user.additionalGids`` unless 0 or already there.

Everything that can fail (reading host device nodes) is done before the spec is touched, so a
failed application leaves the spec as it was.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.cdi.specs import (
    NO_PERMISSIONS,
    ContainerEdits,
    DeviceNode,
    Hook,
    IntelRdt,
    Mount,
)


class DeviceNodeError(errdefs.FailedPrecondition):
    """A device node's missing details cannot be read from the host."""


def apply_edits(spec: dict[str, Any], edits: ContainerEdits) -> None:
    """Apply ``edits`` to the OCI runtime spec ``spec`` in place.

    Raises :class:`DeviceNodeError` (a ``FailedPrecondition``), before changing anything, when
    a device node is neither fully described nor readable on the host.
    """
    devices = [_device_to_oci(spec, fill_missing_info(n)) for n in edits.device_nodes]

    if edits.env:
        _add_env(spec, edits.env)

    for node, dev in zip(edits.device_nodes, devices, strict=True):
        _add_device(spec, dev)
        if dev["type"] in ("b", "c"):
            access = node.permissions
            if access == "":
                access = "rwm"
            elif access == NO_PERMISSIONS:
                access = ""
            rule: dict[str, Any] = {
                "allow": True,
                "type": dev["type"],
                "major": dev["major"],
                "minor": dev["minor"],
            }
            if access:
                rule["access"] = access
            resources = _linux_resources(spec)
            rules = resources.get("devices")
            if rules is None:
                rules = resources["devices"] = []
            rules.append(rule)

    if edits.net_devices:
        linux = _linux(spec)
        net = linux.get("netDevices")
        if net is None:
            net = linux["netDevices"] = {}
        for nd in edits.net_devices:
            net[nd.host_interface_name] = {"name": nd.name}

    if edits.mounts:
        userns = _has_user_namespace(spec)
        mounts = spec.get("mounts")
        if mounts is None:
            mounts = spec["mounts"] = []
        for m in edits.mounts:
            for i, old in enumerate(mounts):
                if old.get("destination") == m.container_path:
                    del mounts[i]
                    break
            mounts.append(mount_to_oci(m, idmap=userns))
        mounts.sort(key=_mount_depth)  # stable, as CDI's sort.Stable

    if edits.hooks:
        hooks = spec.get("hooks")
        if hooks is None:
            hooks = spec["hooks"] = {}
        for h in edits.hooks:
            hooks.setdefault(h.hook_name, []).append(hook_to_oci(h))

    if edits.intel_rdt is not None:
        _linux(spec)["intelRdt"] = intel_rdt_to_oci(edits.intel_rdt)

    gids = [g for g in edits.additional_gids if g != 0]
    if gids:
        user = _process(spec).get("user")
        if user is None:
            user = _process(spec)["user"] = {"uid": 0, "gid": 0}
        current = user.get("additionalGids")
        if current is None:
            current = user["additionalGids"] = []
        for g in gids:
            if g not in current:
                current.append(g)


# --- device nodes ------------------------------------------------------------------------


@attrs.frozen
class _HostDevice:
    type: str
    major: int
    minor: int
    mode: int


def _host_device(path: str) -> _HostDevice:
    st = os.lstat(path)
    if stat.S_ISBLK(st.st_mode):
        kind = "b"
    elif stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISFIFO(st.st_mode):
        kind = "p"
    else:
        raise OSError(f"{path!r} is not a device node")
    return _HostDevice(
        type=kind,
        major=os.major(st.st_rdev),
        minor=os.minor(st.st_rdev),
        mode=stat.S_IMODE(st.st_mode),
    )


def fill_missing_info(node: DeviceNode) -> DeviceNode:
    """``node`` with its host path, type, major/minor and file mode filled from the host.

    A node that already gives a type and a major number (or is a fifo) is taken as it is,
    except for its file mode, which is filled when the host node exists. Otherwise the host
    node must exist and be of the node's type, if given.
    """
    minimal = node.type != "" and (node.major != 0 or node.type == "p")
    host_path = node.host_path or node.path
    node = attrs.evolve(node, host_path=host_path)
    try:
        info = _host_device(host_path)
    except OSError as exc:
        if minimal:
            return node
        reason = exc.strerror or str(exc)
        raise DeviceNodeError(
            f"failed to stat CDI host device {host_path!r}: {reason}".rstrip()
        ) from None
    if node.file_mode is None:
        node = attrs.evolve(node, file_mode=info.mode)
    if minimal:
        return node
    if node.type == "":
        node = attrs.evolve(node, type=info.type)
    if node.type != info.type:
        raise DeviceNodeError(
            f"CDI device {node.path!r} (host {host_path!r}): type {node.type!r} does not match "
            f"the host's {info.type!r}"
        )
    if node.type == "p":
        return node
    if node.major == 0:
        node = attrs.evolve(node, major=info.major, minor=info.minor)
    return node


def device_node_to_oci(node: DeviceNode) -> dict[str, Any]:
    """The ``linux.devices`` entry for a (filled) device node."""
    out: dict[str, Any] = {
        "path": node.path,
        "type": node.type,
        "major": node.major,
        "minor": node.minor,
    }
    if node.file_mode is not None:
        out["fileMode"] = node.file_mode
    if node.uid is not None:
        out["uid"] = node.uid
    if node.gid is not None:
        out["gid"] = node.gid
    return out


def _device_to_oci(spec: dict[str, Any], node: DeviceNode) -> dict[str, Any]:
    dev = device_node_to_oci(node)
    user = (spec.get("process") or {}).get("user") or {}
    if "uid" not in dev and int(user.get("uid") or 0) > 0:
        dev["uid"] = int(user["uid"])
    if "gid" not in dev and int(user.get("gid") or 0) > 0:
        dev["gid"] = int(user["gid"])
    return dev


def _add_device(spec: dict[str, Any], dev: dict[str, Any]) -> None:
    linux = _linux(spec)
    devices = linux.get("devices")
    if devices is None:
        devices = linux["devices"] = []
    # CDI removes the first entry with the path, then replaces the next one or appends.
    for i, old in enumerate(devices):
        if old.get("path") == dev["path"]:
            del devices[i]
            break
    for i, old in enumerate(devices):
        if old.get("path") == dev["path"]:
            devices[i] = dev
            return
    devices.append(dev)


# --- mounts, hooks, RDT ------------------------------------------------------------------


def mount_to_oci(m: Mount, *, idmap: bool = False) -> dict[str, Any]:
    """The OCI ``mounts`` entry for a CDI mount; with ``idmap`` (a user namespace), a bind
    mount also gets ``idmap`` (``ridmap`` for ``rbind``) unless it already has one."""
    out: dict[str, Any] = {"destination": m.container_path}
    if m.type:
        out["type"] = m.type
    out["source"] = m.host_path
    options = list(m.options)
    if idmap:
        extra = "idmap" if m.type == "bind" else ""
        for o in options:
            if o in ("idmap", "ridmap"):
                extra = ""
                break
            if o == "bind":
                extra = "idmap"
            elif o == "rbind":
                extra = "ridmap"
        if extra:
            options.append(extra)
    if options:
        out["options"] = options
    return out


def _clean(path: str) -> str:
    p = posixpath.normpath(path)
    return p[1:] if p.startswith("//") else p  # normpath keeps a leading "//"; Go's Clean not


def _mount_depth(m: dict[str, Any]) -> int:
    return _clean(str(m.get("destination") or "")).count("/")


def _has_user_namespace(spec: dict[str, Any]) -> bool:
    linux = spec.get("linux") or {}
    return any((ns or {}).get("type") == "user" for ns in linux.get("namespaces") or ())


def hook_to_oci(h: Hook) -> dict[str, Any]:
    out: dict[str, Any] = {"path": h.path}
    if h.args:
        out["args"] = list(h.args)
    if h.env:
        out["env"] = list(h.env)
    if h.timeout is not None:
        out["timeout"] = h.timeout
    return out


def intel_rdt_to_oci(rdt: IntelRdt) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rdt.clos_id:
        out["closID"] = rdt.clos_id
    if rdt.l3_cache_schema:
        out["l3CacheSchema"] = rdt.l3_cache_schema
    if rdt.mem_bw_schema:
        out["memBwSchema"] = rdt.mem_bw_schema
    if rdt.schemata:
        out["schemata"] = list(rdt.schemata)
    if rdt.enable_monitoring:
        out["enableMonitoring"] = True
    return out


# --- spec sections -----------------------------------------------------------------------


def _process(spec: dict[str, Any]) -> dict[str, Any]:
    process = spec.get("process")
    if process is None:
        process = spec["process"] = {}
    return process


def _linux(spec: dict[str, Any]) -> dict[str, Any]:
    linux = spec.get("linux")
    if linux is None:
        linux = spec["linux"] = {}
    return linux


def _linux_resources(spec: dict[str, Any]) -> dict[str, Any]:
    linux = _linux(spec)
    resources = linux.get("resources")
    if resources is None:
        resources = linux["resources"] = {}
    return resources


def _add_env(spec: dict[str, Any], env: Sequence[str]) -> None:
    process = _process(spec)
    current = process.get("env")
    if current is None:
        current = process["env"] = []
    index = {entry.partition("=")[0]: i for i, entry in enumerate(current)}
    for entry in env:
        key = entry.partition("=")[0]
        i = index.get(key)
        if i is not None:
            current[i] = entry
        else:
            index[key] = len(current)
            current.append(entry)
