"""``containerd-shim-pyrunc-v2``: the runtime v2 shim for ``io.containerd.pyrunc.v2``.

Called by containerd (ours or containerd's own) exactly like containerd-shim-runc-v2::

    <shim> -namespace NS -address ADDR -publish-binary BIN -id ID [-debug] start
    <shim> -namespace NS -address ADDR -publish-binary BIN -id ID -bundle B [-debug] delete
    <shim> -namespace NS -id ID -address ADDR -socket unix://PATH [-debug]   (serve, fd 3)
    <shim> -socket unix://PATH zygote    (the pre-loaded parent of shims, see .zygote)

``start`` (cwd = bundle) groups containers by the ``io.containerd.runc.v2.group`` or
``io.kubernetes.cri.sandbox-id`` annotation (else the id): the socket is
``unix://<dir>/<sha256 of "<address>/<ns>/<group>">`` with ``<dir>`` = ``/run/containerd/s``
(``$PYCONTAINERD_SHIM_SOCKET_DIR`` overrides it). A live shim on that socket is reused;
otherwise the listener is created and the serving shim is forked, by this interpreter's
pre-loaded :mod:`.zygote` when one is running (its modules already imported and shared with
every shim it forked), else from the ``start`` process itself, which then launches a zygote
for the next ``start`` (no second interpreter start-up either way; own session, stdio
detached, stderr on the bundle's ``log`` FIFO, the listener as fd 3). It prints the plain
address, which every containerd understands (task API v2), or containerd's JSON bootstrap
parameters with version 3 (task API v3) when ``$MAX_SHIM_VERSION`` is 3 or more. The serving
shim answers both.

This module keeps its imports light: ``start`` must answer fast and pulls in no protobuf or
asyncio; the forked server imports what it needs after the fork; ``delete`` (run by
containerd 1.6 after every shim disconnect) encodes its reply by hand and imports no protobuf.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
from typing import Any

SOCKET_DIR_ENV = "PYCONTAINERD_SHIM_SOCKET_DIR"
DEFAULT_SOCKET_DIR = "/run/containerd/s"
GROUP_ANNOTATIONS = ("io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id")
VERSION = "0.1.0"
RUNTIME_NAME = "io.containerd.pyrunc.v2"
LISTENER_FD = 3


class UsageError(Exception):
    pass


def parse_args(argv: list[str]) -> dict[str, Any]:
    """Go-flag style: ``-name value``, ``--name value``, ``-name=value``, bool ``-debug``;
    the first non-flag argument is the action."""
    strings = {"namespace", "address", "publish-binary", "id", "bundle", "socket", "debug-socket"}
    bools = {"debug", "v", "info"}
    opts: dict[str, Any] = {name: "" for name in strings} | {name: False for name in bools}
    opts["action"] = ""
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            if arg == "--":
                if i < len(argv):
                    opts["action"] = argv[i]
                break
            opts["action"] = arg
            break
        name, eq, value = arg.lstrip("-").partition("=")
        if name in bools:
            opts[name] = value.lower() not in ("false", "0") if eq else True
        elif name in strings:
            if not eq:
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = argv[i]
                i += 1
            opts[name] = value
        else:
            raise UsageError(f"flag provided but not defined: -{name}")
    return opts


# -- start ---------------------------------------------------------------------------------


def group_of(bundle: str, id: str) -> str:
    try:
        with open(os.path.join(bundle, "config.json")) as f:
            spec = json.load(f)
    except (OSError, ValueError):
        return id
    annotations = spec.get("annotations") or {} if isinstance(spec, dict) else {}
    for key in GROUP_ANNOTATIONS:
        value = annotations.get(key)
        if value:
            return str(value)
    return id


def socket_path(address: str, namespace: str, group: str) -> str:
    """containerd's shim socket: the sha256 of the cleaned ``<address>/<ns>/<group>``."""
    key = os.path.normpath(os.path.join(address, namespace, group))
    directory = os.environ.get(SOCKET_DIR_ENV) or DEFAULT_SOCKET_DIR
    return os.path.join(directory, hashlib.sha256(key.encode()).hexdigest())


def _answers(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(2)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _listen(path: str) -> socket.socket | None:
    """A listener on ``path``; None when a live shim already owns it."""
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    for _ in range(2):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
        except OSError:
            sock.close()
            if _answers(path):
                return None
            try:
                os.unlink(path)  # stale socket of a dead shim
            except FileNotFoundError:
                pass
            continue
        os.chmod(path, 0o600)
        sock.listen(128)
        return sock
    raise OSError(f"cannot listen on {path}")


def _read_options() -> bytes:
    """The runtime options containerd may pass on stdin (a protobuf Any)."""
    try:
        if os.isatty(0):
            return b""
        return sys.stdin.buffer.read()
    except (OSError, ValueError):
        return b""


def _shim_cgroup(options: bytes) -> str:
    if not options:
        return ""
    from google.protobuf import any_pb2

    from pycontainerd.api.containerd.types.runc.options import oci_pb2

    try:
        anyv = any_pb2.Any.FromString(options)
        if not anyv.type_url.endswith("containerd.runc.v1.Options"):
            return ""
        return oci_pb2.Options.FromString(anyv.value).shim_cgroup
    except Exception:  # noqa: BLE001 - bad options only lose the cgroup placement
        return ""


def _join_cgroup(pid: int, cgroup: str) -> None:
    """Best effort: put ``pid`` in ``cgroup`` in every hierarchy that has it."""
    root = "/sys/fs/cgroup"
    candidates = [os.path.join(root, cgroup.lstrip("/"))]
    try:
        candidates += [
            os.path.join(root, h, cgroup.lstrip("/"))
            for h in os.listdir(root)
            if os.path.isdir(os.path.join(root, h))
        ]
    except OSError:
        pass
    for d in candidates:
        procs = os.path.join(d, "cgroup.procs")
        if os.path.exists(procs):
            try:
                with open(procs, "w") as f:
                    f.write(str(pid))
            except OSError:
                pass


def _adjust_oom_score(pid: int) -> None:
    """containerd's score + 1 for the shim, only ever raised (lowering needs privileges we may
    not have); failures are ignored."""
    try:
        with open(f"/proc/{os.getppid()}/oom_score_adj") as f:
            parent = int(f.read().strip())
        with open(f"/proc/{pid}/oom_score_adj") as f:
            current = int(f.read().strip())
        target = min(parent + 1, 1000)
        if target > current:
            with open(f"/proc/{pid}/oom_score_adj", "w") as f:
                f.write(str(target))
    except (OSError, ValueError):
        pass


def _release_stdio(bundle: str) -> None:
    """Point stdin/stdout at /dev/null and stderr at the bundle's ``log`` FIFO (or /dev/null):
    the daemon reads our stdout and stderr pipes to EOF, which must not wait for the server."""
    devnull = os.open(os.devnull, os.O_RDWR)
    log_fd = -1
    try:
        # the daemon holds the read side of `log` open; never block on it
        log_fd = os.open(os.path.join(bundle, "log"), os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(log_fd if log_fd >= 0 else devnull, 2)
    os.close(devnull)
    if log_fd >= 0:
        os.close(log_fd)


def _fork_server(opts: dict[str, Any], sock: socket.socket, path: str) -> int:
    """Fork the serving shim from this process rather than exec a new interpreter: the child
    skips the interpreter's start-up and the imports ``start`` already paid for, so the first
    request is answered sooner. The child gets its own session, this process's (released)
    stdio, the listener as fd 3 and no other descriptor; it never returns here."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.setsid()
        if sock.fileno() != LISTENER_FD:
            os.dup2(sock.fileno(), LISTENER_FD)
            sock.close()
        else:
            sock.detach()
        os.closerange(LISTENER_FD + 1, os.sysconf("SC_OPEN_MAX"))
        os.environ.pop("NOTIFY_SOCKET", None)
        from pycontainerd.plugins.runtimes.pyrunc.server import serve

        code = serve({**opts, "action": "", "bundle": "", "socket": "unix://" + path})
    except BaseException as e:  # noqa: BLE001 - the child must never return into start
        try:
            print(f"containerd-shim-pyrunc-v2: serve: {e!r}", file=sys.stderr, flush=True)
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(code)


def _start_reply(address: str) -> str:
    try:
        max_version = int(os.environ.get("MAX_SHIM_VERSION", "0"))
    except ValueError:
        max_version = 0
    if max_version >= 3:
        return json.dumps({"version": 3, "address": address, "protocol": "ttrpc"})
    return address


def _write_address(bundle: str, address: str) -> None:
    tmp = os.path.join(bundle, ".address.tmp")
    with open(tmp, "w") as f:
        f.write(address)
    os.rename(tmp, os.path.join(bundle, "address"))


def cmd_start(opts: dict[str, Any]) -> int:
    if not opts["id"] or not opts["namespace"]:
        raise UsageError("start needs -id and -namespace")
    bundle = opts["bundle"] or os.getcwd()
    options = _read_options()
    group = group_of(bundle, opts["id"])
    path = socket_path(opts["address"], opts["namespace"], group)
    address = "unix://" + path
    sock = _listen(path)
    _write_address(bundle, address)
    reply = _start_reply(address)
    if sock is None:  # a live shim serves the group
        sys.stdout.write(reply)
        sys.stdout.flush()
        return 0
    try:
        cgroup = _shim_cgroup(options)
        # reply, then let go of the daemon's pipes before forking: its read to EOF then ends
        # when this process exits, however long the server takes to get going
        sys.stdout.write(reply)
        _release_stdio(bundle)
        from pycontainerd.plugins.runtimes.pyrunc import zygote

        pid = zygote.spawn(os.path.dirname(path), opts, path, sock, 2) or _fork_server(
            opts, sock, path
        )
    except BaseException:
        os.unlink(path)
        raise
    finally:
        sock.close()
    if cgroup:
        _join_cgroup(pid, cgroup)
    _adjust_oom_score(pid)
    # the reply is out and nothing is left to clean up: skip the interpreter's teardown, which
    # after the fork copies pages shared with the server (about 100 ms on a loaded host)
    os._exit(0)


# -- delete --------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _uint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""


def delete_response(pid: int, exit_status: int, exited_at_ns: int) -> bytes:
    """The wire bytes of ``containerd.task.v2.DeleteResponse{pid=1, exit_status=2,
    exited_at=3 (Timestamp{seconds=1, nanos=2})}``, encoded here so that ``delete`` (which
    containerd 1.6 runs after every shim disconnect) does not import protobuf."""
    seconds, nanos = divmod(exited_at_ns, 1_000_000_000)
    ts = _uint_field(1, seconds) + _uint_field(2, nanos)
    out = _uint_field(1, pid) + _uint_field(2, exit_status)
    if ts:
        out += _varint(3 << 3 | 2) + _varint(len(ts)) + ts
    return out


def cmd_delete(opts: dict[str, Any]) -> int:
    """Clean up after a shim that is gone: ``runc delete --force``, unmount the rootfs, and
    answer a DeleteResponse (pid from ``init.pid``, exit status 137). Synchronous and light:
    containerd runs this on every disconnect of a 1.6 shim."""
    import subprocess
    import time

    from pycontainerd.plugins.runtimes.pyrunc import bundle as bundle_files

    if not opts["id"]:
        raise UsageError("delete needs -id")
    bundle = opts["bundle"] or os.getcwd()
    ns = opts["namespace"] or "default"
    options = bundle_files.read_options(bundle)
    argv = [
        bundle_files.runc_command(options),
        "--root",
        bundle_files.runc_root(options, ns),
        "delete",
        "--force",
        opts["id"],
    ]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0 and "does not exist" not in proc.stderr:
            sys.stderr.write(f"runc delete {opts['id']} failed: {proc.stderr.strip()}\n")
    except OSError as e:
        sys.stderr.write(f"runc delete {opts['id']} failed: {e}\n")
    failed = bundle_files.unmount_below(os.path.join(bundle, "rootfs"))
    if failed:
        sys.stderr.write(f"failed to unmount {', '.join(failed)}\n")
    pid = bundle_files.read_init_pid(bundle)

    resp = delete_response(pid, 128 + 9, time.time_ns())
    sys.stdout.buffer.write(resp)
    sys.stdout.flush()
    return 0


# -- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.simplefilter("ignore")  # containerd 1.6 reads start's stderr as part of the address
    try:
        opts = parse_args(list(sys.argv[1:] if argv is None else argv))
    except UsageError as e:
        print(f"containerd-shim-pyrunc-v2: {e}", file=sys.stderr)
        return 2
    if opts["v"]:
        print(f"containerd-shim-pyrunc-v2:\n  Version:  {VERSION}\n  Runtime:  {RUNTIME_NAME}")
        return 0
    if opts["info"]:
        print("containerd-shim-pyrunc-v2: -info is not supported", file=sys.stderr)
        return 1
    ns = opts["namespace"] or os.environ.get("NAMESPACE", "")
    opts["namespace"] = ns
    try:
        if opts["action"] == "start":
            return cmd_start(opts)
        if opts["action"] == "delete":
            return cmd_delete(opts)
        if opts["action"] == "zygote":
            from pycontainerd.plugins.runtimes.pyrunc import zygote

            return zygote.serve(opts["socket"].removeprefix("unix://"))
        if opts["action"]:
            raise UsageError(f"unknown action {opts['action']!r}")
        from pycontainerd.plugins.runtimes.pyrunc.server import serve

        return serve(opts)
    except UsageError as e:
        print(f"containerd-shim-pyrunc-v2: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - report and fail like a shim binary does
        print(f"containerd-shim-pyrunc-v2: {opts['action'] or 'serve'}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
