"""An asyncio wrapper for the ``runc`` command line (containerd's go-runc, in spirit).

Every command runs as an asyncio subprocess with ``--root`` and ``--log <file> --log-format
json``; when runc fails, the error carries the last ``"level":"error"`` message runc wrote to
its log (its stderr may belong to the container). ``create`` and ``exec`` hand the process's
stdio to runc as file descriptors and only wait for runc itself to exit, never for pipes the
container keeps open. Terminals come back through a :class:`ConsoleSocket`.

    rc = Runc(root="/run/containerd/runc/default", log="/run/.../bundle/log.json")
    await rc.create("c1", "/run/.../bundle", pid_file=".../init.pid", stdio=Stdio(stdout=fd))
    await rc.start("c1")
    pids = await rc.ps("c1")
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import os
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from typing import Any

import attrs

from pycontainerd.core import errdefs

log = logging.getLogger(__name__)

DEFAULT_COMMAND = "runc"


class RuncError(errdefs.Unknown):
    """runc exited non-zero. ``message`` includes what runc logged."""

    def __init__(self, message: str, *, command: str = "", exit_code: int = -1) -> None:
        super().__init__(message)
        self.command = command
        self.exit_code = exit_code
        self.runc_message = ""


class RuncNotFound(errdefs.NotFound):
    """runc says the container does not exist."""


class RuncNotRunning(errdefs.NotFound):
    """runc says the container (or process) is not running: it has already finished."""


def _categorise(message: str, command: str, exit_code: int, runc_message: str) -> Exception:
    lowered = runc_message.lower()
    if "does not exist" in lowered or "container not found" in lowered:
        err: Exception = RuncNotFound(message)
    elif "not running" in lowered or "process already finished" in lowered:
        err = RuncNotRunning(message)
    else:
        rerr = RuncError(message, command=command, exit_code=exit_code)
        rerr.runc_message = runc_message
        err = rerr
    return err


@attrs.frozen(kw_only=True)
class Stdio:
    """File descriptors for a container process (None = /dev/null). They are duplicated into
    runc, which passes them on; the caller keeps ownership of its copies."""

    stdin: int | None = None
    stdout: int | None = None
    stderr: int | None = None


def last_error(log_path: str, offset: int = 0) -> str:
    """The message of the last error entry in runc's JSON log, from ``offset`` on."""
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return ""
    message = ""
    for line in data.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            message = line.decode(errors="replace")
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
            message = str(entry.get("msg", ""))
    return message


@attrs.define(eq=False)
class Runc:
    """One runc binary with one state root. ``log`` is the JSON log file (a temporary one per
    command when empty)."""

    command: str = DEFAULT_COMMAND
    root: str = ""
    log: str = ""
    systemd_cgroup: bool = False
    debug: bool = False

    # -- plumbing

    def _global_args(self, log_path: str) -> list[str]:
        args = [self.command]
        if self.root:
            args += ["--root", self.root]
        if self.debug:
            args.append("--debug")
        args += ["--log", log_path, "--log-format", "json"]
        if self.systemd_cgroup:
            args.append("--systemd-cgroup")
        return args

    async def _run(
        self,
        *args: str,
        stdio: Stdio | None = None,
        input: bytes | None = None,
        capture: bool = False,
    ) -> bytes:
        """Run ``runc <global args> <args>``; stdout when ``capture``. Raises the categorised
        error with runc's log message when it fails."""
        temp_log = ""
        if self.log:
            log_path = self.log
            try:
                offset = os.stat(log_path).st_size
            except FileNotFoundError:
                offset = 0
        else:
            fd, temp_log = tempfile.mkstemp(prefix="runc-log-", suffix=".json")
            os.close(fd)
            log_path, offset = temp_log, 0
        argv = self._global_args(log_path) + list(args)
        what = args[0] if args else ""
        try:
            if stdio is not None:
                stdin: Any = stdio.stdin if stdio.stdin is not None else subprocess.DEVNULL
                stdout: Any = stdio.stdout if stdio.stdout is not None else subprocess.DEVNULL
                stderr: Any = stdio.stderr if stdio.stderr is not None else subprocess.DEVNULL
            else:
                stdin = subprocess.PIPE if input is not None else subprocess.DEVNULL
                stdout = subprocess.PIPE if capture else subprocess.DEVNULL
                stderr = subprocess.PIPE
            log.debug("runc: %s", " ".join(argv))
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=stdin, stdout=stdout, stderr=stderr
                )
            except FileNotFoundError as e:
                raise errdefs.NotFound(f"runc binary {self.command!r} not found") from e
            if stdio is not None:
                await proc.wait()
                out, err = b"", b""
            else:
                out, err = await proc.communicate(input)
            if proc.returncode != 0:
                runc_message = last_error(log_path, offset)
                if not runc_message and err:
                    runc_message = err.decode(errors="replace").strip()
                message = f"runc {what} failed"
                if runc_message.startswith(message):
                    message = runc_message
                elif runc_message:
                    message += f": {runc_message}"
                message += f": exit status {proc.returncode}"
                raise _categorise(message, what, proc.returncode or -1, runc_message)
            return out or b""
        finally:
            if temp_log:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp_log)

    # -- lifecycle

    async def create(
        self,
        id: str,
        bundle: str,
        *,
        pid_file: str,
        stdio: Stdio | None = None,
        console_socket: str = "",
        no_pivot: bool = False,
        no_new_keyring: bool = False,
    ) -> int:
        """``runc create``; the init pid (from ``pid_file``)."""
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        if no_pivot:
            args.append("--no-pivot")
        if no_new_keyring:
            args.append("--no-new-keyring")
        await self._run(*args, id, stdio=stdio or Stdio())
        return read_pid_file(pid_file)

    async def start(self, id: str) -> None:
        await self._run("start", id)

    async def exec(
        self,
        id: str,
        process: Mapping[str, Any] | str,
        *,
        pid_file: str,
        stdio: Stdio | None = None,
        console_socket: str = "",
        detach: bool = True,
    ) -> int:
        """``runc exec --process`` with the OCI process spec (a dict, or the path of a JSON
        file); the pid of the new process."""
        spec_path = ""
        if isinstance(process, str):
            path = process
        else:
            fd, spec_path = tempfile.mkstemp(
                prefix=".exec-", suffix=".json", dir=os.path.dirname(pid_file) or None
            )
            with os.fdopen(fd, "w") as f:
                json.dump(process, f)
            path = spec_path
        args = ["exec", "--process", path, "--pid-file", pid_file]
        if detach:
            args.append("--detach")
        if console_socket:
            args += ["--console-socket", console_socket]
        try:
            await self._run(*args, id, stdio=stdio or Stdio())
        finally:
            if spec_path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(spec_path)
        return read_pid_file(pid_file)

    async def kill(self, id: str, signal: int, *, all: bool = False) -> None:
        args = ["kill"]
        if all:
            args.append("--all")
        await self._run(*args, id, str(signal))

    async def delete(self, id: str, *, force: bool = False) -> None:
        args = ["delete"]
        if force:
            args.append("--force")
        await self._run(*args, id)

    async def pause(self, id: str) -> None:
        await self._run("pause", id)

    async def resume(self, id: str) -> None:
        await self._run("resume", id)

    async def update(self, id: str, resources: Mapping[str, Any] | bytes) -> None:
        """``runc update --resources -`` with an OCI LinuxResources document."""
        data = resources if isinstance(resources, bytes) else json.dumps(resources).encode()
        await self._run("update", "--resources", "-", id, input=data)

    # -- queries

    async def state(self, id: str) -> dict[str, Any]:
        out = await self._run("state", id, capture=True)
        return _json(out, "state")  # type: ignore[no-any-return]

    async def list(self) -> builtins.list[dict[str, Any]]:
        out = await self._run("list", "--format", "json", capture=True)
        return _json(out, "list") or []  # type: ignore[no-any-return]

    async def ps(self, id: str) -> builtins.list[int]:
        out = await self._run("ps", "--format", "json", id, capture=True)
        pids = _json(out, "ps") or []
        return [int(p) for p in pids]

    async def stats(self, id: str) -> dict[str, Any]:
        """One ``runc events --stats`` sample: the ``data`` object (cgroup statistics)."""
        out = await self._run("events", "--stats", id, capture=True)
        event = _json(out, "events")
        if not isinstance(event, dict):
            raise errdefs.Unknown(f"runc events --stats {id}: unexpected output")
        return event.get("data") or {}

    async def version(self) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.command, "--version", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        out, _ = await proc.communicate()
        return out.decode(errors="replace").splitlines()[0] if out else ""


def _json(out: bytes, what: str) -> Any:
    try:
        return json.loads(out) if out.strip() else None
    except ValueError as e:
        raise errdefs.Unknown(f"runc {what}: invalid json output: {e}") from e


def read_pid_file(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError) as e:
        raise errdefs.Unknown(f"failed to read pid file {path}: {e}") from e


@attrs.define(eq=False)
class ConsoleSocket:
    """A unix socket runc connects to (``--console-socket``) to hand over the pty master."""

    path: str = ""
    _dir: str = attrs.field(default="", init=False)
    _sock: socket.socket | None = attrs.field(default=None, init=False)

    @classmethod
    def new(cls, directory: str | None = None) -> ConsoleSocket:
        cs = cls()
        cs._dir = tempfile.mkdtemp(prefix="pty", dir=directory)
        cs.path = os.path.join(cs._dir, "pty.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(cs.path)
        sock.listen(1)
        sock.setblocking(False)
        cs._sock = sock
        return cs

    async def receive_master(self) -> int:
        """Wait for runc and return the pty master fd it sends."""
        if self._sock is None:
            raise errdefs.FailedPrecondition("console socket is closed")
        loop = asyncio.get_running_loop()
        conn, _ = await loop.sock_accept(self._sock)
        with conn:
            conn.setblocking(True)
            _, fds, _, _ = await asyncio.to_thread(socket.recv_fds, conn, 4096, 1)
        if not fds:
            raise errdefs.Unknown("console socket: no file descriptor received")
        return fds[0]

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)


def resize_console(fd: int, width: int, height: int) -> None:
    """Set a pty's window size (TIOCSWINSZ)."""
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
