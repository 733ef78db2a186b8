"""Running a shim binary: runtime name -> binary, ``start`` and ``delete`` with containerd's
command line and environment, the start reply, and the shim's ``log`` FIFO
(containerd ``core/runtime/v2/binary.go``, ``pkg/shim/util.go``)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.runtime import Exit, TypedValue
from pycontainerd.core.runtime.bundle import BOOTSTRAP, LOG, SHIM_BINARY_PATH, Bundle

log = logging.getLogger(__name__)
shim_log = logging.getLogger("pycontainerd.shim")

#: The newest task API version we speak (containerd's CurrentShimVersion).
CURRENT_SHIM_VERSION = 3
START_TIMEOUT = 60.0
DELETE_TIMEOUT = 30.0


# --------------------------------------------------------------------------- resolution


def binary_name(runtime: str) -> str:
    """``io.containerd.runc.v2`` -> ``containerd-shim-runc-v2``; "" when it has no two parts."""
    parts = runtime.split(".")
    if len(parts) < 2 or not parts[-1] or not parts[-2]:
        return ""
    return f"containerd-shim-{parts[-2]}-{parts[-1]}"


def _invalid_name(runtime: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(
        f"invalid runtime name {runtime!r}, correct runtime name should be either format like "
        "`io.containerd.runc.v2` or a full path to the binary"
    )


@attrs.define(eq=False)
class RuntimeResolver:
    """Resolves runtime names to shim paths, caching what it found."""

    _cache: dict[str, str] = attrs.Factory(dict)

    def resolve(self, runtime: str) -> str:
        if not runtime:
            raise errdefs.InvalidArgument("no runtime name")
        if os.path.isabs(runtime):
            if not os.path.exists(runtime):
                raise errdefs.NotFound(f"invalid custom binary path {runtime!r}: no such file")
            return runtime
        if "/" in runtime:
            raise _invalid_name(runtime)
        name = binary_name(runtime)
        if not name:
            raise _invalid_name(runtime)
        cached = self._cache.get(name)
        if cached is not None and os.path.exists(cached):
            return cached
        found = shutil.which(name)
        if found is None:
            # next to the daemon's own executable (the venv's bin directory)
            for d in (os.path.dirname(sys.executable), os.path.dirname(sys.argv[0] or "")):
                candidate = os.path.join(d, name) if d else ""
                if candidate and os.access(candidate, os.X_OK):
                    found = candidate
                    break
        if found is None:
            raise errdefs.NotFound(
                f"runtime {runtime!r} binary not installed {name!r}: file does not exist"
            )
        path = os.path.abspath(found)
        self._cache[name] = path
        return path


def publish_binary() -> str:
    """The path shims call for the legacy event path: our ``pycontainerd`` console script."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 and os.path.basename(argv0) == "pycontainerd" and os.path.exists(argv0):
        return os.path.abspath(argv0)
    for d in (os.path.dirname(sys.executable),):
        candidate = os.path.join(d, "pycontainerd")
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("pycontainerd") or "pycontainerd"


# --------------------------------------------------------------------------- start reply


@attrs.frozen(kw_only=True)
class BootstrapParams:
    """What ``start`` answered (containerd ``shim.BootstrapParams``)."""

    version: int = 2
    address: str = ""
    protocol: str = "ttrpc"

    def to_json(self) -> bytes:
        return json.dumps(
            {"version": self.version, "address": self.address, "protocol": self.protocol}
        ).encode()

    @property
    def endpoint(self) -> str:
        """``<protocol>+<address>``, as containerd records it."""
        return f"{self.protocol}+{self.address}"


def parse_start_response(out: bytes | str) -> BootstrapParams:
    """JSON bootstrap params, or (not JSON, or version < 2) the whole reply as a ttrpc address
    of a version 2 shim. A version above ours is NotImplemented."""
    text = (out.decode(errors="replace") if isinstance(out, bytes) else out).strip()
    if not text:
        raise errdefs.FailedPrecondition("shim start returned no address")
    try:
        params = json.loads(text)
    except ValueError:
        params = None
    if not isinstance(params, dict):
        return BootstrapParams(version=2, address=text, protocol="ttrpc")
    try:
        version = int(params.get("version", 0))
    except (TypeError, ValueError):
        raise errdefs.InvalidArgument(f"shim start reply: bad version in {text!r}") from None
    if version < 2:
        return BootstrapParams(version=2, address=text, protocol="ttrpc")
    if version > CURRENT_SHIM_VERSION:
        raise errdefs.NotImplemented_(f"unsupported shim version ({version}): not implemented")
    address = params.get("address")
    if not isinstance(address, str) or not address:
        raise errdefs.InvalidArgument(f"shim start reply: no address in {text!r}")
    protocol = params.get("protocol") or "ttrpc"
    if protocol not in ("ttrpc", "grpc"):
        raise errdefs.NotImplemented_(f"shim protocol {protocol!r}: not implemented")
    return BootstrapParams(version=version, address=address, protocol=str(protocol))


def read_bootstrap(bundle: Bundle) -> BootstrapParams:
    """The saved start params of a bundle: ``bootstrap.json``, else the legacy ``address``."""
    try:
        with open(bundle.file(BOOTSTRAP), "rb") as f:
            return parse_start_response(f.read())
    except FileNotFoundError:
        pass
    with open(bundle.file("address"), "rb") as f:
        return parse_start_response(f.read())


def write_bootstrap(bundle: Bundle, params: BootstrapParams) -> None:
    path = bundle.file(BOOTSTRAP)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(params.to_json())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- shim log


class _LogCopy(asyncio.Protocol):
    def __init__(self, id: str, namespace: str) -> None:  # noqa: A002
        self._id = id
        self._namespace = namespace
        self._buf = b""

    def data_received(self, data: bytes) -> None:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            self._emit(line)
        if len(self._buf) > 65536:
            self._emit(self._buf)
            self._buf = b""

    def _emit(self, line: bytes) -> None:
        if line.strip():
            shim_log.info(
                "shim id=%s namespace=%s: %s",
                self._id,
                self._namespace,
                line.decode(errors="replace").rstrip(),
            )

    def connection_lost(self, exc: Exception | None) -> None:
        if self._buf:
            self._emit(self._buf)
            self._buf = b""


@attrs.define(eq=False)
class ShimLog:
    """The bundle's ``log`` FIFO, held open read-write (so it never reads EOF while shims come
    and go) and copied to the daemon's log."""

    _transport: asyncio.ReadTransport | None = None

    @classmethod
    async def open(cls, bundle: Bundle) -> ShimLog:
        path = bundle.file(LOG)
        try:
            os.mkfifo(path, 0o700)
        except FileExistsError:
            pass
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        pipe = os.fdopen(fd, "rb", buffering=0)
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: _LogCopy(bundle.id, bundle.namespace), pipe
            )
        except BaseException:
            pipe.close()
            raise
        return cls(transport)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


# --------------------------------------------------------------------------- the binary


def _timestamp_of(ts: object) -> datetime.datetime | None:
    if ts is None or not getattr(ts, "seconds", 0) and not getattr(ts, "nanos", 0):
        return None
    return ts.ToDatetime(tzinfo=datetime.UTC)  # type: ignore[attr-defined, no-any-return]


@attrs.define(eq=False, kw_only=True)
class ShimBinary:
    """One shim binary for one bundle."""

    bundle: Bundle
    runtime: str
    address: str
    ttrpc_address: str
    env: Mapping[str, str] = attrs.Factory(dict)
    debug: bool = False

    def _args(self, *extra: str) -> list[str]:
        args = [
            "-namespace",
            self.bundle.namespace,
            "-address",
            self.address,
            "-publish-binary",
            publish_binary(),
            *extra,
        ]
        if self.debug:
            args.append("-debug")
        return args

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            GOMAXPROCS="2",
            MAX_SHIM_VERSION="2",
            TTRPC_ADDRESS=self.ttrpc_address,
            GRPC_ADDRESS=self.address,
            NAMESPACE=self.bundle.namespace,
        )
        env.update(self.env)
        return env

    async def start(self, options: TypedValue | None) -> BootstrapParams:
        """Run ``<shim> ... -id ID start`` in the bundle, options (a protobuf Any) on stdin;
        save ``shim-binary-path`` and ``bootstrap.json``; return the parsed reply."""
        stdin = b""
        if options is not None and (options[0] or options[1]):
            from google.protobuf import any_pb2

            stdin = any_pb2.Any(type_url=options[0], value=options[1]).SerializeToString()
        args = self._args("-id", self.bundle.id, "start")
        log.debug("starting shim %s %s", self.runtime, " ".join(args))
        try:
            proc = await asyncio.create_subprocess_exec(
                self.runtime,
                *args,
                cwd=self.bundle.path,
                env=self._env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as e:
            raise errdefs.FailedPrecondition(f"failed to run shim {self.runtime}: {e}") from e
        try:
            async with asyncio.timeout(START_TIMEOUT):
                out, err = await proc.communicate(stdin)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise errdefs.DeadlineExceeded(
                f"shim {self.runtime} start: no reply within {START_TIMEOUT:.0f}s"
            ) from None
        if proc.returncode != 0:
            text = (err or out).decode(errors="replace").strip()
            raise errdefs.FailedPrecondition(
                f"shim {os.path.basename(self.runtime)} start failed "
                f"(exit status {proc.returncode}): {text}"
            )
        if err.strip():
            log.debug("shim start stderr id=%s: %s", self.bundle.id, err.decode(errors="replace"))
        with open(self.bundle.file(SHIM_BINARY_PATH), "w") as f:
            f.write(self.runtime)
        params = parse_start_response(out)
        write_bootstrap(self.bundle, params)
        return params

    async def delete(self) -> Exit:
        """Run ``<shim> ... -id ID -bundle B delete`` for a shim we cannot talk to; parse the
        ``DeleteResponse`` it prints; then remove the bundle."""
        from pycontainerd.api.containerd.runtime.task.v3 import shim_pb2

        args = self._args("-id", self.bundle.id, "-bundle", self.bundle.path, "delete")
        log.info("cleaning up dead shim id=%s namespace=%s", self.bundle.id, self.bundle.namespace)
        cwd = self.bundle.path if os.path.isdir(self.bundle.path) else None
        proc = await asyncio.create_subprocess_exec(
            self.runtime,
            *args,
            cwd=cwd,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(DELETE_TIMEOUT):
                out, err = await proc.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise errdefs.DeadlineExceeded(
                f"shim delete of {self.bundle.id}: no reply within {DELETE_TIMEOUT:.0f}s"
            ) from None
        if proc.returncode != 0:
            raise errdefs.Unknown(
                f"shim delete of {self.bundle.id} failed (exit status {proc.returncode}): "
                f"{err.decode(errors='replace').strip()}"
            )
        if err.strip():
            log.warning("cleanup warnings %s", err.decode(errors="replace").strip())
        try:
            resp = shim_pb2.DeleteResponse.FromString(out)
        except Exception as e:  # protobuf decode error
            raise errdefs.DataLoss(f"shim delete of {self.bundle.id}: bad reply: {e}") from e
        await asyncio.to_thread(self.bundle.delete)
        return Exit(pid=resp.pid, status=resp.exit_status, timestamp=_timestamp_of(resp.exited_at))
