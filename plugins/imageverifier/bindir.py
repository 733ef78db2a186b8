"""The ``bindir`` image verifier (containerd's ``pkg/imageverifier/bindir``): every entry of a
directory, in name order, is run as a program for each pull, at most ``max_verifiers`` of them
(a negative maximum: no limit).

A verifier is started as ``<bin> -name <image name> -digest <digest> -stdin-media-type
application/vnd.oci.descriptor.v1+json`` in a process group of its own, with the image's root
descriptor as one line of JSON on stdin. Exit status 0 allows the pull, any other refuses it;
the first 32 KiB of stdout is the reason, the first 32 KiB of stderr goes to the debug log,
and the rest of either is read and dropped. A verifier still running after
``per_verifier_timeout`` has its whole process group killed, and the verification fails (as
does one that cannot be started or is killed by a signal). A missing or empty directory allows
every pull.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import time
from typing import Any

import attrs

from pycontainerd.core import durations, errdefs
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.imageverifier import Judgement

log = logging.getLogger(__name__)

#: Bytes of stdout (the reason) and of stderr (logged) kept from one verifier.
OUTPUT_LIMIT_BYTES = 1 << 15
#: The media type of what a verifier reads on stdin (OCI's descriptor media type).
MEDIA_TYPE_DESCRIPTOR = "application/vnd.oci.descriptor.v1+json"

_STDIN, _STDOUT, _STDERR = 0, 1, 2


def descriptor_json(desc: Descriptor) -> bytes:
    """``desc`` as Go's ``json.Encoder`` writes an OCI descriptor: compact, fields in the
    spec's order, map keys sorted, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped, one line."""
    data = desc.to_dict()
    if "annotations" in data:
        data["annotations"] = dict(sorted(data["annotations"].items()))
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(ch, esc)
    return (text + "\n").encode()


class _VerifierProtocol(asyncio.SubprocessProtocol):
    """Collects a verifier's output within the limits and tells when it is done."""

    def __init__(self, bin_name: str) -> None:
        self.bin_name = bin_name
        self.stdout = bytearray()
        self.stdout_truncated = False
        self._stderr_line = bytearray()
        self._stderr_seen = 0
        self._stderr_truncated = False
        loop = asyncio.get_running_loop()
        #: the process exited (set with its return code)
        self.exited: asyncio.Future[None] = loop.create_future()
        #: the process exited and its stdout and stderr were closed
        self.done: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == _STDOUT:
            room = OUTPUT_LIMIT_BYTES - len(self.stdout)
            self.stdout += data[:room]
            if len(data) > room:
                self.stdout_truncated = True
        elif fd == _STDERR:
            room = OUTPUT_LIMIT_BYTES - self._stderr_seen
            self._stderr_seen += min(room, len(data))
            self._stderr_line += data[: max(room, 0)]
            if len(data) > room:
                self._stderr_truncated = True
            *lines, rest = self._stderr_line.split(b"\n")
            for line in lines:
                self._log_stderr(line)
            self._stderr_line = bytearray(rest)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == _STDIN and exc is not None:
            # a verifier that exits without reading all of a large descriptor
            log.warning(
                "failed to completely write descriptor to stdin: image_verifier=%s error=%s",
                self.bin_name,
                str(exc) or type(exc).__name__,
            )
        elif fd == _STDERR:
            self.flush_stderr()

    def flush_stderr(self) -> None:
        if self._stderr_line:
            self._log_stderr(bytes(self._stderr_line))
            self._stderr_line = bytearray()
        if self._stderr_truncated:
            self._stderr_truncated = False
            log.debug(
                "image_verifier=%s stream=stderr: (previous logs may be truncated)", self.bin_name
            )

    def _log_stderr(self, line: bytes | bytearray) -> None:
        log.debug(
            "image_verifier=%s stream=stderr: %s",
            self.bin_name,
            bytes(line).decode(errors="replace"),
        )

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.exited.done():
            self.exited.set_result(None)
        if not self.done.done():
            self.done.set_result(None)

    def reason(self) -> str:
        text = bytes(self.stdout).decode(errors="replace").strip()
        return text + "(stdout truncated)" if self.stdout_truncated else text


@attrs.define(eq=False)
class BinDirVerifier:
    """Runs the programs in ``bin_dir`` (see the module docstring)."""

    bin_dir: str
    max_verifiers: int = 10
    #: seconds one verifier may run
    per_verifier_timeout: float = 10.0

    async def verify_image(self, name: str, desc: Descriptor) -> Judgement:
        try:
            entries = sorted(await asyncio.to_thread(os.listdir, self.bin_dir))
        except FileNotFoundError:
            return Judgement(
                ok=True, reason=f"image verifier directory {self.bin_dir} does not exist"
            )
        except OSError as exc:
            raise errdefs.Unknown(f"failed to list directory contents: {exc}") from exc
        if not entries:
            return Judgement(ok=True, reason=f"no image verifier binaries found in {self.bin_dir}")
        reasons: list[str] = []
        for i, bin_name in enumerate(entries):
            if self.max_verifiers >= 0 and i + 1 > self.max_verifiers:
                log.warning(
                    "image verifiers are being skipped since directory %s has %d entries, "
                    "more than configured max of %d verifiers",
                    self.bin_dir,
                    len(entries),
                    self.max_verifiers,
                )
                break
            start = time.monotonic()
            try:
                exit_code, reason = await self._run(bin_name, name, desc)
            except errdefs.ContainerdError as exc:
                runtime = durations.format(time.monotonic() - start)
                raise errdefs.Unknown(
                    f"failed to call verifier {bin_name} (runtime {runtime}): {exc}"
                ) from exc
            if exit_code != 0:
                return Judgement(
                    ok=False,
                    reason=f"verifier {bin_name} rejected image (exit code {exit_code}): {reason}",
                )
            reasons.append(f"{bin_name} => {reason}")
        return Judgement(ok=True, reason=", ".join(reasons))

    async def _run(self, bin_name: str, image_name: str, desc: Descriptor) -> tuple[int, str]:
        """Run one verifier; (exit code, reason). Raises Unknown when it could not be started,
        was killed by a signal or ran out of time."""
        path = os.path.join(self.bin_dir, bin_name)
        args = ["-name", image_name, "-digest", desc.digest, "-stdin-media-type"]
        args.append(MEDIA_TYPE_DESCRIPTOR)
        loop = asyncio.get_running_loop()
        try:
            transport, proto = await loop.subprocess_exec(
                lambda: _VerifierProtocol(bin_name),
                path,
                *args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # a process group of its own (pgid = pid), so that a timeout kills its
                # children too and never the daemon
                start_new_session=True,
            )
        except OSError as exc:
            raise errdefs.Unknown(f"starting process: {exc.strerror or exc}") from exc
        pid = transport.get_pid()
        timed_out = False
        try:
            stdin: Any = transport.get_pipe_transport(_STDIN)
            if stdin is not None:
                stdin.write(descriptor_json(desc))
                stdin.close()
            try:
                async with asyncio.timeout(self.per_verifier_timeout):
                    await asyncio.shield(proto.done)
            except TimeoutError:
                timed_out = True
                log.warning(
                    "image verifier %s timed out after %s; killing its process group %d",
                    bin_name,
                    durations.format(self.per_verifier_timeout),
                    pid,
                )
                _kill_group(pid)
                # the group's members held the pipes; only the exit is certain
                await asyncio.shield(proto.exited)
        finally:
            if transport.get_returncode() is None:
                # cancelled: leave nothing running
                _kill_group(pid)
            transport.close()
            proto.flush_stderr()
        code = transport.get_returncode()
        if timed_out:
            if code is not None and code >= 0:
                why = f"its output was still open after it exited with status {code}"
            else:
                why = f"signal: {_signal_name(-code) if code is not None else 'killed'}"
            raise errdefs.Unknown(
                f"timed out after {durations.format(self.per_verifier_timeout)}, "
                f"process group killed: {why}"
            )
        if code is None or code < 0:
            sig = _signal_name(-code) if code is not None else "unknown"
            raise errdefs.Unknown(f"waiting on command to exit: signal: {sig}")
        return code, proto.reason()


def _kill_group(pid: int) -> None:
    """SIGKILL the process group led by the unreaped verifier ``pid`` (the verifier alone,
    should it have left its group)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _signal_name(num: int) -> str:
    try:
        return (signal.strsignal(num) or f"signal {num}").lower()
    except ValueError:
        return f"signal {num}"
