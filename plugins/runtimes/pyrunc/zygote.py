"""A pre-loaded parent for pyrunc shims (a "zygote").

Every serving shim needs the same Python modules (asyncio, protobuf, the task API, ttrpc, the
service); importing them costs each shim time before it answers and private memory for the
rest of its life. The zygote imports them once, freezes what it loaded out of the garbage
collector's reach, and forks serving shims on request: their pages stay shared with the
zygote and with each other, and they answer at once.

It is an ordinary background process (``containerd-shim-pyrunc-v2 -socket unix://PATH zygote``),
one per interpreter and socket directory, listening on
``<socket dir>/pyrunc-zygote-<hash of the interpreter>.sock``; it is started by a shim
``start`` that found none (that ``start`` forks its shim itself, so nobody waits for the
zygote to load), and it exits when idle for :data:`IDLE_ENV` seconds (default 600) or when
one of the files it loaded changed (it answers ``stale`` and the ``start`` forks its own
shim). A shim it forks is detached from it (double fork, own session) and is the same shim
the ``start`` would have forked: same listener, stderr, environment and working directory.

Protocol (one request per connection): the ``start`` sends a 4-byte big-endian length and a
JSON object ``{"opts": ..., "path": ..., "env": ..., "cwd": ...}`` with the listener and the
stderr descriptor attached (SCM_RIGHTS); the zygote answers the same way with
``{"pid": N}``, ``{"stale": true}`` or ``{"error": "..."}``.
"""

from __future__ import annotations

import array
import contextlib
import gc
import hashlib
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

IDLE_ENV = "PYCONTAINERD_SHIM_ZYGOTE_IDLE"
DEFAULT_IDLE = 600.0
_LEN = struct.Struct(">I")
_MAX_REQUEST = 1 << 20
#: How often an idle zygote checks that its socket is still there.
_CHECK_EVERY = 5.0


def idle_timeout() -> float:
    """Seconds an idle zygote lives; 0 turns the zygote off."""
    try:
        return max(float(os.environ.get(IDLE_ENV, DEFAULT_IDLE)), 0.0)
    except ValueError:
        return DEFAULT_IDLE


def path_for(socket_dir: str) -> str:
    key = hashlib.sha256(os.path.realpath(sys.executable).encode()).hexdigest()[:16]
    return os.path.join(socket_dir, f"pyrunc-zygote-{key}.sock")


# -- messages ------------------------------------------------------------------------------


def _send(sock: socket.socket, obj: Any, fds: Sequence[int] = ()) -> None:
    data = json.dumps(obj).encode()
    payload = _LEN.pack(len(data)) + data
    if fds:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        n = sock.sendmsg([payload], anc)
    else:
        n = sock.send(payload)
    if n < len(payload):
        sock.sendall(payload[n:])


def _recv(sock: socket.socket) -> tuple[Any, list[int]]:
    fds: list[int] = []
    buf = b""
    while len(buf) < _LEN.size:
        msg, anc, _flags, _addr = sock.recvmsg(64 * 1024, socket.CMSG_SPACE(8 * 4))
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                arr = array.array("i")
                arr.frombytes(data[: len(data) - len(data) % arr.itemsize])
                fds.extend(arr)
        if not msg:
            raise ConnectionError("zygote: connection closed")
        buf += msg
    (length,) = _LEN.unpack(buf[: _LEN.size])
    if length > _MAX_REQUEST:
        raise ValueError(f"zygote: message too large ({length} bytes)")
    body = buf[_LEN.size :]
    while len(body) < length:
        more = sock.recv(length - len(body))
        if not more:
            raise ConnectionError("zygote: connection closed")
        body += more
    return json.loads(body[:length]), fds


# -- the start side ------------------------------------------------------------------------


def spawn(
    socket_dir: str, opts: dict[str, Any], path: str, listener: socket.socket, stderr_fd: int
) -> int | None:
    """Ask this interpreter's zygote for a serving shim; its pid, or None when there is no
    usable zygote (then one is launched for the next ``start`` and the caller forks its own)."""
    if idle_timeout() <= 0:
        return None
    zpath = path_for(socket_dir)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(5)
        try:
            s.connect(zpath)
        except OSError:
            launch(zpath)
            return None
        request = {"opts": opts, "path": path, "env": dict(os.environ), "cwd": os.getcwd()}
        _send(s, request, [listener.fileno(), stderr_fd])
        reply, fds = _recv(s)
        for fd in fds:
            os.close(fd)
    except (OSError, ValueError):
        return None
    finally:
        s.close()
    if reply.get("stale"):
        launch(zpath)
        return None
    pid = reply.get("pid")
    return int(pid) if isinstance(pid, int) and pid > 0 else None


def command(zpath: str) -> list[str]:
    """The zygote's command line after the interpreter: the shim program's (so that ``ps``
    and ``pgrep -f containerd-shim-pyrunc-v2`` count the zygote and the shims it forks with
    the shims) with the ``zygote`` action, or this package's main module."""
    prog = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.basename(prog).startswith("containerd-shim-pyrunc") and os.path.isfile(prog):
        head = [prog]
    else:
        head = ["-m", "pycontainerd.plugins.runtimes.pyrunc.main"]
    return [*head, "-socket", "unix://" + zpath, "zygote"]


def launch(zpath: str) -> None:
    """Start a zygote for ``zpath`` in the background (a fresh interpreter, its own session);
    best effort, never waited for."""
    try:
        pid = os.fork()
    except OSError:
        return
    if pid:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        return
    try:  # intermediate: fork the zygote and exit, so that nobody has to reap it
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.chdir("/")
        os.execv(sys.executable, [sys.executable, *command(zpath)])
    finally:
        os._exit(1)


# -- the zygote ----------------------------------------------------------------------------


def _preload() -> None:
    """What a serving shim imports (also lazily, e.g. for stats), loaded once here."""
    import importlib

    for name in (
        "asyncio",
        "pycontainerd.plugins.runtimes.pyrunc.server",
        "pycontainerd.plugins.runtimes.pyrunc.service",
        "pycontainerd.plugins.runtimes.pyrunc.metrics",
    ):
        importlib.import_module(name)


def _loaded_files() -> dict[str, float]:
    out: dict[str, float] = {}
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if not f or "pycontainerd" not in f:
            continue
        with contextlib.suppress(OSError):
            out[f] = os.stat(f).st_mtime
    return out


def _changed(files: dict[str, float]) -> bool:
    for f, mtime in files.items():
        try:
            if os.stat(f).st_mtime != mtime:
                return True
        except OSError:
            return True
    return False


def _listen(zpath: str) -> socket.socket | None:
    os.makedirs(os.path.dirname(zpath), mode=0o711, exist_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(zpath)
    except OSError:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(zpath)
            return None  # another zygote serves this path
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(zpath)
            s.bind(zpath)
        finally:
            probe.close()
    os.chmod(zpath, 0o600)
    s.listen(64)
    return s


def _become_shim(request: dict[str, Any], listener_fd: int, stderr_fd: int) -> int:
    """In the forked shim: take the start's descriptors, environment and directory, serve."""
    from pycontainerd.plugins.runtimes.pyrunc.main import LISTENER_FD
    from pycontainerd.plugins.runtimes.pyrunc.server import serve

    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(stderr_fd, 2)
    os.dup2(listener_fd, LISTENER_FD)
    os.closerange(LISTENER_FD + 1, os.sysconf("SC_OPEN_MAX"))
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in request["env"].items()})
    os.environ.pop("NOTIFY_SOCKET", None)
    os.chdir(request["cwd"])
    with contextlib.suppress(OSError):  # what ps shows, as for a shim forked by start
        with open("/proc/self/comm", "w") as f:
            f.write("containerd-shim")
    if "random" in sys.modules:  # do not share the zygote's random state between shims
        sys.modules["random"].seed()
    opts = dict(request["opts"])
    return serve({**opts, "action": "", "bundle": "", "socket": "unix://" + request["path"]})


def _handle(conn: socket.socket, files: dict[str, float], retire: Callable[[], None]) -> bool:
    """One request; False when the zygote should exit (its code changed: it retires, so that
    the zygote the ``start`` launches next can take the path, then answers ``stale``)."""
    fds: list[int] = []
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid():  # the socket is 0600 already; a shim runs as its parent's user
            _send(conn, {"error": f"uid {uid} may not ask this zygote for shims"})
            return True
        request, fds = _recv(conn)
        if _changed(files):
            retire()
            _send(conn, {"stale": True})
            return False
        if len(fds) != 2:
            _send(conn, {"error": "expected a listener and a stderr descriptor"})
            return True
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(rfd)
                shim = os.fork()
                if shim:
                    os.write(wfd, str(shim).encode())
                    os._exit(0)
                os.setsid()
                os.close(wfd)
                conn.close()
                code = _become_shim(request, fds[0], fds[1])
            except BaseException as e:  # noqa: BLE001 - a child never returns into the zygote
                with contextlib.suppress(BaseException):
                    os.write(2, f"containerd-shim-pyrunc-v2: zygote: {e!r}\n".encode())
            finally:
                os._exit(code)
        os.close(wfd)
        os.waitpid(pid, 0)
        with os.fdopen(rfd, "rb") as r:
            got = r.read()
        if got:
            _send(conn, {"pid": int(got)})
        else:
            _send(conn, {"error": "failed to fork a shim"})
        return True
    except (OSError, ValueError, KeyError, TypeError) as e:
        with contextlib.suppress(OSError):
            _send(conn, {"error": str(e)})
        return True
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def _still_ours(zpath: str, ident: os.stat_result) -> bool:
    """Whether ``zpath`` is still the socket we bound (its directory may have been removed,
    as tests and ``rm -rf`` of a state dir do: then nobody can reach us)."""
    try:
        st = os.stat(zpath)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (ident.st_dev, ident.st_ino)


def serve(zpath: str) -> int:
    idle = idle_timeout() or DEFAULT_IDLE
    listener = _listen(zpath)
    if listener is None:
        return 0
    retired = False
    ident: os.stat_result | None = None

    def retire() -> None:
        nonlocal retired
        if not retired:
            retired = True
            if ident is None or _still_ours(zpath, ident):
                with contextlib.suppress(OSError):
                    os.unlink(zpath)
            listener.close()

    try:
        _preload()
        files = _loaded_files()
        gc.collect()
        gc.freeze()  # keep the collector off the shared pages of every forked shim
        ident = os.stat(zpath)
        listener.settimeout(min(_CHECK_EVERY, idle))
        last = time.monotonic()
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                if time.monotonic() - last >= idle or not _still_ours(zpath, ident):
                    return 0
                continue
            last = time.monotonic()
            with conn:
                conn.settimeout(10)
                if not _handle(conn, files, retire):
                    return 0
    finally:
        retire()


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1]))
