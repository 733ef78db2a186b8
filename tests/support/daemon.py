"""Start the real pycontainerd daemon as a subprocess for integration tests.

Each daemon gets its own root, state and socket under a temp dir, so tests never touch
/var/lib/pycontainerd or a real containerd.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SUPPORT_DIR = Path(__file__).resolve().parent
CTR = "/usr/bin/ctr"


def _answers(sock: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(0.5)
        s.connect(sock)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Daemon:
    """A pycontainerd process. ``address`` is its gRPC socket."""

    def __init__(
        self,
        base: Path,
        config: str | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.root = self.base / "root"
        self.state = self.base / "state"
        self.address = str(self.base / "pycontainerd.sock")
        self.config_path = self.base / "config.toml"
        self.config_path.write_text(config if config is not None else "version = 4\n")
        self.log_path = self.base / "daemon.log"
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(SUPPORT_DIR), *filter(None, [self.env.get("PYTHONPATH")])]
        )
        self.env.update(env or {})
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pycontainerd.cli.daemon",
            "--config",
            str(self.config_path),
            "--root",
            str(self.root),
            "--state",
            str(self.state),
            "--address",
            self.address,
            "--log-level",
            "debug",
            *self.args,
        ]

    def start(self, timeout: float = 30.0) -> Daemon:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.base
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"pycontainerd exited with {self.proc.returncode}:\n{self.log()}"
                )
            if _answers(self.address) and "successfully booted" in self.log():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pycontainerd did not start in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def ctr(
        self,
        *args: str,
        namespace: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run Debian's containerd ``ctr`` against this daemon."""
        cmd = [CTR, "-a", self.address]
        if namespace:
            cmd += ["-n", namespace]
        cmd += list(args)
        res = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS": "1"},
            input=input.decode() if input is not None else None,
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"ctr {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
            )
        return res

    def wait(self, cond: Callable[[], Any], what: str, timeout: float = 60) -> Any:
        """``cond()``'s first truthy value, polled until ``timeout``; AssertionError naming
        ``what`` with the end of the daemon log when it never comes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = cond()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; daemon log:\n{self.log()[-4000:]}")

    def pyctr_cmd(self, *args: str) -> list[str]:
        """The command line of ``pyctr`` (this interpreter's) against this daemon."""
        return [sys.executable, "-m", "pycontainerd.cli.pyctr", "--address", self.address, *args]

    def pyctr(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        cmd = self.pyctr_cmd(*args)
        res = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env={**self.env, **(env or {})}
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"pyctr {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
            )
        return res

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_daemon_once(
    base: Path, config: str, *extra: str, env: dict[str, str] | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run the daemon expecting it to exit by itself (start-up errors)."""
    d = Daemon(base, config=config, env=env)
    return subprocess.run(
        d.command() + list(extra), capture_output=True, text=True, env=d.env, timeout=timeout
    )


@contextlib.contextmanager
def with_image(prefix: str, config: str, image: Any) -> Iterator[Daemon]:
    """A started daemon under a new ``/tmp/<prefix>*`` dir whose PATH finds our shim (this
    interpreter's bin dir), containerd's shim and runc, with ``image`` (a
    ``tests/support/images.Image``) imported; stopped and its dir removed at the end."""
    import peers

    for name in ("containerd-shim-runc-v2", "runc"):
        peers.require_binary(name)
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path = [os.path.dirname(sys.executable), os.environ.get("PATH"), *peers.SBIN_DIRS]
    daemon = Daemon(base / "d", config=config, env={"PATH": ":".join(filter(None, path))})
    daemon.start()
    try:
        archive = image.oci_archive(base / "image.tar")
        daemon.pyctr("images", "import", "--no-progress", str(archive))
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)
