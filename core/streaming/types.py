"""Value types and contracts of the streaming server.

The CRI plugin implements :class:`Runtime`. The server hands it async byte streams:
:class:`InputStream` for what the client sends (stdin, a forwarded connection's inbound
bytes), :class:`OutputStream` for what goes back (stdout, stderr), :class:`DuplexStream` for a
forwarded port, and a :class:`ResizeQueue` of :class:`TerminalSize` for a tty.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from pycontainerd.core import errdefs

# -- requests (what the token stands for) -----------------------------------------------------


def _bool(obj: Any, name: str) -> bool:
    return bool(getattr(obj, name, False))


@attrs.frozen(kw_only=True)
class ExecRequest:
    container_id: str
    cmd: tuple[str, ...] = attrs.field(converter=tuple)
    tty: bool = False
    stdin: bool = False
    stdout: bool = False
    stderr: bool = False

    @classmethod
    def from_request(cls, req: Any) -> ExecRequest:
        """From anything shaped like CRI's ``runtime.v1.ExecRequest`` (the proto included)."""
        return cls(
            container_id=str(getattr(req, "container_id", "")),
            cmd=tuple(getattr(req, "cmd", ())),
            tty=_bool(req, "tty"),
            stdin=_bool(req, "stdin"),
            stdout=_bool(req, "stdout"),
            stderr=_bool(req, "stderr"),
        )

    def validate(self) -> None:
        _validate_stdio(self.container_id, self.tty, self.stdin, self.stdout, self.stderr)


@attrs.frozen(kw_only=True)
class AttachRequest:
    container_id: str
    tty: bool = False
    stdin: bool = False
    stdout: bool = False
    stderr: bool = False

    @classmethod
    def from_request(cls, req: Any) -> AttachRequest:
        """From anything shaped like CRI's ``runtime.v1.AttachRequest``."""
        return cls(
            container_id=str(getattr(req, "container_id", "")),
            tty=_bool(req, "tty"),
            stdin=_bool(req, "stdin"),
            stdout=_bool(req, "stdout"),
            stderr=_bool(req, "stderr"),
        )

    def validate(self) -> None:
        _validate_stdio(self.container_id, self.tty, self.stdin, self.stdout, self.stderr)


@attrs.frozen(kw_only=True)
class PortForwardRequest:
    pod_sandbox_id: str
    ports: tuple[int, ...] = attrs.field(default=(), converter=lambda v: tuple(int(p) for p in v))

    @classmethod
    def from_request(cls, req: Any) -> PortForwardRequest:
        """From anything shaped like CRI's ``runtime.v1.PortForwardRequest`` (``port`` list)."""
        ports: Any = getattr(req, "port", None)
        if ports is None:
            ports = getattr(req, "ports", ())
        return cls(
            pod_sandbox_id=str(getattr(req, "pod_sandbox_id", "")),
            ports=ports,
        )

    def validate(self) -> None:
        if not self.pod_sandbox_id:
            raise errdefs.InvalidArgument("missing required pod_sandbox_id")
        for p in self.ports:
            if not 0 < p < 65536:
                raise errdefs.InvalidArgument(f"invalid port {p}")


def _validate_stdio(container_id: str, tty: bool, stdin: bool, stdout: bool, stderr: bool) -> None:
    if not container_id:
        raise errdefs.InvalidArgument("missing required container_id")
    if tty and stderr:
        # a terminal has one output stream; stderr cannot be told apart
        raise errdefs.InvalidArgument("tty and stderr cannot both be true")
    if not (stdin or stdout or stderr):
        raise errdefs.InvalidArgument("one of stdin, stdout, or stderr must be set")


# -- streams the runtime sees -----------------------------------------------------------------


@runtime_checkable
class InputStream(Protocol):
    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (whatever is available if ``n < 0``); ``b""`` at end of input."""
        ...


@runtime_checkable
class OutputStream(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None:
        """No more output on this stream (half-close where the protocol can say so)."""
        ...


@runtime_checkable
class DuplexStream(InputStream, OutputStream, Protocol):
    """A forwarded connection: read what the client sends, write what the port answers."""


@attrs.frozen
class TerminalSize:
    width: int
    height: int

    @classmethod
    def from_json(cls, obj: Any) -> TerminalSize:
        """Kubernetes' ``{"Width": w, "Height": h}`` (names matched case-insensitively)."""
        if not isinstance(obj, dict):
            raise errdefs.InvalidArgument("terminal size must be a JSON object")
        low = {str(k).lower(): v for k, v in obj.items()}
        try:
            w, h = int(low.get("width", 0)), int(low.get("height", 0))
        except (TypeError, ValueError) as exc:
            raise errdefs.InvalidArgument(f"invalid terminal size {obj!r}") from exc
        if not (0 <= w < 65536 and 0 <= h < 65536):
            raise errdefs.InvalidArgument(f"invalid terminal size {obj!r}")
        return cls(w, h)

    def to_json(self) -> bytes:
        return json.dumps({"Width": self.width, "Height": self.height}).encode()


class ResizeQueue:
    """Terminal sizes in the order the client sent them; iteration ends when the client stops.

    ``async for size in queue: ...`` or ``await queue.get()`` (None at the end).
    """

    def __init__(self) -> None:
        self._q: asyncio.Queue[TerminalSize | None] = asyncio.Queue()
        self._closed = False

    def put(self, size: TerminalSize) -> None:
        if not self._closed:
            self._q.put_nowait(size)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._q.put_nowait(None)

    async def get(self) -> TerminalSize | None:
        item = await self._q.get()
        if item is None:
            self._q.put_nowait(None)  # stay at the end for every later caller
        return item

    def __aiter__(self) -> AsyncIterator[TerminalSize]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[TerminalSize]:
        while (item := await self.get()) is not None:
            yield item


# -- the runtime ------------------------------------------------------------------------------


class Runtime(Protocol):
    """What the CRI plugin gives the streaming server.

    Streams not requested are None. ``resize`` is None unless ``tty``. ``exec`` returns the
    command's exit code (non-zero is reported to the client as ``NonZeroExitCode``); any
    exception is reported as an internal error. The server closes the output streams after the
    call returns; the runtime may close them earlier.
    """

    async def exec(
        self,
        container_id: str,
        cmd: Sequence[str],
        stdin: InputStream | None,
        stdout: OutputStream | None,
        stderr: OutputStream | None,
        tty: bool,
        resize: ResizeQueue | None,
    ) -> int: ...

    async def attach(
        self,
        container_id: str,
        stdin: InputStream | None,
        stdout: OutputStream | None,
        stderr: OutputStream | None,
        tty: bool,
        resize: ResizeQueue | None,
    ) -> None: ...

    async def port_forward(self, pod_sandbox_id: str, port: int, stream: DuplexStream) -> None:
        """Copy between ``stream`` and ``port`` in the sandbox's network namespace until both
        directions end. An exception is written to the client's error stream."""
        ...
