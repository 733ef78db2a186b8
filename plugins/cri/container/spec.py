"""The OCI spec of a CRI container (containerd's ``buildLinuxSpec`` and
``internal/cri/opts/spec_linux_opts.go``): image config + ``ContainerConfig`` + the sandbox.

:func:`container_spec` is the whole recipe; it reads the host only for bind-mount sources
(existence, symlinks, mount propagation), devices and ``/proc/self`` (capabilities, the
daemon's ``oom_score_adj``). The user (uid/gid/additional gids) is resolved beforehand from
the container's rootfs by :func:`resolve_user`.
"""

from __future__ import annotations

import copy
import json
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.runtime import spec as oci_spec
from pycontainerd.core.runtime.spec import DEFAULT_PATH_ENV, default_spec
from pycontainerd.plugins.cri.container import seccomp
from pycontainerd.plugins.cri.podsandbox.spec import cgroups_path, oom_score_adj
from pycontainerd.plugins.cri.sandbox import annotations as ann
from pycontainerd.plugins.cri.sandbox.annotations import passthrough
from pycontainerd.plugins.cri.sandbox.paths import (
    DEV_SHM,
    ETC_HOSTNAME,
    ETC_HOSTS,
    RESOLV_CONF,
    SandboxPaths,
)

RELATIVE_ROOTFS = "rootfs"

# runtime.v1 enum values
_NS_POD, _NS_CONTAINER, _NS_NODE, _NS_TARGET = 0, 1, 2, 3
_PROP_PRIVATE, _PROP_HOST_TO_CONTAINER, _PROP_BIDIRECTIONAL = 0, 1, 2
_PROFILE_RUNTIME_DEFAULT, _PROFILE_UNCONFINED, _PROFILE_LOCALHOST = 0, 1, 2
_SUPPLEMENTAL_MERGE, _SUPPLEMENTAL_STRICT = 0, 1

# --- users ----------------------------------------------------------------------------


@attrs.frozen
class User:
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()


def _read_db(path: str) -> list[list[str]]:
    try:
        with open(path, errors="replace") as f:
            return [
                line.rstrip("\n").split(":")
                for line in f
                if line.strip() and not line.startswith("#")
            ]
    except OSError:
        return []


def user_string(config: Any, image_config: Mapping[str, Any]) -> str:
    """What the process runs as: ``run_as_username`` / ``run_as_user`` (+ ``run_as_group``),
    else the image's ``User``; "" = root. InvalidArgument for a group without a user."""
    sc = config.linux.security_context
    user = ""
    if sc.HasField("run_as_user"):
        user = str(sc.run_as_user.value)
    if sc.run_as_username:
        user = sc.run_as_username
    if sc.HasField("run_as_group"):
        if not user:
            raise errdefs.InvalidArgument(
                f"user group {sc.run_as_group.value} is specified without user"
            )
        user = f"{user}:{sc.run_as_group.value}"
    return user or str(image_config.get("User") or "")


def resolve_user(rootfs: str | None, userstr: str, merge_groups: bool = True) -> User:
    """uid/gid for ``userstr`` (``uid``, ``name``, ``uid:gid``, ``name:group``) from the
    rootfs' /etc/passwd and /etc/group, plus (``merge_groups``) the gids of the groups
    listing the user. NotFound for names that are not there."""
    passwd = _read_db(os.path.join(rootfs, "etc/passwd")) if rootfs else []
    groups = _read_db(os.path.join(rootfs, "etc/group")) if rootfs else []
    user_part, _, group_part = (userstr or "0").partition(":")
    username = ""
    if user_part.isdigit():
        uid = int(user_part)
        gid = 0
        for p in passwd:
            if len(p) > 3 and p[2] == user_part:
                username = p[0]
                gid = int(p[3]) if p[3].isdigit() else 0
                break
    else:
        for p in passwd:
            if len(p) > 3 and p[0] == user_part and p[2].isdigit():
                username, uid = p[0], int(p[2])
                gid = int(p[3]) if p[3].isdigit() else 0
                break
        else:
            raise errdefs.NotFound(f"no users found matching {user_part!r} in /etc/passwd")
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            for g in groups:
                if len(g) > 2 and g[0] == group_part and g[2].isdigit():
                    gid = int(g[2])
                    break
            else:
                raise errdefs.NotFound(f"no groups found matching {group_part!r} in /etc/group")
    extra: list[int] = []
    if merge_groups:
        extra.append(gid)
        if username:
            for g in groups:
                if len(g) > 3 and g[2].isdigit() and username in g[3].split(","):
                    if int(g[2]) not in extra:
                        extra.append(int(g[2]))
    return User(uid=uid, gid=gid, additional_gids=tuple(extra))


# --- mounts ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class MountInfo:
    mountpoint: str
    optional: str


def lookup_mount(path: str) -> MountInfo:
    """The mount (from /proc/self/mountinfo) that holds ``path``."""
    path = os.path.realpath(path)
    best: MountInfo | None = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mp = fields[4].encode().decode("unicode_escape")
            sep = fields.index("-")
            optional = " ".join(fields[6:sep])
            if path == mp or path.startswith(mp.rstrip("/") + "/") or mp == "/":
                if best is None or len(mp) >= len(best.mountpoint):
                    best = MountInfo(mountpoint=mp, optional=optional)
    if best is None:
        raise errdefs.NotFound(f"no mount found for {path!r}")
    return best


def _ensure_propagation(path: str, allowed: tuple[str, ...], what: str) -> None:
    info = lookup_mount(path)
    if any(opt.startswith(allowed) for opt in info.optional.split()):
        return
    raise errdefs.InvalidArgument(
        f"path {path!r} is mounted on {info.mountpoint!r} but it is not a {what} mount"
    )


def sandbox_mounts(config: Any, paths: SandboxPaths | None) -> list[Any]:
    """/etc/hostname, /etc/hosts, /etc/resolv.conf and /dev/shm from the sandbox's files
    (those the container does not mount itself and that exist)."""
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2

    if paths is None:
        return []
    sc = config.linux.security_context
    own = {os.path.normpath(m.container_path) for m in config.mounts}
    out = []
    for dest, host in (
        (ETC_HOSTNAME, paths.hostname),
        (ETC_HOSTS, paths.hosts),
        (RESOLV_CONF, paths.resolv_conf),
    ):
        if dest not in own and os.path.exists(host):
            out.append(
                api_pb2.Mount(
                    container_path=dest,
                    host_path=host,
                    readonly=sc.readonly_rootfs,
                    selinux_relabel=True,
                )
            )
    if DEV_SHM not in own:
        shm = DEV_SHM if sc.namespace_options.ipc == _NS_NODE else paths.shm
        if os.path.exists(shm):
            out.append(api_pb2.Mount(container_path=DEV_SHM, host_path=shm, readonly=False))
    return out


def _apply_mounts(
    spec: dict[str, Any], config: Any, extra: Sequence[Any], rro_supported: bool
) -> None:
    cri = list(config.mounts)
    own = {os.path.normpath(m.container_path) for m in cri}
    mounts = cri + [e for e in extra if os.path.normpath(e.container_path) not in own]
    # parents before children (containerd's orderedMounts: by path depth, stable)
    mounts.sort(key=lambda m: len([p for p in os.path.normpath(m.container_path).split("/") if p]))
    spec["mounts"].append(
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        }
    )
    targets = {os.path.normpath(m.container_path) for m in mounts}
    spec["mounts"] = [
        m
        for m in spec["mounts"]
        if os.path.normpath(m["destination"]) not in targets
        and not ("/dev" in targets and m["destination"].startswith("/dev/"))
    ]
    linux = spec.setdefault("linux", {})
    for m in mounts:
        dst, src = m.container_path, m.host_path
        if not dst or not os.path.isabs(dst):
            raise errdefs.InvalidArgument(f"mount container path {dst!r} must be absolute")
        if m.HasField("image") and m.image.image and not src:
            # image volumes (KEP-4639) arrive here as binds of their mounted view
            # (container.image_volumes); one that was not prepared is a caller's bug
            raise errdefs.FailedPrecondition(
                f"mount for {dst!r}: image volume {m.image.image!r} was not prepared"
            )
        if not src:
            raise errdefs.InvalidArgument(f"mount for {dst!r} has no host path")
        if not os.path.exists(src):
            try:
                os.makedirs(src, mode=0o755, exist_ok=True)
            except OSError as e:
                raise errdefs.InvalidArgument(f"failed to mkdir {src!r}: {e}") from None
        src = os.path.realpath(src)
        options = ["rbind"]
        if m.propagation == _PROP_PRIVATE:
            options.append("rprivate")
        elif m.propagation == _PROP_BIDIRECTIONAL:
            _ensure_propagation(src, ("shared:",), "shared")
            options.append("rshared")
            linux["rootfsPropagation"] = "rshared"
        elif m.propagation == _PROP_HOST_TO_CONTAINER:
            _ensure_propagation(src, ("shared:", "master:"), "shared or slave")
            options.append("rslave")
            if linux.get("rootfsPropagation") not in ("rshared", "rslave"):
                linux["rootfsPropagation"] = "rslave"
        else:
            options.append("rprivate")
        if m.readonly:
            if m.recursive_read_only:
                if not rro_supported:
                    raise errdefs.InvalidArgument(
                        f"runtime handler does not support recursive read-only mounts "
                        f"(hostPath={m.host_path!r})"
                    )
                if m.propagation != _PROP_PRIVATE:
                    raise errdefs.InvalidArgument(
                        f"recursive read-only mount needs private propagation "
                        f"(hostPath={m.host_path!r})"
                    )
                options.append("rro")
            else:
                options.append("ro")
        else:
            if m.recursive_read_only:
                raise errdefs.InvalidArgument(
                    f"recursive read-only mount conflicts with RW mount (hostPath={m.host_path!r})"
                )
            options.append("rw")
        entry: dict[str, Any] = {
            "destination": dst,
            "type": "bind",
            "source": src,
            "options": options,
        }
        if len(m.uidMappings) or len(m.gidMappings):
            entry["uidMappings"] = [
                {"containerID": x.container_id, "hostID": x.host_id, "size": x.length}
                for x in m.uidMappings
            ]
            entry["gidMappings"] = [
                {"containerID": x.container_id, "hostID": x.host_id, "size": x.length}
                for x in m.gidMappings
            ]
        spec["mounts"].append(entry)


# --- devices --------------------------------------------------------------------------


def _device(path: str, container_path: str) -> dict[str, Any] | None:
    st = os.stat(path)
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    return {
        "path": container_path,
        "type": kind,
        "major": os.major(st.st_rdev),
        "minor": os.minor(st.st_rdev),
        "fileMode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
    }


def _add_device(spec: dict[str, Any], host: str, container: str, perms: str) -> None:
    linux = spec.setdefault("linux", {})
    devs = linux.setdefault("devices", [])
    rules = linux.setdefault("resources", {}).setdefault("devices", [])
    host = os.path.realpath(host)
    if not os.path.exists(host):
        raise errdefs.InvalidArgument(f"device {host!r} does not exist")
    if os.path.isdir(host):
        for dirpath, _, files in os.walk(host):
            for name in files:
                p = os.path.join(dirpath, name)
                rel = os.path.relpath(p, host)
                with _suppress_os():
                    d = _device(p, os.path.join(container, rel))
                    if d is not None:
                        devs.append(d)
                        rules.append(_rule(d, perms))
        return
    d = _device(host, container or host)
    if d is None:
        raise errdefs.InvalidArgument(f"{host!r} is not a device")
    devs.append(d)
    rules.append(_rule(d, perms))


def _rule(d: Mapping[str, Any], perms: str) -> dict[str, Any]:
    return {
        "allow": True,
        "type": d["type"],
        "major": d["major"],
        "minor": d["minor"],
        "access": perms or "rwm",
    }


class _suppress_os:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, *_: Any) -> bool:
        return exc_type is not None and issubclass(exc_type, OSError)


def host_devices() -> list[dict[str, Any]]:
    """Every char/block device under /dev (privileged containers), skipping /dev/pts etc."""
    out: list[dict[str, Any]] = []
    for dirpath, dirnames, files in os.walk("/dev"):
        dirnames[:] = [
            d for d in dirnames if d not in ("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts")
        ]
        for name in files:
            p = os.path.join(dirpath, name)
            if name == "console" or os.path.islink(p):
                continue
            with _suppress_os():
                d = _device(p, p)
                if d is not None:
                    out.append(d)
    return out


# --- environment and args -------------------------------------------------------------


def merge_env(base: Sequence[str], new: Sequence[str]) -> list[str]:
    """``new`` over ``base``: a key already there is replaced in place, else appended."""
    out = list(base)
    index = {e.partition("=")[0]: i for i, e in enumerate(out)}
    for e in new:
        key = e.partition("=")[0]
        if key in index:
            out[index[key]] = e
        else:
            index[key] = len(out)
            out.append(e)
    return out


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "surrogateescape")
    return str(value)


def process_args(config: Any, image_config: Mapping[str, Any]) -> list[str]:
    """command+args; without a command the image's Entrypoint, without args its Cmd."""
    command, args = list(config.command), list(config.args)
    if not command:
        if not args:
            args = list(image_config.get("Cmd") or [])
        entry = list(image_config.get("Entrypoint") or [])
        if not (len(entry) == 1 and entry[0] == ""):
            command = entry
    if not command and not args:
        raise errdefs.InvalidArgument("no command specified")
    return command + args


# --- seccomp --------------------------------------------------------------------------


def seccomp_profile(
    config: Any, unset_profile: str, privileged: bool, capabilities: Sequence[str]
) -> dict[str, Any] | None:
    """The ``linux.seccomp`` section (None: unconfined)."""
    if privileged:
        return None
    sc = config.linux.security_context
    if sc.HasField("seccomp"):
        kind, ref = sc.seccomp.profile_type, sc.seccomp.localhost_ref
    else:
        path = sc.seccomp_profile_path or unset_profile
        if not path or path == "unconfined":
            return None
        if path in ("runtime/default", "docker/default"):
            kind, ref = _PROFILE_RUNTIME_DEFAULT, ""
        elif path.startswith("localhost/"):
            kind, ref = _PROFILE_LOCALHOST, path[len("localhost/") :]
        else:
            raise errdefs.InvalidArgument(f"unsupported seccomp profile {path!r}")
    if kind == _PROFILE_UNCONFINED:
        return None
    if kind == _PROFILE_RUNTIME_DEFAULT:
        return seccomp.default_profile(capabilities)
    if not ref:
        raise errdefs.InvalidArgument("localhost seccomp profile needs a path")
    return seccomp.load_profile(ref)


# --- the spec -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SpecOptions:
    """What the daemon's config and the runtime handler decide."""

    restrict_oom_score_adj: bool = False
    disable_proc_mount: bool = False
    unset_seccomp_profile: str = ""
    pod_annotations: tuple[str, ...] = ()
    container_annotations: tuple[str, ...] = ()
    privileged_without_host_devices: bool = False
    privileged_without_host_devices_all_devices_allowed: bool = False
    #: runtime handler supports recursive read-only mounts
    rro_supported: bool = False
    #: ``base_runtime_spec`` of the handler, if any
    base_spec: Mapping[str, Any] | None = None
    #: swap limits possible (cgroup v1 memsw / v2 swap.max)
    swap_available: bool = False
    hostname: Callable[[], str] = attrs.field(default=lambda: os.uname().nodename)


def swap_controller_available() -> bool:
    return os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") or os.path.exists(
        "/sys/fs/cgroup/memory.swap.max"
    )


def _set_resources(spec: dict[str, Any], res: Any, swap_available: bool) -> None:
    r = spec.setdefault("linux", {}).setdefault("resources", {})
    cpu = r.setdefault("cpu", {})
    mem = r.setdefault("memory", {})
    if res.cpu_period:
        cpu["period"] = res.cpu_period
    if res.cpu_quota:
        cpu["quota"] = res.cpu_quota
    if res.cpu_shares:
        cpu["shares"] = res.cpu_shares
    if res.cpuset_cpus:
        cpu["cpus"] = res.cpuset_cpus
    if res.cpuset_mems:
        cpu["mems"] = res.cpuset_mems
    if res.memory_limit_in_bytes:
        mem["limit"] = res.memory_limit_in_bytes
        if not res.memory_swap_limit_in_bytes and swap_available:
            mem["swap"] = res.memory_limit_in_bytes
    if res.memory_swap_limit_in_bytes and swap_available:
        mem["swap"] = res.memory_swap_limit_in_bytes
    if res.unified:
        r.setdefault("unified", {}).update(dict(res.unified))
    if not cpu:
        r.pop("cpu")
    if not mem:
        r.pop("memory")


def resources_to_cri(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's resources as ``runtime.v1.ContainerResources`` JSON (for status)."""
    r = (spec.get("linux") or {}).get("resources") or {}
    cpu, mem = r.get("cpu") or {}, r.get("memory") or {}
    linux: dict[str, Any] = {}
    for key, value in (
        ("cpu_period", cpu.get("period")),
        ("cpu_quota", cpu.get("quota")),
        ("cpu_shares", cpu.get("shares")),
        ("memory_limit_in_bytes", mem.get("limit")),
        ("memory_swap_limit_in_bytes", mem.get("swap")),
        ("cpuset_cpus", cpu.get("cpus")),
        ("cpuset_mems", cpu.get("mems")),
        ("oom_score_adj", (spec.get("process") or {}).get("oomScoreAdj")),
    ):
        if value:
            linux[key] = str(value) if isinstance(value, int) and key != "oom_score_adj" else value
    if r.get("unified"):
        linux["unified"] = dict(r["unified"])
    return {"linux": linux}


def container_spec(
    *,
    id_: str,
    sandbox_id: str,
    sandbox_pid: int,
    config: Any,
    sandbox_config: Any,
    image_config: Mapping[str, Any],
    image_name: str,
    user: User,
    namespace: str = "k8s.io",
    paths: SandboxPaths | None = None,
    options: SpecOptions = SpecOptions(),  # noqa: B008 - frozen value
    target_pid: int = 0,
    all_caps: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The container's OCI spec (a JSON object)."""
    sc = config.linux.security_context
    privileged = sc.privileged
    if privileged and not sandbox_config.linux.security_context.privileged:
        raise errdefs.InvalidArgument("no privileged container allowed in sandbox")
    all_caps = list(all_caps) if all_caps is not None else oci_spec.current_capabilities()

    if options.base_spec:
        spec = copy.deepcopy(dict(options.base_spec))
        spec.setdefault("linux", {})["cgroupsPath"] = f"/{namespace}/{id_}"
    else:
        spec = default_spec(namespace, id_)
        # containerd clears the default security settings without a base spec
        spec["process"].pop("apparmorProfile", None)
        spec["linux"].pop("seccomp", None)
        spec["process"].pop("rlimits", None)
    spec["mounts"] = [m for m in spec.get("mounts", []) if m["destination"] != "/run"]
    process = spec.setdefault("process", {})
    linux = spec.setdefault("linux", {})
    spec["root"] = {"path": RELATIVE_ROOTFS, "readonly": False}
    process["args"] = process_args(config, image_config)
    process["noNewPrivileges"] = False
    process["cwd"] = config.working_dir or str(image_config.get("WorkingDir") or "") or "/"
    process["terminal"] = bool(config.tty)

    hostname = sandbox_config.hostname or options.hostname()
    env = merge_env([DEFAULT_PATH_ENV], list(process.get("env") or []))
    env = merge_env(env, [f"HOSTNAME={hostname}"])
    env = merge_env(env, list(image_config.get("Env") or []))
    env = merge_env(env, [f"{e.key}={_text(e.value)}" for e in config.envs])
    process["env"] = env

    _apply_mounts(spec, config, sandbox_mounts(config, paths), options.rro_supported)

    if not options.disable_proc_mount:
        linux["maskedPaths"] = list(sc.masked_paths)
        linux["readonlyPaths"] = list(sc.readonly_paths)

    for dev in config.devices:
        _add_device(spec, dev.host_path, dev.container_path, dev.permissions)

    caps = process.setdefault("capabilities", {})
    sets = ("bounding", "effective", "permitted")
    current = list(caps.get("bounding") or [])
    if sc.HasField("capabilities"):
        add = [c.upper() for c in sc.capabilities.add_capabilities]
        drop = [c.upper() for c in sc.capabilities.drop_capabilities]
        if "ALL" in add:
            current = list(all_caps)
        if "ALL" in drop:
            current = []
        for c in add:
            if c != "ALL":
                name = c if c.startswith("CAP_") else "CAP_" + c
                if name not in current:
                    current.append(name)
        for c in drop:
            if c != "ALL":
                name = c if c.startswith("CAP_") else "CAP_" + c
                current = [x for x in current if x != name]

    if privileged:
        current = list(all_caps)
        linux.pop("maskedPaths", None)
        linux.pop("readonlyPaths", None)
        for m in spec["mounts"]:
            if m["destination"] == "/sys" or m["type"] == "cgroup":
                m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
        rules = linux.setdefault("resources", {}).setdefault("devices", [])
        if not options.privileged_without_host_devices:
            linux["devices"] = host_devices() + list(linux.get("devices") or [])
            rules[:] = [{"allow": True, "access": "rwm"}]
        elif options.privileged_without_host_devices_all_devices_allowed:
            rules[:] = [{"allow": True, "access": "rwm"}]
    for s in sets:
        caps[s] = list(current)
    caps.pop("inheritable", None)
    caps.pop("ambient", None)

    if sc.no_new_privs:
        process["noNewPrivileges"] = True
    if sc.readonly_rootfs:
        spec["root"]["readonly"] = True

    if config.linux.HasField("resources"):
        _set_resources(spec, config.linux.resources, options.swap_available)
    parent = sandbox_config.linux.cgroup_parent
    if parent:
        linux["cgroupsPath"] = cgroups_path(parent, id_)

    annotations = spec.setdefault("annotations", {})
    annotations.update(passthrough(dict(sandbox_config.annotations), options.pod_annotations))
    annotations.update(passthrough(dict(config.annotations), options.container_annotations))

    profile = seccomp_profile(config, options.unset_seccomp_profile, privileged, current)
    if profile is not None:
        linux["seccomp"] = profile

    # user (resolved from the rootfs beforehand) and supplemental groups
    gids = list(user.additional_gids)
    if sc.supplemental_groups_policy == _SUPPLEMENTAL_STRICT:
        # Strict: no groups from the image's /etc/group, but the primary gid stays in the
        # list (containerd's oci.WithUser ensures it; kubelet expects [gid, *supplemental])
        gids = [user.gid]
    for g in sc.supplemental_groups:
        if g not in gids:
            gids.append(int(g))
    process["user"] = {"uid": user.uid, "gid": user.gid}
    if gids:
        process["user"]["additionalGids"] = gids

    if config.linux.HasField("resources"):
        process["oomScoreAdj"] = oom_score_adj(
            config.linux.resources.oom_score_adj, options.restrict_oom_score_adj
        )

    # join the pod's namespaces through the pause process
    ns_opts = sc.namespace_options
    pid_target = target_pid or sandbox_pid
    wanted = {
        "network": f"/proc/{sandbox_pid}/ns/net",
        "ipc": f"/proc/{sandbox_pid}/ns/ipc",
        "uts": f"/proc/{sandbox_pid}/ns/uts",
    }
    if ns_opts.pid != _NS_CONTAINER:
        wanted["pid"] = f"/proc/{pid_target}/ns/pid"
    namespaces = [dict(n) for n in linux.get("namespaces") or []]
    have = {n["type"] for n in namespaces}
    for n in namespaces:
        if n["type"] in wanted:
            n["path"] = wanted[n["type"]]
    for kind, path in wanted.items():
        if kind not in have:
            namespaces.append({"type": kind, "path": path})
    linux["namespaces"] = namespaces

    annotations.update(
        {
            ann.CONTAINER_TYPE: ann.CONTAINER_TYPE_CONTAINER,
            ann.SANDBOX_ID: sandbox_id,
            ann.SANDBOX_NAMESPACE: sandbox_config.metadata.namespace,
            ann.SANDBOX_UID: sandbox_config.metadata.uid,
            ann.SANDBOX_NAME: sandbox_config.metadata.name,
            ann.CONTAINER_NAME: config.metadata.name,
            ann.IMAGE_NAME: image_name,
        }
    )
    return spec


def dumps(spec: Mapping[str, Any]) -> str:
    return json.dumps(spec, indent=2, sort_keys=True)
