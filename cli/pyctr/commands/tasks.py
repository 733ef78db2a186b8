"""``pyctr tasks``: start, ls, ps, kill, exec, pause, resume, metrics, delete (through the
Tasks service), and the attached task life cycle ``pyctr run`` shares: Tasks/Create with
stdio FIFOs, Tasks/Wait, Tasks/Start, signals forwarded as Tasks/Kill, Tasks/Delete; the
process's exit code becomes pyctr's."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pycontainerd.cli.pyctr.commands.containers import (
    STOP_SIGNAL_LABEL,
    call,
    container_spec,
    get_container,
    run_async,
)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("tasks", aliases=["task", "t"], help="manage tasks")
    tsub = p.add_subparsers(dest="tasks_command", required=True)

    start = tsub.add_parser("start", help="start a container that has been created")
    add_task_flags(start)
    start.add_argument("id")
    start.set_defaults(func=run_start)

    ls = tsub.add_parser("ls", aliases=["list"], help="list tasks")
    ls.add_argument("-q", "--quiet", action="store_true", help="print only the task ids")
    ls.set_defaults(func=run_ls)

    ps = tsub.add_parser("ps", help="list the processes of a task")
    ps.add_argument("id")
    ps.set_defaults(func=run_ps)

    kill = tsub.add_parser("kill", help="signal a task")
    kill.add_argument(
        "-s",
        "--signal",
        default="",
        help="signal to send (default: the image's stop signal, else SIGTERM)",
    )
    kill.add_argument("-a", "--all", action="store_true", help="send to all processes")
    kill.add_argument("--exec-id", default="", help="process to signal")
    kill.add_argument("ids", nargs="+")
    kill.set_defaults(func=run_kill)

    ex = tsub.add_parser("exec", help="run an additional process in a task")
    ex.add_argument("--cwd", default="", help="working directory of the new process")
    ex.add_argument("-t", "--tty", action="store_true", help="allocate a TTY")
    ex.add_argument("-d", "--detach", action="store_true", help="do not wait for the process")
    ex.add_argument("--exec-id", default="", help="id of the process (default: random)")
    ex.add_argument("-u", "--user", default="", help="uid[:gid] of the process")
    ex.add_argument("--env", action="append", default=[], help="extra environment K=V")
    ex.add_argument("--fifo-dir", default="", help="directory for the stdio FIFOs")
    ex.add_argument("id")
    ex.add_argument("args", nargs=argparse.REMAINDER)
    ex.set_defaults(func=run_exec)

    for name, fn, text in (
        ("pause", run_pause, "pause a task"),
        ("resume", run_resume, "resume a paused task"),
    ):
        sp = tsub.add_parser(name, help=text)
        sp.add_argument("id")
        sp.set_defaults(func=fn)

    metrics = tsub.add_parser("metrics", aliases=["metric"], help="one sample of a task's metrics")
    metrics.add_argument("--format", default="table", help='"table" or "json"')
    metrics.add_argument("id")
    metrics.set_defaults(func=run_metrics)

    rm = tsub.add_parser("delete", aliases=["del", "rm", "remove"], help="delete tasks")
    rm.add_argument("-f", "--force", action="store_true", help="kill the task first")
    rm.add_argument("--exec-id", default="", help="delete this exec process only")
    rm.add_argument("ids", nargs="+")
    rm.set_defaults(func=run_delete)


def add_task_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-d",
        "--detach",
        action="store_true",
        help="leave the task running (stdio to /dev/null or --log-uri)",
    )
    p.add_argument("--null-io", action="store_true", help="send all IO to /dev/null")
    p.add_argument("--log-uri", default="", help="log URI (file:///path, binary:///cmd, or a path)")
    p.add_argument("--fifo-dir", default="", help="directory for the stdio FIFOs")
    p.add_argument("--pid-file", default="", help="write the task's pid to this file")


def tasks_stub(channel: Any) -> Any:
    from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2_grpc

    return tasks_pb2_grpc.TasksStub(channel)


def parse_signal(value: str) -> int:
    import signal

    from pycontainerd.core import errdefs

    v = value.strip().upper()
    if v.isdigit():
        return int(v)
    if not v.startswith("SIG"):
        v = "SIG" + v
    try:
        return int(signal.Signals[v])
    except KeyError:
        raise errdefs.InvalidArgument(f"invalid signal {value!r}") from None


def _log_uri(value: str) -> str:
    import os

    if "://" in value:
        return value
    return "file://" + os.path.abspath(value)


def _write_pid_file(path: str, pid: int) -> None:
    import os

    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path))
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_SYNC, 0o666)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


async def run_task(channel: Any, container: Any, args: argparse.Namespace, *, tty: bool) -> int:
    """Create and start the task of ``container``; attached, wait for it, delete it and
    return its exit status; detached, return 0 once it runs."""
    import asyncio
    import contextlib

    from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
    from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2 as pb
    from pycontainerd.api.containerd.types import mount_pb2
    from pycontainerd.cli.pyctr import cio
    from pycontainerd.core import errdefs

    cid = container.id
    stub = tasks_stub(channel)
    detach = args.detach
    req = pb.CreateTaskRequest(container_id=cid, terminal=tty)
    if container.snapshotter and container.snapshot_key:
        sstub = snapshots_pb2_grpc.SnapshotsStub(channel)
        resp = await call(
            sstub.Mounts,
            snapshots_pb2.MountsRequest(
                snapshotter=container.snapshotter, key=container.snapshot_key
            ),
        )
        req.rootfs.extend(
            mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=list(m.options))
            for m in resp.mounts
        )
    attached = None
    if args.log_uri:
        if tty:
            raise errdefs.InvalidArgument("tty and log-uri cannot be used together")
        req.stdout = req.stderr = _log_uri(args.log_uri)
    elif args.null_io or detach:
        if tty and args.null_io:
            raise errdefs.InvalidArgument("tty and null-io cannot be used together")
    else:
        attached = await cio.attach(args.fifo_dir, cid, terminal=tty)
        req.stdin, req.stdout, req.stderr = (
            attached.fifos.stdin,
            attached.fifos.stdout,
            attached.fifos.stderr,
        )
    loop = asyncio.get_running_loop()
    stop_signals = None
    try:
        created = await call(stub.Create, req)
        if attached is not None:
            attached.start_stdin(
                loop, lambda: call(stub.CloseIO, pb.CloseIORequest(container_id=cid, stdin=True))
            )
        waiter = None
        if not detach:
            waiter = asyncio.ensure_future(call(stub.Wait, pb.WaitRequest(container_id=cid)))
        if waiter is not None:
            # before Start, so that nothing the process does is missed
            if attached is not None and tty:
                attached.enter_raw()
                await attached.handle_resize(
                    loop,
                    lambda w, h: call(
                        stub.ResizePty, pb.ResizePtyRequest(container_id=cid, width=w, height=h)
                    ),
                )
            else:
                stop_signals = cio.forward_signals(
                    loop, lambda s: call(stub.Kill, pb.KillRequest(container_id=cid, signal=s))
                )
        try:
            if args.pid_file:
                _write_pid_file(args.pid_file, created.pid)
            await call(stub.Start, pb.StartRequest(container_id=cid))
        except BaseException:
            if waiter is not None:
                waiter.cancel()
            with contextlib.suppress(errdefs.ContainerdError):
                await call(stub.Delete, pb.DeleteTaskRequest(container_id=cid))
            raise
        if waiter is None:
            return 0
        status = await waiter
        if attached is not None:
            await attached.drain()
        await call(stub.Delete, pb.DeleteTaskRequest(container_id=cid))
        return int(status.exit_status)
    finally:
        if stop_signals is not None:
            stop_signals()
        if attached is not None:
            await attached.close()


# --- commands -----------------------------------------------------------------------------


def run_start(args: argparse.Namespace) -> int:
    async def go(channel: Any) -> int:
        container = await get_container(channel, args.id)
        spec = container_spec(container)
        tty = bool((spec.get("process") or {}).get("terminal"))
        return await run_task(channel, container, args, tty=tty)

    return run_async(args, go)


def run_ls(args: argparse.Namespace) -> int:
    from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2 as pb
    from pycontainerd.api.containerd.types.task import task_pb2
    from pycontainerd.cli.pyctr.table import print_table

    async def go(channel: Any) -> int:
        resp = await call(tasks_stub(channel).List, pb.ListTasksRequest())
        if args.quiet:
            for t in resp.tasks:
                print(t.id)
            return 0
        rows = [[t.id, str(t.pid), task_pb2.Status.Name(t.status)] for t in resp.tasks]
        print_table(["TASK", "PID", "STATUS"], rows)
        return 0

    return run_async(args, go)


def run_ps(args: argparse.Namespace) -> int:
    from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2 as pb
    from pycontainerd.cli.pyctr.table import print_table

    async def go(channel: Any) -> int:
        await get_container(channel, args.id)
        resp = await call(tasks_stub(channel).ListPids, pb.ListPidsRequest(container_id=args.id))
        rows = []
        for p in resp.processes:
            info = "-"
            if p.HasField("info") and p.info.type_url:
                info = _process_info(p.info)
            rows.append([str(p.pid), info])
        print_table(["PID", "INFO"], rows)
        return 0

    return run_async(args, go)


def _process_info(a: Any) -> str:
    """The runc shims' ``containerd.runc.v1.ProcessDetails{exec_id=1}``, as ``&{ExecID:x}``."""
    exec_id = _wire_fields(a.value).get(1, [b""])[0]
    if isinstance(exec_id, bytes):
        return "&{ExecID:" + exec_id.decode(errors="replace") + "}"
    return a.type_url


def run_kill(args: argparse.Namespace) -> int:
    from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2 as pb
    from pycontainerd.core import errdefs

    if args.all and args.exec_id:
        raise errdefs.InvalidArgument("specify an exec-id or all; not both")

    async def go(channel: Any) -> int:
        rc = 0
        for cid in args.ids:
            try:
                container = await get_container(channel, cid)
                sig = args.signal or container.labels.get(STOP_SIGNAL_LABEL) or "SIGTERM"
                await call(
                    tasks_stub(channel).Kill,
                    pb.KillRequest(
                        container_id=cid,
                        exec_id=args.exec_id,
                        signal=parse_signal(sig),
                        all=args.all,
                    ),
                )
            except errdefs.ContainerdError as e:
                print(f"pyctr: failed to kill {cid!r}: {e}", file=sys.stderr)
                rc = 1
        return rc

    return run_async(args, go)


def run_exec(args: argparse.Namespace) -> int:
    import asyncio
    import base64
    import contextlib
    import os

    from google.protobuf import any_pb2

    from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2 as pb
    from pycontainerd.cli.pyctr import cio
    from pycontainerd.core import errdefs
    from pycontainerd.core.runtime import spec as oci

    argv = list(args.args)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise errdefs.InvalidArgument("a command to execute must be provided")
    exec_id = args.exec_id or base64.b32encode(os.urandom(10)).decode().lower()

    async def go(channel: Any) -> int:
        container = await get_container(channel, args.id)
        stub = tasks_stub(channel)
        await call(stub.Get, pb.GetRequest(container_id=args.id))
        process = dict(container_spec(container).get("process") or {})
        process["args"] = argv
        process["terminal"] = bool(args.tty)
        if args.cwd:
            process["cwd"] = args.cwd
        if args.env:
            from pycontainerd.cli.pyctr.commands.containers import _env_merge

            process["env"] = _env_merge(list(process.get("env") or []), args.env)
        if args.user:
            uid, _, gid = args.user.partition(":")
            if not uid.isdigit() or (gid and not gid.isdigit()):
                raise errdefs.InvalidArgument(f"exec user must be uid[:gid], got {args.user!r}")
            process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        type_url, value = oci.to_any(process, oci.PROCESS_TYPE_URL)
        req = pb.ExecProcessRequest(
            container_id=args.id,
            exec_id=exec_id,
            terminal=args.tty,
            spec=any_pb2.Any(type_url=type_url, value=value),
        )
        attached = None
        if not args.detach:
            attached = await cio.attach(args.fifo_dir, f"{args.id}-{exec_id}", terminal=args.tty)
            req.stdin, req.stdout, req.stderr = (
                attached.fifos.stdin,
                attached.fifos.stdout,
                attached.fifos.stderr,
            )
        loop = asyncio.get_running_loop()
        stop_signals = None
        try:
            await call(stub.Exec, req)
            if attached is None:
                await call(stub.Start, pb.StartRequest(container_id=args.id, exec_id=exec_id))
                return 0
            attached.start_stdin(
                loop,
                lambda: call(
                    stub.CloseIO,
                    pb.CloseIORequest(container_id=args.id, exec_id=exec_id, stdin=True),
                ),
            )
            waiter = asyncio.ensure_future(
                call(stub.Wait, pb.WaitRequest(container_id=args.id, exec_id=exec_id))
            )
            try:
                if args.tty:
                    attached.enter_raw()
                else:
                    stop_signals = cio.forward_signals(
                        loop,
                        lambda s: call(
                            stub.Kill,
                            pb.KillRequest(container_id=args.id, exec_id=exec_id, signal=s),
                        ),
                    )
                await call(stub.Start, pb.StartRequest(container_id=args.id, exec_id=exec_id))
                if args.tty:
                    await attached.handle_resize(
                        loop,
                        lambda w, h: call(
                            stub.ResizePty,
                            pb.ResizePtyRequest(
                                container_id=args.id, exec_id=exec_id, width=w, height=h
                            ),
                        ),
                    )
                status = await waiter
                await attached.drain()
                return int(status.exit_status)
            finally:
                waiter.cancel()
                with contextlib.suppress(errdefs.ContainerdError, asyncio.CancelledError):
                    await call(
                        stub.DeleteProcess,
                        pb.DeleteProcessRequest(container_id=args.id, exec_id=exec_id),
                    )
        finally:
            if stop_signals is not None:
                stop_signals()
            if attached is not None:
                await attached.close()

    return run_async(args, go)


def run_pause(args: argparse.Namespace) -> int:
    from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2 as pb

    async def go(channel: Any) -> int:
        await call(tasks_stub(channel).Pause, pb.PauseTaskRequest(container_id=args.id))
        return 0

    return run_async(args, go)


def run_resume(args: argparse.Namespace) -> int:
    from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2 as pb

    async def go(channel: Any) -> int:
        await call(tasks_stub(channel).Resume, pb.ResumeTaskRequest(container_id=args.id))
        return 0

    return run_async(args, go)


def run_delete(args: argparse.Namespace) -> int:
    import asyncio

    from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2 as pb
    from pycontainerd.api.containerd.types.task import task_pb2
    from pycontainerd.core import errdefs

    async def kill_and_wait(stub: Any, cid: str, exec_id: str) -> None:
        got = await call(stub.Get, pb.GetRequest(container_id=cid, exec_id=exec_id))
        if got.process.status == task_pb2.STOPPED:
            return
        waiter = asyncio.ensure_future(
            call(stub.Wait, pb.WaitRequest(container_id=cid, exec_id=exec_id))
        )
        try:
            await call(
                stub.Kill,
                pb.KillRequest(container_id=cid, exec_id=exec_id, signal=9, all=not exec_id),
            )
            await waiter
        finally:
            waiter.cancel()

    async def go(channel: Any) -> int:
        stub = tasks_stub(channel)
        if args.exec_id:
            cid = args.ids[0]
            if args.force:
                await kill_and_wait(stub, cid, args.exec_id)
            resp = await call(
                stub.DeleteProcess, pb.DeleteProcessRequest(container_id=cid, exec_id=args.exec_id)
            )
            return int(resp.exit_status)
        rc = 0
        for cid in args.ids:
            try:
                await get_container(channel, cid)
                if args.force:
                    await kill_and_wait(stub, cid, "")
                resp = await call(stub.Delete, pb.DeleteTaskRequest(container_id=cid))
            except errdefs.ContainerdError as e:
                print(f"pyctr: unable to delete {cid}: {e}", file=sys.stderr)
                rc = 1
                continue
            if resp.exit_status:
                print(
                    f"pyctr: task {cid} exited with non-zero exit code {resp.exit_status}",
                    file=sys.stderr,
                )
        return rc

    return run_async(args, go)


# --- metrics ------------------------------------------------------------------------------

#: containerd/cgroups v2 ``Metrics``: field numbers of what ``ctr tasks metrics`` shows.
_V2_PIDS, _V2_CPU = 1, 2
_V2_CPU_FIELDS = (
    "usage_usec",
    "user_usec",
    "system_usec",
    "nr_periods",
    "nr_throttled",
    "throttled_usec",
)


def _wire_fields(data: bytes) -> dict[int, list[Any]]:
    """A protobuf message's fields by number, undecoded (varints as ints, length-delimited
    as bytes)."""
    out: dict[int, list[Any]] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            b = data[i]
            i += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    while i < len(data):
        key = varint()
        num, wt = key >> 3, key & 7
        val: Any
        if wt == 0:
            val = varint()
        elif wt == 2:
            n = varint()
            val = data[i : i + n]
            i += n
        elif wt == 1:
            val = int.from_bytes(data[i : i + 8], "little")
            i += 8
        elif wt == 5:
            val = int.from_bytes(data[i : i + 4], "little")
            i += 4
        else:
            break
        out.setdefault(num, []).append(val)
    return out


def _message_json(m: Any) -> dict[str, Any]:
    """A message as Go's encoding/json prints containerd's stats (proto names, numbers,
    empty fields left out)."""
    out: dict[str, Any] = {}
    for fd, value in m.ListFields():
        if fd.message_type is not None:
            if fd.label == fd.LABEL_REPEATED:
                out[fd.name] = [_message_json(v) for v in value]
            else:
                out[fd.name] = _message_json(value)
        else:
            out[fd.name] = list(value) if fd.label == fd.LABEL_REPEATED else value
    return out


def _metrics_v1(data: bytes) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    from pycontainerd.plugins.runtimes.pyrunc.metrics import message_class

    m = message_class()()
    m.ParseFromString(data)
    rows = []
    if m.HasField("memory"):
        rows += [
            ("memory.usage_in_bytes", str(m.memory.usage.usage)),
            ("memory.limit_in_bytes", str(m.memory.usage.limit)),
            ("memory.stat.cache", str(m.memory.total_cache)),
        ]
    if m.HasField("cpu"):
        rows += [
            ("cpuacct.usage", str(m.cpu.usage.total)),
            ("cpuacct.usage_percpu", "[" + " ".join(str(x) for x in m.cpu.usage.per_cpu) + "]"),
        ]
    if m.HasField("pids"):
        rows += [("pids.current", str(m.pids.current)), ("pids.limit", str(m.pids.limit))]
    return rows, _message_json(m)


def _metrics_v2(data: bytes) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    top = _wire_fields(data)
    rows: list[tuple[str, str]] = []
    doc: dict[str, Any] = {}
    if _V2_PIDS in top:
        f = _wire_fields(top[_V2_PIDS][0])
        pids = {"current": f.get(1, [0])[0], "limit": f.get(2, [0])[0]}
        doc["pids"] = pids
        rows += [("pids.current", str(pids["current"])), ("pids.limit", str(pids["limit"]))]
    if _V2_CPU in top:
        f = _wire_fields(top[_V2_CPU][0])
        cpu = {name: f.get(i + 1, [0])[0] for i, name in enumerate(_V2_CPU_FIELDS)}
        doc["cpu"] = cpu
        rows += [(f"cpu.{k}", str(v)) for k, v in cpu.items()]
    return rows, doc


def run_metrics(args: argparse.Namespace) -> int:
    import json

    from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2 as pb
    from pycontainerd.cli.pyctr.commands.containers import _go_time
    from pycontainerd.cli.pyctr.table import print_table
    from pycontainerd.core import errdefs

    if args.format not in ("table", "json"):
        raise errdefs.InvalidArgument("format must be table or json")

    async def go(channel: Any) -> int:
        await get_container(channel, args.id)
        stub = tasks_stub(channel)
        await call(stub.Get, pb.GetRequest(container_id=args.id))
        resp = await call(stub.Metrics, pb.MetricsRequest(filters=[f"id=={args.id}"]))
        if not resp.metrics:
            raise errdefs.NotFound(f"no metrics received for task {args.id!r}")
        metric = resp.metrics[0]
        url = metric.data.type_url
        if url.endswith("io.containerd.cgroups.v1.Metrics"):
            rows, doc = _metrics_v1(metric.data.value)
        elif url.endswith("io.containerd.cgroups.v2.Metrics"):
            rows, doc = _metrics_v2(metric.data.value)
        else:
            raise errdefs.NotImplemented_(f"cannot decode metric data of type {url!r}")
        if args.format == "json":
            print(json.dumps(doc, indent=2))
            return 0
        print_table(["ID", "TIMESTAMP"], [[metric.id, _go_time(metric.timestamp)]])
        print()
        print_table(["METRIC", "VALUE"], [list(r) for r in rows])
        return 0

    return run_async(args, go)
