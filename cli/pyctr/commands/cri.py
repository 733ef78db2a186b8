"""``pyctr cri``: a crictl-like subset over the daemon's CRI services (``runtime.v1``
RuntimeService and ImageService on the same socket as containerd's API).

Config files are crictl's JSON shapes (``PodSandboxConfig`` / ``ContainerConfig`` with
``metadata``, ``log_directory``, ``linux``, ...; proto or JSON field names, unknown fields
ignored as Go's decoder does). ``exec`` runs ExecSync, or, with ``-i``/``-t``, goes through the
streaming URL over a WebSocket (``v5.channel.k8s.io``, falling back to v4). ``logs`` reads the
CRI log file named by the container's status and joins partial (``P``) lines.

Everything heavy (grpc, the generated stubs, aiohttp) is imported inside the command functions:
pyctr's start-up is benchmarked.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

#: crictl's default per-call timeout is 2 s; pods and pulls need longer on a busy machine.
DEFAULT_TIMEOUT = 120.0
TRUNC = 13


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("cri", help="talk to the CRI services (a crictl-like subset)")
    c = p.add_subparsers(dest="cri_command", required=True, metavar="COMMAND")

    c.add_parser("version", help="runtime name and versions").set_defaults(func=run_version)
    c.add_parser("info", help="runtime status (Status, verbose)").set_defaults(func=run_info)

    x = c.add_parser("images", aliases=["img"], help="list images")
    x.add_argument("-q", "--quiet", action="store_true", help="only image IDs")
    x.add_argument("--no-trunc", action="store_true", help="full image IDs")
    x.add_argument("-o", "--output", choices=("table", "json"), default="table")
    x.add_argument("image", nargs="?", default="", help="filter by image reference")
    x.set_defaults(func=run_images)
    x = c.add_parser("pull", help="pull an image")
    x.add_argument("--pod-config", default="", help="PodSandboxConfig JSON for the pull")
    x.add_argument("image")
    x.set_defaults(func=run_pull)
    x = c.add_parser("rmi", help="remove images")
    x.add_argument("images", nargs="+")
    x.set_defaults(func=run_rmi)
    x = c.add_parser("inspecti", help="image status (verbose) as JSON")
    x.add_argument("images", nargs="+")
    x.set_defaults(func=run_inspecti)

    x = c.add_parser("pods", help="list pod sandboxes")
    x.add_argument("-q", "--quiet", action="store_true", help="only pod IDs")
    x.add_argument("--no-trunc", action="store_true", help="full IDs")
    x.add_argument("--id", default="", help="filter by pod ID")
    x.add_argument("--name", default="", help="filter by pod name (substring)")
    x.add_argument("--namespace", dest="pod_namespace", default="", help="filter by namespace")
    x.add_argument("--state", default="", help="ready or notready")
    x.add_argument("--label", action="append", default=[], help="key=value label filter")
    x.add_argument("-o", "--output", choices=("table", "json"), default="table")
    x.set_defaults(func=run_pods)
    x = c.add_parser("runp", help="run a pod sandbox from a PodSandboxConfig JSON file")
    x.add_argument("-r", "--runtime", default="", help="runtime handler")
    x.add_argument("config", help="pod config file (JSON)")
    x.set_defaults(func=run_runp)
    for name, fn, text in (
        ("stopp", "run_stopp", "stop pod sandboxes"),
        ("rmp", "run_rmp", "remove pod sandboxes"),
        ("inspectp", "run_inspectp", "pod sandbox status (verbose) as JSON"),
    ):
        x = c.add_parser(name, help=text)
        x.add_argument("ids", nargs="+", metavar="POD_ID")
        x.set_defaults(func=globals()[fn])

    x = c.add_parser("ps", help="list containers")
    x.add_argument("-a", "--all", action="store_true", help="include containers not running")
    x.add_argument("-q", "--quiet", action="store_true", help="only container IDs")
    x.add_argument("--no-trunc", action="store_true", help="full IDs")
    x.add_argument("-p", "--pod", default="", help="filter by pod ID")
    x.add_argument("--id", default="", help="filter by container ID")
    x.add_argument("--name", default="", help="filter by container name (substring)")
    x.add_argument("--state", default="", help="created, running, exited or unknown")
    x.add_argument("--label", action="append", default=[], help="key=value label filter")
    x.add_argument("-o", "--output", choices=("table", "json"), default="table")
    x.set_defaults(func=run_ps)
    x = c.add_parser("create", help="create a container in a pod")
    x.add_argument("--with-pull", action="store_true", help="pull the image first")
    x.add_argument("pod", metavar="POD_ID")
    x.add_argument("config", help="container config file (JSON)")
    x.add_argument("pod_config", help="pod config file (JSON)")
    x.set_defaults(func=run_create)
    x = c.add_parser("start", help="start created containers")
    x.add_argument("ids", nargs="+", metavar="CONTAINER_ID")
    x.set_defaults(func=run_start)
    x = c.add_parser("stop", help="stop containers")
    x.add_argument(
        "-t",
        "--timeout",
        dest="stop_timeout",
        type=int,
        default=0,
        help="seconds to wait before killing (default 0)",
    )
    x.add_argument("ids", nargs="+", metavar="CONTAINER_ID")
    x.set_defaults(func=run_stop)
    x = c.add_parser("rm", help="remove containers")
    x.add_argument("-f", "--force", action="store_true", help="stop running containers first")
    x.add_argument("ids", nargs="+", metavar="CONTAINER_ID")
    x.set_defaults(func=run_rm)
    x = c.add_parser("inspect", help="container status (verbose) as JSON")
    x.add_argument("ids", nargs="+", metavar="CONTAINER_ID")
    x.set_defaults(func=run_inspect)
    x = c.add_parser("logs", help="print a container's log")
    x.add_argument("-f", "--follow", action="store_true", help="follow until the container exits")
    x.add_argument("--tail", type=int, default=-1, help="only the last N lines")
    x.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    x.add_argument("id", metavar="CONTAINER_ID")
    x.set_defaults(func=run_logs)
    x = c.add_parser("exec", help="run a command in a running container")
    x.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    x.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    x.add_argument("-s", "--sync", action="store_true", help="ExecSync even with -i/-t")
    x.add_argument(
        "--timeout",
        dest="exec_timeout",
        type=int,
        default=0,
        help="ExecSync timeout in seconds (0: none)",
    )
    x.add_argument("id", metavar="CONTAINER_ID")
    x.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD")
    x.set_defaults(func=run_exec)
    x = c.add_parser("port-forward", help="forward local ports to a pod")
    x.add_argument("pod", metavar="POD_ID")
    x.add_argument("ports", nargs="+", metavar="[LOCAL:]REMOTE")
    x.set_defaults(func=run_port_forward)


# --------------------------------------------------------------------------- plumbing


class _CRI:
    """One channel to the socket, without a namespace header (the CRI pins ``k8s.io``)."""

    def __init__(self, args: argparse.Namespace) -> None:
        import grpc

        from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2, api_pb2_grpc

        address = args.address
        self.channel = grpc.insecure_channel(
            address if address.startswith("unix:") else f"unix:{address}",
            options=[("grpc.max_receive_message_length", 64 << 20)],
        )
        self.pb = api_pb2
        self.rs = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images = api_pb2_grpc.ImageServiceStub(self.channel)
        self.timeout = args.timeout or DEFAULT_TIMEOUT

    def __call__(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        from pycontainerd.cli.pyctr.client import call

        return call(method, request, timeout=timeout or self.timeout)

    def __enter__(self) -> _CRI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel.close()


def _load(path: str, message: Any) -> Any:
    """A JSON or YAML config file (crictl's shapes) into ``message``."""
    import json

    from google.protobuf import json_format

    from pycontainerd.core import errdefs

    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        doc = json.loads(text)
    except ValueError:
        import yaml  # type: ignore[import-untyped]

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise errdefs.InvalidArgument(
                f"failed to parse {path!r} as JSON or YAML: {e}"
            ) from None
    if not isinstance(doc, dict):
        raise errdefs.InvalidArgument(f"config {path!r} is not an object")
    try:
        return json_format.ParseDict(doc, message, ignore_unknown_fields=True)
    except json_format.ParseError as e:
        raise errdefs.InvalidArgument(f"invalid config {path!r}: {e}") from None


def _dict(message: Any) -> dict[str, Any]:
    """A message as crictl prints it (jsonpb with defaults emitted)."""
    from google.protobuf import json_format

    try:
        return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    except TypeError:  # protobuf < 5.26
        return json_format.MessageToDict(message, including_default_value_fields=True)


def _json(doc: Any) -> None:
    import json

    print(json.dumps(doc, indent=2))


def _info(info: Any) -> dict[str, Any]:
    """A verbose ``info`` map: every value that is JSON decoded."""
    import json

    out: dict[str, Any] = {}
    for k, v in sorted(info.items()):
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def _ago(created_ns: int) -> str:
    import time

    from pycontainerd.cli.pyctr.progress import human_duration

    return human_duration(max(0.0, time.time() - created_ns / 1e9)) + " ago"


def _labels(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def _id(value: str, full: bool) -> str:
    return value if full else value[:TRUNC]


# --------------------------------------------------------------------------- runtime info


def run_version(args: argparse.Namespace) -> int:
    with _CRI(args) as c:
        v = c(c.rs.Version, c.pb.VersionRequest(version="v1"))
    print(f"Version:  {v.version}")
    print(f"RuntimeName:  {v.runtime_name}")
    print(f"RuntimeVersion:  {v.runtime_version}")
    print(f"RuntimeApiVersion:  {v.runtime_api_version}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    with _CRI(args) as c:
        st = c(c.rs.Status, c.pb.StatusRequest(verbose=True))
    _json({"status": _dict(st.status), **_info(st.info)})
    return 0


# --------------------------------------------------------------------------- images


def run_images(args: argparse.Namespace) -> int:
    from pycontainerd.cli.pyctr.progress import human_size
    from pycontainerd.cli.pyctr.table import print_table

    with _CRI(args) as c:
        req = c.pb.ListImagesRequest()
        if args.image:
            req.filter.image.image = args.image
        images = list(c(c.images.ListImages, req).images)
    if args.output == "json":
        _json({"images": [_dict(i) for i in images]})
        return 0
    rows = []
    for img in images:
        iid = img.id if args.no_trunc else img.id.removeprefix("sha256:")[:TRUNC]
        if args.quiet:
            print(img.id)
            continue
        tags = (
            list(img.repo_tags)
            or [d.rsplit("@", 1)[0] + ":<none>" for d in img.repo_digests[:1]]
            or ["<none>:<none>"]
        )
        for tag in tags:
            repo, _, t = tag.rpartition(":")
            if "/" in t:  # a port, no tag
                repo, t = tag, "<none>"
            rows.append([repo, t, iid, human_size(img.size)])
    if not args.quiet:
        print_table(["IMAGE", "TAG", "IMAGE ID", "SIZE"], rows)
    return 0


def run_pull(args: argparse.Namespace) -> int:
    with _CRI(args) as c:
        req = c.pb.PullImageRequest(image=c.pb.ImageSpec(image=args.image))
        if args.pod_config:
            _load(args.pod_config, req.sandbox_config)
        resp = c(c.images.PullImage, req)
    print(f"Image is up to date for {resp.image_ref}")
    return 0


def run_rmi(args: argparse.Namespace) -> int:
    with _CRI(args) as c:
        for ref in args.images:
            c(c.images.RemoveImage, c.pb.RemoveImageRequest(image=c.pb.ImageSpec(image=ref)))
            print(f"Deleted: {ref}")
    return 0


def run_inspecti(args: argparse.Namespace) -> int:
    from pycontainerd.core import errdefs

    with _CRI(args) as c:
        for ref in args.images:
            st = c(
                c.images.ImageStatus,
                c.pb.ImageStatusRequest(image=c.pb.ImageSpec(image=ref), verbose=True),
            )
            if not st.HasField("image"):
                raise errdefs.NotFound(f"no such image {ref!r} present")
            _json({"status": _dict(st.image), **_info(st.info)})
    return 0


# --------------------------------------------------------------------------- pods


def run_pods(args: argparse.Namespace) -> int:
    from pycontainerd.cli.pyctr.table import print_table

    with _CRI(args) as c:
        pb = c.pb
        req = pb.ListPodSandboxRequest()
        if args.id:
            req.filter.id = args.id
        if args.state:
            states = {"ready": pb.SANDBOX_READY, "notready": pb.SANDBOX_NOTREADY}
            req.filter.state.state = states[args.state.lower().replace("_", "")]
        for k, v in _labels(args.label).items():
            req.filter.label_selector[k] = v
        items = list(c(c.rs.ListPodSandbox, req).items)
    items = [
        i
        for i in items
        if args.name in i.metadata.name
        and (not args.pod_namespace or i.metadata.namespace == args.pod_namespace)
    ]
    items.sort(key=lambda i: i.created_at, reverse=True)
    if args.output == "json":
        _json({"items": [_dict(i) for i in items]})
        return 0
    if args.quiet:
        for i in items:
            print(i.id)
        return 0
    state = {0: "Ready", 1: "NotReady"}
    print_table(
        ["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"],
        [
            [
                _id(i.id, args.no_trunc),
                _ago(i.created_at),
                state.get(i.state, "Unknown"),
                i.metadata.name,
                i.metadata.namespace,
                str(i.metadata.attempt),
                i.runtime_handler or "(default)",
            ]
            for i in items
        ],
    )
    return 0


def run_runp(args: argparse.Namespace) -> int:
    with _CRI(args) as c:
        config = _load(args.config, c.pb.PodSandboxConfig())
        resp = c(
            c.rs.RunPodSandbox,
            c.pb.RunPodSandboxRequest(config=config, runtime_handler=args.runtime),
        )
    print(resp.pod_sandbox_id)
    return 0


def run_stopp(args: argparse.Namespace) -> int:
    with _CRI(args) as c:
        for pod in args.ids:
            c(c.rs.StopPodSandbox, c.pb.StopPodSandboxRequest(pod_sandbox_id=pod))
            print(f"Stopped sandbox {pod}")
    return 0


def run_rmp(args: argparse.Namespace) -> int:
    with _CRI(args) as c:
        for pod in args.ids:
            c(c.rs.RemovePodSandbox, c.pb.RemovePodSandboxRequest(pod_sandbox_id=pod))
            print(f"Removed sandbox {pod}")
    return 0


def run_inspectp(args: argparse.Namespace) -> int:
    with _CRI(args) as c:
        for pod in args.ids:
            st = c(
                c.rs.PodSandboxStatus,
                c.pb.PodSandboxStatusRequest(pod_sandbox_id=pod, verbose=True),
            )
            _json({"status": _dict(st.status), **_info(st.info)})
    return 0


# --------------------------------------------------------------------------- containers


_CTR_STATES = {0: "Created", 1: "Running", 2: "Exited", 3: "Unknown"}


def run_ps(args: argparse.Namespace) -> int:
    from pycontainerd.cli.pyctr.table import print_table

    with _CRI(args) as c:
        pb = c.pb
        req = pb.ListContainersRequest()
        if args.id:
            req.filter.id = args.id
        if args.pod:
            req.filter.pod_sandbox_id = args.pod
        if args.state:
            req.filter.state.state = pb.ContainerState.Value(f"CONTAINER_{args.state.upper()}")
        elif not args.all:
            req.filter.state.state = pb.CONTAINER_RUNNING
        for k, v in _labels(args.label).items():
            req.filter.label_selector[k] = v
        items = [i for i in c(c.rs.ListContainers, req).containers if args.name in i.metadata.name]
        pods = {
            p.id: p.metadata.name for p in c(c.rs.ListPodSandbox, pb.ListPodSandboxRequest()).items
        }
    items.sort(key=lambda i: i.created_at, reverse=True)
    if args.output == "json":
        _json({"containers": [_dict(i) for i in items]})
        return 0
    if args.quiet:
        for i in items:
            print(i.id)
        return 0
    rows = []
    for i in items:
        image = i.image_ref or i.image.image
        if not args.no_trunc:
            image = image.removeprefix("sha256:")[:TRUNC] if image.startswith("sha256:") else image
        rows.append(
            [
                _id(i.id, args.no_trunc),
                image,
                _ago(i.created_at),
                _CTR_STATES.get(i.state, "Unknown"),
                i.metadata.name,
                str(i.metadata.attempt),
                _id(i.pod_sandbox_id, args.no_trunc),
                pods.get(i.pod_sandbox_id, "unknown"),
            ]
        )
    print_table(
        ["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD"], rows
    )
    return 0


def run_create(args: argparse.Namespace) -> int:
    with _CRI(args) as c:
        pb = c.pb
        config = _load(args.config, pb.ContainerConfig())
        pod_config = _load(args.pod_config, pb.PodSandboxConfig())
        if args.with_pull:
            c(
                c.images.PullImage,
                pb.PullImageRequest(
                    image=pb.ImageSpec(image=config.image.image), sandbox_config=pod_config
                ),
            )
        resp = c(
            c.rs.CreateContainer,
            pb.CreateContainerRequest(
                pod_sandbox_id=args.pod, config=config, sandbox_config=pod_config
            ),
        )
    print(resp.container_id)
    return 0


def run_start(args: argparse.Namespace) -> int:
    with _CRI(args) as c:
        for cid in args.ids:
            c(c.rs.StartContainer, c.pb.StartContainerRequest(container_id=cid))
            print(cid)
    return 0


def run_stop(args: argparse.Namespace) -> int:
    with _CRI(args) as c:
        for cid in args.ids:
            c(
                c.rs.StopContainer,
                c.pb.StopContainerRequest(container_id=cid, timeout=args.stop_timeout),
            )
            print(cid)
    return 0


def run_rm(args: argparse.Namespace) -> int:
    with _CRI(args) as c:
        for cid in args.ids:
            if args.force:
                c(c.rs.StopContainer, c.pb.StopContainerRequest(container_id=cid, timeout=0))
            c(c.rs.RemoveContainer, c.pb.RemoveContainerRequest(container_id=cid))
            print(cid)
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    with _CRI(args) as c:
        for cid in args.ids:
            st = c(
                c.rs.ContainerStatus, c.pb.ContainerStatusRequest(container_id=cid, verbose=True)
            )
            _json({"status": _dict(st.status), **_info(st.info)})
    return 0


# --------------------------------------------------------------------------- logs


def parse_log_lines(lines: list[bytes], timestamps: bool = False) -> list[tuple[str, bytes]]:
    """CRI log lines (``TIMESTAMP STREAM TAG CONTENT``) -> ``(stream, content)`` records with
    partial (``P``) parts joined to the full (``F``) line that ends them, per stream."""
    out: list[tuple[str, bytes]] = []
    partial: dict[str, bytearray] = {}
    for line in lines:
        line = line.rstrip(b"\n")
        parts = line.split(b" ", 3)
        if len(parts) < 3:
            continue
        ts, stream_b, tag = parts[0], parts[1], parts[2]
        content = parts[3] if len(parts) > 3 else b""
        stream = stream_b.decode("ascii", "replace")
        buf = partial.setdefault(stream, bytearray())
        if not buf and timestamps:
            buf += ts + b" "
        buf += content
        if tag.split(b":")[0] == b"P":
            continue
        out.append((stream, bytes(buf) + b"\n"))
        buf.clear()
    for stream, buf in partial.items():
        if buf:
            out.append((stream, bytes(buf)))
    return out


def run_logs(args: argparse.Namespace) -> int:
    import os
    import time

    from pycontainerd.core import errdefs

    with _CRI(args) as c:
        st = c(c.rs.ContainerStatus, c.pb.ContainerStatusRequest(container_id=args.id)).status
        path = st.log_path
        if not path:
            raise errdefs.NotFound(f"container {args.id!r} has no log path")
        streams = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}

        def emit(records: list[tuple[str, bytes]]) -> None:
            for stream, data in records:
                out = streams.get(stream, sys.stdout.buffer)
                out.write(data)
                out.flush()

        with open(path, "rb") as f:
            lines = f.readlines()
            if lines and not lines[-1].endswith(b"\n"):
                pending = lines.pop()
                f.seek(-len(pending), os.SEEK_CUR)
            records = parse_log_lines(lines, args.timestamps)
            if args.tail >= 0:
                records = records[len(records) - args.tail :] if args.tail else []
            emit(records)
            while args.follow:
                line = f.readline()
                if line.endswith(b"\n"):
                    emit(parse_log_lines([line], args.timestamps))
                    continue
                f.seek(-len(line), os.SEEK_CUR)
                state = c(
                    c.rs.ContainerStatus, c.pb.ContainerStatusRequest(container_id=args.id)
                ).status.state
                if state != c.pb.CONTAINER_RUNNING:
                    emit(parse_log_lines(f.readlines(), args.timestamps))
                    break
                time.sleep(0.2)
    return 0


# --------------------------------------------------------------------------- exec


def run_exec(args: argparse.Namespace) -> int:
    from pycontainerd.core import errdefs

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise errdefs.InvalidArgument("command is required")
    with _CRI(args) as c:
        pb = c.pb
        if args.sync or not (args.interactive or args.tty):
            timeout = args.exec_timeout
            resp = c(
                c.rs.ExecSync,
                pb.ExecSyncRequest(container_id=args.id, cmd=cmd, timeout=timeout),
                timeout=(timeout + 30) if timeout else None,
            )
            sys.stdout.buffer.write(resp.stdout)
            sys.stdout.flush()
            sys.stderr.buffer.write(resp.stderr)
            sys.stderr.flush()
            return int(resp.exit_code)
        url = c(
            c.rs.Exec,
            pb.ExecRequest(
                container_id=args.id,
                cmd=cmd,
                tty=args.tty,
                stdin=args.interactive,
                stdout=True,
                stderr=not args.tty,
            ),
        ).url
    import asyncio

    return asyncio.run(_stream_exec(url, stdin=args.interactive, tty=args.tty))


#: channel ids of the Kubernetes remote command protocol
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")


def exit_code_of(status: dict[str, Any]) -> tuple[int, str]:
    """(exit code, message) from the v4/v5 error-channel status object."""
    if not status or status.get("status") == "Success":
        return 0, ""
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message", "1")), ""
            except ValueError:
                break
    return 1, str(status.get("message") or status)


def _ws_url(url: str) -> str:
    if url.startswith("http://"):
        return "ws://" + url[len("http://") :]
    if url.startswith("https://"):
        return "wss://" + url[len("https://") :]
    return url


async def _stream_exec(url: str, *, stdin: bool, tty: bool) -> int:
    import asyncio
    import json
    import os
    import signal
    import threading

    import aiohttp

    from pycontainerd.cli.pyctr.cio import RawTerminal, terminal_size

    loop = asyncio.get_running_loop()
    status: dict[str, Any] = {}
    raw = RawTerminal.enter(0) if tty and stdin else None
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(_ws_url(url), protocols=list(PROTOCOLS)) as ws,
        ):
            v5 = ws.protocol == "v5.channel.k8s.io"

            async def resize() -> None:
                size = terminal_size(0)
                if size is not None and not ws.closed:
                    doc = json.dumps({"Width": size[0], "Height": size[1]}).encode()
                    await ws.send_bytes(bytes([RESIZE]) + doc)

            pending: set[asyncio.Future[Any]] = set()
            if tty:
                await resize()
                loop.add_signal_handler(
                    signal.SIGWINCH,
                    lambda: pending.add(asyncio.ensure_future(resize())),
                )
            if stdin:

                def pump() -> None:
                    while True:
                        try:
                            data = os.read(0, 32768)
                        except OSError:
                            data = b""
                        fut = asyncio.run_coroutine_threadsafe(_send_stdin(ws, data, v5), loop)
                        try:
                            fut.result()
                        except Exception:  # the stream is gone
                            return
                        if not data:
                            return

                threading.Thread(target=pump, name="pyctr-cri-stdin", daemon=True).start()

            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    if msg.type in (
                        aiohttp.WSMsgType.CLOSE,
                        aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.ERROR,
                    ):
                        break
                    continue
                if not msg.data:
                    continue
                ch, data = msg.data[0], msg.data[1:]
                if ch in (STDOUT, STDERR) and data:
                    _write_all(ch, data)
                elif ch == ERROR and data:
                    try:
                        status = json.loads(data)
                    except ValueError:
                        status = {"status": "Failure", "message": data.decode(errors="replace")}
            if tty:
                loop.remove_signal_handler(signal.SIGWINCH)
            for fut in pending:
                fut.cancel()
    finally:
        if raw is not None:
            raw.restore()
    code, message = exit_code_of(status)
    if message:
        print(f"pyctr: exec failed: {message}", file=sys.stderr)
    return code


def _write_all(fd: int, data: bytes) -> None:
    import os

    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            import select

            select.select([], [fd], [])
        except BrokenPipeError:
            return


async def _send_stdin(ws: Any, data: bytes, v5: bool) -> None:
    if ws.closed:
        raise ConnectionError("stream closed")
    if data:
        await ws.send_bytes(bytes([STDIN]) + data)
    elif v5:
        await ws.send_bytes(bytes([CLOSE, STDIN]))


# --------------------------------------------------------------------------- port-forward


def run_port_forward(args: argparse.Namespace) -> int:
    import asyncio

    from pycontainerd.core import errdefs

    pairs: list[tuple[int, int]] = []
    for spec in args.ports:
        local, _, remote = spec.rpartition(":")
        try:
            pairs.append((int(local or remote), int(remote)))
        except ValueError:
            raise errdefs.InvalidArgument(f"invalid port mapping {spec!r}") from None
    with _CRI(args) as c:
        c(c.rs.PodSandboxStatus, c.pb.PodSandboxStatusRequest(pod_sandbox_id=args.pod))
        try:
            asyncio.run(_forward(c, args.pod, pairs))
        except KeyboardInterrupt:
            pass
    return 0


async def _forward(c: _CRI, pod: str, pairs: list[tuple[int, int]]) -> None:
    import asyncio

    servers = []
    for local, remote in pairs:

        async def handle(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remote: int = remote
        ) -> None:
            try:
                await _forward_one(c, pod, remote, reader, writer)
            finally:
                writer.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", local)
        port = srv.sockets[0].getsockname()[1]
        print(f"Forwarding from 127.0.0.1:{port} -> {remote}", flush=True)
        servers.append(srv)
    await asyncio.gather(*(s.serve_forever() for s in servers))


async def _forward_one(c: _CRI, pod: str, remote: int, reader: Any, writer: Any) -> None:
    import asyncio
    import struct

    import aiohttp

    req = c.pb.PortForwardRequest(pod_sandbox_id=pod, port=[remote])
    url = (await asyncio.to_thread(c, c.rs.PortForward, req)).url
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{_ws_url(url)}?ports={remote}", protocols=["v4.channel.k8s.io"]) as ws,
    ):
        announced = {0: False, 1: False}

        async def upstream() -> None:
            while data := await reader.read(32768):
                await ws.send_bytes(b"\x00" + data)
            await ws.close()

        up = asyncio.ensure_future(upstream())
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        break
                    continue
                ch, data = msg.data[0], msg.data[1:]
                if ch in announced and not announced[ch] and len(data) >= 2:
                    announced[ch] = True
                    if struct.unpack("<H", data[:2])[0] == remote:
                        data = data[2:]
                if ch == 0 and data:
                    writer.write(data)
                    await writer.drain()
                elif ch == 1 and data:
                    print(
                        f"pyctr: port-forward {remote}: {data.decode(errors='replace')}",
                        file=sys.stderr,
                    )
        finally:
            up.cancel()
