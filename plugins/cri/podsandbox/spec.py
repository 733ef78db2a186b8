"""The pause container's OCI spec (containerd's ``sandboxContainerSpec`` and
``sandboxContainerSpecOpts``), and the pieces the containers code shares: cgroup paths,
user strings, the OOM score adjustment with ``restrict_oom_score_adj``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pycontainerd.core import errdefs
from pycontainerd.core.runtime.spec import default_spec
from pycontainerd.plugins.cri import constants
from pycontainerd.plugins.cri.sandbox import annotations as ann
from pycontainerd.plugins.cri.sandbox.paths import DEV_SHM, RESOLV_CONF, SandboxPaths

#: the pause container's oom_score_adj (kubelet's for critical pods)
DEFAULT_SANDBOX_OOM_ADJ = -998
#: cpu shares of the pause container
DEFAULT_SANDBOX_CPU_SHARES = 2
#: size of a pod's /dev/shm tmpfs
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
RELATIVE_ROOTFS = "rootfs"

_NODE = 2  # runtime.v1.NamespaceMode.NODE
_POD = 0


def cgroups_path(parent: str, id_: str) -> str:
    """``parent/id``; a systemd slice parent gives ``parent:cri-containerd:id``."""
    if parent.endswith(".slice"):
        return f"{parent}:cri-containerd:{id_}"
    return parent.rstrip("/") + "/" + id_ if parent != "/" else "/" + id_


def current_oom_score_adj() -> int:
    with open("/proc/self/oom_score_adj") as f:
        return int(f.read().strip())


def oom_score_adj(value: int, restrict: bool) -> int:
    """``value``, or with ``restrict_oom_score_adj`` no lower than the daemon's own (an
    unprivileged daemon may not lower it)."""
    if restrict:
        current = current_oom_score_adj()
        if value < current:
            return current
    return value


def user_string(username: str, uid: Any, gid: Any) -> str:
    """containerd's ``GenerateUserString``: ``uid[:gid]`` from Int64Value wrappers (None or
    an unset message means absent), else ``username``."""
    user = ""
    if uid is not None:
        user = str(uid.value)
    elif username:
        user = username
    if gid is not None and user:
        user = f"{user}:{gid.value}"
    return user


def parse_numeric_user(user: str) -> tuple[int, int] | None:
    """``uid`` or ``uid:gid`` as numbers (gid 0 when absent); None when either part is a
    name (resolving names needs the rootfs' /etc/passwd and /etc/group)."""
    name, _, group = user.partition(":")
    if not name.isdigit() or (group and not group.isdigit()):
        return None
    return int(name), int(group) if group else 0


def _ns_mode(value: int) -> int:
    return int(value)


def sandbox_spec(
    *,
    id_: str,
    config: Any,
    image_config: Mapping[str, Any],
    image_name: str,
    netns_path: str,
    paths: SandboxPaths,
    pod_annotations: Sequence[str] = (),
    restrict_oom_score_adj: bool = False,
    enable_unprivileged_ports: bool = True,
    enable_unprivileged_icmp: bool = True,
    base_spec: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The pause container's spec for sandbox ``id_`` from its ``PodSandboxConfig``
    (``config``) and the pause image's config (``image_config``, the OCI ``config`` object)."""
    import copy

    entrypoint = list(image_config.get("Entrypoint") or [])
    cmd = list(image_config.get("Cmd") or [])
    if not entrypoint and not cmd:
        raise errdefs.InvalidArgument(
            f"invalid empty entrypoint and cmd in image config of {image_name!r}"
        )
    if base_spec:
        spec = copy.deepcopy(dict(base_spec))
    else:
        spec = default_spec(constants.K8S_NAMESPACE, id_, args=entrypoint + cmd)
    process = spec.setdefault("process", {})
    linux = spec.setdefault("linux", {})
    process["args"] = entrypoint + cmd
    # without default security settings: no apparmor, seccomp or rlimits
    process.pop("apparmorProfile", None)
    process.pop("rlimits", None)
    linux.pop("seccomp", None)
    spec["root"] = {"path": RELATIVE_ROOTFS, "readonly": True}
    env = list(process.get("env") or [])
    for e in image_config.get("Env") or []:
        key = e.split("=", 1)[0]
        env = [x for x in env if x.split("=", 1)[0] != key]
        env.append(e)
    process["env"] = env
    if image_config.get("WorkingDir"):
        process["cwd"] = image_config["WorkingDir"]

    lx = config.linux
    sc = lx.security_context
    ns = sc.namespace_options
    host_network = _ns_mode(ns.network) == _NODE

    if config.hostname and not host_network:
        spec["hostname"] = config.hostname
    if lx.cgroup_parent:
        linux["cgroupsPath"] = cgroups_path(lx.cgroup_parent, id_)

    namespaces = [dict(n) for n in linux.get("namespaces") or []]

    def without(kind: str) -> None:
        nonlocal namespaces
        namespaces = [n for n in namespaces if n.get("type") != kind]

    if host_network:
        without("network")
        without("uts")
    else:
        without("network")
        namespaces.append({"type": "network", "path": netns_path})
    if _ns_mode(ns.pid) == _NODE:
        without("pid")
    if _ns_mode(ns.ipc) == _NODE:
        without("ipc")
    if ns.HasField("userns_options") and _ns_mode(ns.userns_options.mode) != _NODE:
        raise errdefs.NotImplemented_("pod user namespaces are not supported")
    linux["namespaces"] = namespaces

    shm_source = DEV_SHM if _ns_mode(ns.ipc) == _NODE else paths.shm
    mounts = [m for m in spec.get("mounts") or [] if m.get("destination") not in (DEV_SHM, "/run")]
    ro_bind = ["rbind", "ro", "nosuid", "nodev", "noexec"]
    mounts.append(
        {"destination": DEV_SHM, "type": "bind", "source": shm_source, "options": ro_bind}
    )
    mounts.append(
        {
            "destination": RESOLV_CONF,
            "type": "bind",
            "source": paths.resolv_conf,
            "options": list(ro_bind),
        }
    )
    if sc.privileged:
        # a privileged sandbox gets /sys read-write and no masked/readonly paths
        for m in mounts:
            if m.get("destination") == "/sys":
                m["options"] = [o for o in m.get("options") or [] if o != "ro"] + ["rw"]
        linux.pop("maskedPaths", None)
        linux.pop("readonlyPaths", None)
    spec["mounts"] = mounts

    user = user_string(
        "",
        sc.run_as_user if sc.HasField("run_as_user") else None,
        sc.run_as_group if sc.HasField("run_as_group") else None,
    ) or str(image_config.get("User") or "")
    if user:
        parsed = parse_numeric_user(user)
        if parsed is None:
            raise errdefs.InvalidArgument(
                f"sandbox user {user!r} of image {image_name!r} is not numeric"
            )
        process["user"] = {"uid": parsed[0], "gid": parsed[1]}
    if sc.supplemental_groups:
        process.setdefault("user", {"uid": 0, "gid": 0})["additionalGids"] = [
            int(g) for g in sc.supplemental_groups
        ]

    sysctls = dict(lx.sysctls)
    if not host_network:
        if enable_unprivileged_ports and "net.ipv4.ip_unprivileged_port_start" not in sysctls:
            sysctls["net.ipv4.ip_unprivileged_port_start"] = "0"
        if enable_unprivileged_icmp and "net.ipv4.ping_group_range" not in sysctls:
            sysctls["net.ipv4.ping_group_range"] = "0 2147483647"
    if sysctls:
        linux["sysctl"] = sysctls

    resources = linux.setdefault("resources", {})
    resources.setdefault("cpu", {})["shares"] = DEFAULT_SANDBOX_CPU_SHARES
    process["oomScoreAdj"] = oom_score_adj(DEFAULT_SANDBOX_OOM_ADJ, restrict_oom_score_adj)

    annotations = dict(spec.get("annotations") or {})
    if lx.HasField("resources"):
        r = lx.resources
        annotations[ann.SANDBOX_CPU_PERIOD] = str(r.cpu_period)
        annotations[ann.SANDBOX_CPU_QUOTA] = str(r.cpu_quota)
        annotations[ann.SANDBOX_CPU_SHARES] = str(r.cpu_shares)
        annotations[ann.SANDBOX_MEM] = str(r.memory_limit_in_bytes)
    annotations.update(ann.passthrough(dict(config.annotations), pod_annotations))
    md = config.metadata
    annotations.update(
        {
            ann.SANDBOX_ID: id_,
            ann.SANDBOX_NAMESPACE: md.namespace,
            ann.SANDBOX_UID: md.uid,
            ann.SANDBOX_NAME: md.name,
            ann.SANDBOX_LOG_DIR: config.log_directory,
            ann.SANDBOX_IMAGE_NAME: image_name,
            ann.CONTAINER_TYPE: ann.CONTAINER_TYPE_SANDBOX,
        }
    )
    spec["annotations"] = annotations
    return spec
