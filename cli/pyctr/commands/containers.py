"""``pyctr containers``: create, ls, info, rm, label (through the Containers service), and
the container creation ``pyctr run`` shares (containerd's ``NewContainer`` as ``ctr`` does it:
Images/Get, unpack check, Leases/Create, Snapshots/Prepare, Containers/Create,
Leases/Delete)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

#: Container label holding the image's stop signal (containerd's ``WithImageStopSignal``).
STOP_SIGNAL_LABEL = "io.containerd.image.config.stop-signal"
DEFAULT_RUNTIME = "io.containerd.runc.v2"
DEFAULT_SNAPSHOTTER = "overlayfs"
NS_DEFAULT_SNAPSHOTTER = "containerd.io/defaults/snapshotter"
NS_DEFAULT_RUNTIME = "containerd.io/defaults/runtime"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("containers", aliases=["container", "c"], help="manage containers")
    csub = p.add_subparsers(dest="containers_command", required=True)

    create = csub.add_parser("create", help="create a container")
    add_container_flags(create)
    create.add_argument("image", help="image reference")
    create.add_argument("id", help="container id")
    create.add_argument("args", nargs=argparse.REMAINDER, help="command and arguments")
    create.set_defaults(func=run_create)

    ls = csub.add_parser("ls", aliases=["list"], help="list containers")
    ls.add_argument("-q", "--quiet", action="store_true", help="print only the container ids")
    ls.add_argument("filters", nargs="*", help="filters, e.g. image~=busybox")
    ls.set_defaults(func=run_ls)

    info = csub.add_parser("info", help="get info about a container")
    info.add_argument("--spec", action="store_true", help="only display the spec")
    info.add_argument("id")
    info.set_defaults(func=run_info)

    rm = csub.add_parser("rm", aliases=["delete", "del", "remove"], help="delete containers")
    rm.add_argument("--keep-snapshot", action="store_true", help="do not remove the snapshot")
    rm.add_argument("ids", nargs="+")
    rm.set_defaults(func=run_rm)

    label = csub.add_parser("label", help="set and clear labels of a container")
    label.add_argument("id")
    label.add_argument("labels", nargs="*", help="key=value to set, key= to clear")
    label.set_defaults(func=run_label)


def add_container_flags(p: argparse.ArgumentParser) -> None:
    """The container flags of ``ctr run`` / ``ctr containers create``."""
    p.add_argument(
        "--snapshotter",
        default=os.environ.get("CONTAINERD_SNAPSHOTTER", ""),
        help="snapshotter name (default: namespace default, else overlayfs)",
    )
    p.add_argument(
        "--snapshotter-label",
        action="append",
        default=[],
        help="labels added to the container's new snapshot",
    )
    p.add_argument(
        "--runtime",
        default="",
        help="runtime name (default: namespace default, else io.containerd.runc.v2)",
    )
    p.add_argument("--cwd", default="", help="working directory of the process")
    p.add_argument("--env", action="append", default=[], help="environment variable K=V")
    p.add_argument("--env-file", default="", help="file of K=V environment variables")
    p.add_argument("--label", action="append", default=[], help="container label k=v")
    p.add_argument("--annotation", action="append", default=[], help="OCI annotation k=v")
    p.add_argument(
        "--mount",
        action="append",
        default=[],
        help="extra mount, e.g. type=bind,src=/tmp,dst=/host,options=rbind:ro",
    )
    p.add_argument("--net-host", action="store_true", help="use the host's network namespace")
    p.add_argument("--privileged", action="store_true", help="run a privileged container")
    p.add_argument("--read-only", action="store_true", help="read-only root filesystem")
    p.add_argument("--hostname", default="", help="the container's host name")
    p.add_argument("-u", "--user", default="", help="user[:group] (names or ids)")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a TTY for the container")
    p.add_argument("--platform", default="", help="run the image for this platform")


# --- gRPC helpers shared by containers, tasks and run ------------------------------------


async def call(method: Any, request: Any) -> Any:
    """Await a unary call of an aio stub, turning gRPC errors into errdefs categories."""
    import grpc

    from pycontainerd.core import errdefs

    try:
        return await method(request)
    except grpc.RpcError as e:
        raise errdefs.from_grpc(e) from None


def containers_stub(channel: Any) -> Any:
    from pycontainerd.api.containerd.services.containers.v1 import containers_pb2_grpc

    return containers_pb2_grpc.ContainersStub(channel)


async def get_container(channel: Any, id: str) -> Any:  # noqa: A002
    from pycontainerd.api.containerd.services.containers.v1 import containers_pb2 as pb

    resp = await call(containers_stub(channel).Get, pb.GetContainerRequest(id=id))
    return resp.container


def container_spec(container: Any) -> dict[str, Any]:
    from pycontainerd.core.runtime import spec as oci

    if not container.HasField("spec") or not container.spec.value:
        return {}
    return oci.from_any(container.spec)


def parse_labels(items: list[str]) -> dict[str, str]:
    """``k=v`` items (``k`` alone means ``k=true``, as ctr)."""
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        out[k] = v if sep else "true"
    return out


def run_async(args: argparse.Namespace, fn: Any) -> int:
    from pycontainerd.cli.pyctr.commands.images import run_async as _run

    return _run(args, fn)


# --- namespace defaults -------------------------------------------------------------------


async def namespace_defaults(channel: Any, namespace: str) -> dict[str, str]:
    from pycontainerd.api.containerd.services.namespaces.v1 import namespace_pb2 as pb
    from pycontainerd.api.containerd.services.namespaces.v1 import namespace_pb2_grpc
    from pycontainerd.core import errdefs

    stub = namespace_pb2_grpc.NamespacesStub(channel)
    try:
        resp = await call(stub.Get, pb.GetNamespaceRequest(name=namespace))
    except errdefs.NotFound:
        return {}
    return dict(resp.namespace.labels)


# --- container creation -------------------------------------------------------------------


async def new_container(
    channel: Any,
    args: argparse.Namespace,
    ref: str,
    id: str,
    cmd: list[str],  # noqa: A002
) -> Any:
    """Create container ``id`` from image ``ref`` as ``ctr run`` does; returns the record."""
    import datetime

    from google.protobuf import any_pb2

    from pycontainerd.api.containerd.services.containers.v1 import containers_pb2 as pb
    from pycontainerd.cli.pyctr import remote
    from pycontainerd.core import errdefs, leases, namespaces
    from pycontainerd.core import platforms as platforms_
    from pycontainerd.core.images import image as image_
    from pycontainerd.core.runtime import spec as oci
    from pycontainerd.core.snapshots.proxy import ProxySnapshotter

    if not id:
        raise errdefs.InvalidArgument("container id must be provided")
    if not ref:
        raise errdefs.InvalidArgument("image ref must be provided")
    ns = namespaces.get() or namespaces.DEFAULT
    defaults = await namespace_defaults(channel, ns)
    snapshotter = args.snapshotter or defaults.get(NS_DEFAULT_SNAPSHOTTER) or DEFAULT_SNAPSHOTTER
    runtime = args.runtime or defaults.get(NS_DEFAULT_RUNTIME) or DEFAULT_RUNTIME
    matcher = (
        platforms_.only(platforms_.parse(args.platform)) if args.platform else platforms_.default()
    )

    content = remote.RemoteContentStore(channel)
    img = await remote.RemoteImageStore(channel).get(ref)
    manifest = await image_.manifest(content, img.target, matcher)
    config = await image_.read_json(content, manifest.config)
    diff_ids = await image_.rootfs(content, manifest.config)
    parent = image_.chain_id(diff_ids) if diff_ids else ""
    sn = ProxySnapshotter(channel, snapshotter, owns_channel=False)
    if parent:
        try:
            await sn.stat(parent)
        except errdefs.NotFound:
            await _unpack(channel, content, sn, snapshotter, img.target, matcher)

    lease_mgr = remote.RemoteLeases(channel)
    expire = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=24)
    lease = await lease_mgr.create(
        _random_id(), {leases.LABEL_GC_EXPIRE: expire.strftime("%Y-%m-%dT%H:%M:%SZ")}
    )
    try:
        with leases.use(lease.id):
            mounts = await sn.prepare(id, parent, parse_labels(args.snapshotter_label))
            try:
                spec = await build_spec(args, ns, id, config.get("config") or {}, cmd, mounts)
                labels = parse_labels(args.label)
                stop = (config.get("config") or {}).get("StopSignal")
                if stop:
                    labels.setdefault(STOP_SIGNAL_LABEL, str(stop))
                type_url, value = oci.to_any(spec)
                container = pb.Container(
                    id=id,
                    labels=labels,
                    image=img.name,
                    runtime=pb.Container.Runtime(name=runtime),
                    spec=any_pb2.Any(type_url=type_url, value=value),
                    snapshotter=snapshotter,
                    snapshot_key=id,
                )
                resp = await call(
                    containers_stub(channel).Create, pb.CreateContainerRequest(container=container)
                )
            except BaseException:
                try:
                    await sn.remove(id)
                except errdefs.ContainerdError:
                    pass
                raise
    finally:
        try:
            await lease_mgr.delete(lease.id)
        except errdefs.ContainerdError as e:
            print(f"pyctr: failed to delete lease {lease.id}: {e}", file=sys.stderr)
    return resp.container


def _random_id() -> str:
    import base64
    import time

    return f"{time.time_ns()}-{base64.urlsafe_b64encode(os.urandom(6)).decode()}"


async def _unpack(
    channel: Any, content: Any, sn: Any, name: str, target: Any, matcher: Any
) -> None:
    from pycontainerd.cli.pyctr import remote
    from pycontainerd.core.images.importer import temporary_lease
    from pycontainerd.core.unpack import unpack

    async with temporary_lease(remote.RemoteLeases(channel)):
        await unpack(content, sn, name, remote.RemoteApplier(channel), target, platform=matcher)


def _env_merge(base: list[str], extra: list[str]) -> list[str]:
    """containerd's replaceOrAppendEnvValues: ``extra`` replaces same-named entries of
    ``base`` (``K`` alone removes ``K``), else is appended."""
    out = list(base)
    for kv in extra:
        key, sep, _ = kv.partition("=")
        idx = next((i for i, e in enumerate(out) if e.partition("=")[0] == key), None)
        if not sep:
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(kv)
        else:
            out[idx] = kv
    return out


def _parse_mount(spec: str) -> dict[str, Any]:
    from pycontainerd.core import errdefs

    m: dict[str, Any] = {"type": "", "source": "", "destination": "", "options": []}
    for field in spec.split(","):
        key, sep, value = field.partition("=")
        if not sep:
            raise errdefs.InvalidArgument(
                f"invalid mount specification {spec!r}: expected key=value"
            )
        key = key.strip().lower()
        if key == "type":
            m["type"] = value
        elif key in ("source", "src"):
            m["source"] = value
        elif key in ("destination", "dst", "target"):
            m["destination"] = value
        elif key == "options":
            m["options"] = [o for o in value.split(":") if o]
        else:
            raise errdefs.InvalidArgument(
                f"invalid mount specification {spec!r}: unknown key {key!r}"
            )
    if not m["destination"]:
        raise errdefs.InvalidArgument(f"invalid mount specification {spec!r}: no destination")
    return m


def _all_capabilities() -> list[str]:
    from pycontainerd.core.runtime import spec as oci

    return oci.current_capabilities()


async def _resolve_user(user: str, mounts: Any) -> tuple[int, int, list[int]]:
    """uid, gid and additional gids for ``user[:group]``; names are looked up in the
    container's /etc/passwd and /etc/group (the new snapshot mounted read-only)."""
    from pycontainerd.core import errdefs

    name, _, group = user.partition(":")
    if name.isdigit() and (not group or group.isdigit()):
        return int(name), int(group) if group else 0, []
    from pycontainerd.core.mount import with_temp_mount

    async with with_temp_mount(list(mounts), readonly=True) as root:
        passwd = _read_db(os.path.join(root, "etc/passwd"))
        groups = _read_db(os.path.join(root, "etc/group"))
    uid: int | None = None
    gid: int | None = None
    for entry in passwd:
        if len(entry) >= 4 and (entry[0] == name or entry[2] == name):
            uid, gid = int(entry[2]), int(entry[3])
            break
    if uid is None:
        if not name.isdigit():
            raise errdefs.NotFound(f"no users found matching {name!r} in /etc/passwd")
        uid, gid = int(name), 0
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            match = [e for e in groups if len(e) >= 3 and e[0] == group]
            if not match:
                raise errdefs.NotFound(f"no groups found matching {group!r} in /etc/group")
            gid = int(match[0][2])
    return uid, gid or 0, []


def _read_db(path: str) -> list[list[str]]:
    try:
        with open(path) as f:
            return [line.strip().split(":") for line in f if line.strip() and line[0] != "#"]
    except OSError:
        return []


async def build_spec(
    args: argparse.Namespace,
    namespace: str,
    id: str,  # noqa: A002
    image_config: dict[str, Any],
    cmd: list[str],
    mounts: Any,
) -> dict[str, Any]:
    """containerd's default spec with the image config (Env, Entrypoint+Cmd, WorkingDir,
    User) and the ``ctr run`` flags applied."""
    from pycontainerd.core import errdefs
    from pycontainerd.core.runtime import spec as oci

    env = _env_merge([oci.DEFAULT_PATH_ENV], list(image_config.get("Env") or []))
    argv = list(cmd) or [*(image_config.get("Entrypoint") or []), *(image_config.get("Cmd") or [])]
    if not argv:
        raise errdefs.InvalidArgument(
            "no command specified: the image has no entrypoint or cmd, give one after the id"
        )
    cwd = args.cwd or image_config.get("WorkingDir") or "/"
    spec = oci.default_spec(
        namespace,
        id,
        args=argv,
        env=env,
        cwd=cwd,
        terminal=bool(args.tty),
        hostname=args.hostname,
        readonly_root=bool(args.read_only),
        annotations=parse_labels(args.annotation) or None,
    )
    proc = spec["process"]
    if args.tty:
        proc["env"].append("TERM=xterm")
    extra_env = []
    if args.env_file:
        with open(args.env_file) as f:
            extra_env += [line.strip() for line in f if line.strip() and line[0] != "#"]
    extra_env += list(args.env)
    proc["env"] = _env_merge(proc["env"], extra_env)
    user = args.user or image_config.get("User") or ""
    if user:
        uid, gid, extra_gids = await _resolve_user(user, mounts)
        proc["user"] = {"uid": uid, "gid": gid}
        if extra_gids:
            proc["user"]["additionalGids"] = extra_gids
    if args.net_host:
        spec["linux"]["namespaces"] = [
            n for n in spec["linux"]["namespaces"] if n["type"] != "network"
        ]
        for path in ("/etc/hosts", "/etc/resolv.conf"):
            if os.path.exists(path):
                spec["mounts"].append(
                    {
                        "destination": path,
                        "type": "bind",
                        "source": path,
                        "options": ["rbind", "ro"],
                    }
                )
    if args.privileged:
        caps = _all_capabilities()
        proc["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
        spec["linux"]["maskedPaths"] = []
        spec["linux"]["readonlyPaths"] = []
        spec["linux"]["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
        for m in spec["mounts"]:
            if m["destination"] == "/sys":
                m["options"] = [o for o in m["options"] if o != "ro"]
    for m in args.mount:
        spec["mounts"].append(_parse_mount(m))
    return spec


# --- commands -----------------------------------------------------------------------------


def run_create(args: argparse.Namespace) -> int:
    cmd = list(args.args)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]

    async def go(channel: Any) -> int:
        await new_container(channel, args, args.image, args.id, cmd)
        return 0

    return run_async(args, go)


def run_ls(args: argparse.Namespace) -> int:
    from pycontainerd.api.containerd.services.containers.v1 import containers_pb2 as pb
    from pycontainerd.cli.pyctr.table import print_table

    async def go(channel: Any) -> int:
        resp = await call(
            containers_stub(channel).List, pb.ListContainersRequest(filters=list(args.filters))
        )
        if args.quiet:
            for c in resp.containers:
                print(c.id)
            return 0
        rows = [[c.id, c.image or "-", c.runtime.name] for c in resp.containers]
        print_table(["CONTAINER", "IMAGE", "RUNTIME"], rows, padding=4)
        return 0

    return run_async(args, go)


def _go_time(ts: Any) -> str:
    import datetime

    if not ts.seconds and not ts.nanos:
        return "0001-01-01T00:00:00Z"
    dt = datetime.datetime.fromtimestamp(ts.seconds, datetime.UTC)
    frac = f".{ts.nanos:09d}".rstrip("0") if ts.nanos else ""
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (frac if frac != "." else "") + "Z"


def _any_json(a: Any) -> Any:
    import base64

    if a is None or (not a.type_url and not a.value):
        return None
    return {"type_url": a.type_url, "value": base64.b64encode(a.value).decode()}


def container_info(c: Any) -> dict[str, Any]:
    """The record as ``ctr containers info`` prints it (Go field names, spec decoded)."""
    spec: Any = None
    if c.HasField("spec") and c.spec.value:
        try:
            spec = container_spec(c)
        except ValueError:
            spec = _any_json(c.spec)
    info: dict[str, Any] = {
        "ID": c.id,
        "Labels": dict(c.labels) or None,
        "Image": c.image,
        "Runtime": {
            "Name": c.runtime.name,
            "Options": _any_json(c.runtime.options) if c.runtime.HasField("options") else None,
        },
        "SnapshotKey": c.snapshot_key,
        "Snapshotter": c.snapshotter,
        "CreatedAt": _go_time(c.created_at),
        "UpdatedAt": _go_time(c.updated_at),
        "Extensions": {k: _any_json(v) for k, v in c.extensions.items()} or None,
        "SandboxID": c.sandbox,
    }
    if spec is not None:
        info["Spec"] = spec
    return info


def run_info(args: argparse.Namespace) -> int:
    import json

    async def go(channel: Any) -> int:
        c = await get_container(channel, args.id)
        out = container_spec(c) if args.spec else container_info(c)
        print(json.dumps(out, indent=4))
        return 0

    return run_async(args, go)


async def delete_container(channel: Any, id: str, *, keep_snapshot: bool = False) -> None:  # noqa: A002
    """Delete the container (and its snapshot unless ``keep_snapshot``). A stopped task is
    deleted first; a live one is refused, as ctr."""
    from pycontainerd.api.containerd.services.containers.v1 import containers_pb2 as pb
    from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
    from pycontainerd.api.containerd.types.task import task_pb2
    from pycontainerd.core import errdefs
    from pycontainerd.core.snapshots.proxy import ProxySnapshotter

    c = await get_container(channel, id)
    tasks = tasks_pb2_grpc.TasksStub(channel)
    try:
        got = await call(tasks.Get, tasks_pb2.GetRequest(container_id=id))
    except errdefs.NotFound:
        pass
    else:
        status = got.process.status
        if status not in (task_pb2.STOPPED, task_pb2.CREATED):
            raise errdefs.FailedPrecondition(
                f"cannot delete a non stopped container: task {id!r} is "
                f"{task_pb2.Status.Name(status)}"
            )
        await call(tasks.Delete, tasks_pb2.DeleteTaskRequest(container_id=id))
    await call(containers_stub(channel).Delete, pb.DeleteContainerRequest(id=id))
    if not keep_snapshot and c.snapshotter and c.snapshot_key:
        try:
            await ProxySnapshotter(channel, c.snapshotter, owns_channel=False).remove(
                c.snapshot_key
            )
        except errdefs.NotFound:
            pass


def run_rm(args: argparse.Namespace) -> int:
    from pycontainerd.core import errdefs

    async def go(channel: Any) -> int:
        rc = 0
        for cid in args.ids:
            try:
                await delete_container(channel, cid, keep_snapshot=args.keep_snapshot)
            except errdefs.ContainerdError as e:
                print(f"pyctr: failed to delete container {cid!r}: {e}", file=sys.stderr)
                rc = 1
        return rc

    return run_async(args, go)


def run_label(args: argparse.Namespace) -> int:
    from pycontainerd.api.containerd.services.containers.v1 import containers_pb2 as pb

    async def go(channel: Any) -> int:
        c = await get_container(channel, args.id)
        update = pb.Container(id=args.id)
        paths = []
        for item in args.labels:
            k, _, v = item.partition("=")
            paths.append(f"labels.{k}")
            if v:
                update.labels[k] = v
        req = pb.UpdateContainerRequest(container=update)
        req.update_mask.paths.extend(paths)
        resp = await call(containers_stub(channel).Update, req)
        labels = dict(resp.container.labels) if paths else dict(c.labels)
        print(",".join(f"{k}={v}" for k, v in sorted(labels.items())))
        return 0

    return run_async(args, go)
