"""The CRI log file (containerd's ``internal/cri/io/logger.go``).

Every line a container writes becomes one record::

    <RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>\\n

``F`` marks a full line, ``P`` a partial one: a line longer than ``max_container_log_line_size``
is cut into parts of that size, every part but the last tagged ``P``; output that ends without
a newline is flushed as ``P`` when the stream ends. A trailing ``\\r\\n`` ends a line like
``\\n``. ``max_line < 0`` (containerd's -1) means no limit.
"""

from __future__ import annotations

import datetime
import logging
import os

import attrs

log = logging.getLogger(__name__)

STDOUT = "stdout"
STDERR = "stderr"
TAG_FULL = b"F"
TAG_PARTIAL = b"P"


def timestamp(now: datetime.datetime | None = None) -> str:
    """Go's ``time.RFC3339Nano`` in local time: trailing zeros of the fraction dropped,
    ``Z`` for UTC, else ``+hh:mm``."""
    now = now or datetime.datetime.now().astimezone()
    if now.tzinfo is None:
        now = now.astimezone()
    base = now.strftime("%Y-%m-%dT%H:%M:%S")
    ns = now.microsecond * 1000 + getattr(now, "nanosecond", 0)
    frac = f"{ns:09d}".rstrip("0")
    if frac:
        base += "." + frac
    offset = now.utcoffset() or datetime.timedelta(0)
    if offset == datetime.timedelta(0):
        return base + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{base}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@attrs.define(eq=False)
class LogFile:
    """The container's log file, opened for append (created 0640, its directory too);
    :meth:`reopen` opens the path again after a rotation."""

    path: str
    _fd: int = -1

    def open(self) -> LogFile:
        d = os.path.dirname(self.path)
        if d:
            os.makedirs(d, mode=0o755, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        return self

    def write(self, data: bytes) -> None:
        if self._fd < 0:
            return
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as e:
            log.error("failed to write to log file %s: %s", self.path, e)

    def reopen(self) -> None:
        old = self._fd
        self.open()
        if old >= 0:
            os.close(old)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def closed(self) -> bool:
        return self._fd < 0


@attrs.define(eq=False)
class LineWriter:
    """Turns one stream's bytes into CRI log records written to ``sink``."""

    stream: str
    sink: LogFile
    max_line: int = 16384
    _buf: bytearray = attrs.Factory(bytearray)

    def _record(self, tag: bytes, content: bytes) -> None:
        head = f"{timestamp()} {self.stream} ".encode()
        self.sink.write(head + tag + b" " + content + b"\n")

    def _split_long(self) -> None:
        if self.max_line > 0:
            while len(self._buf) > self.max_line:
                self._record(TAG_PARTIAL, bytes(self._buf[: self.max_line]))
                del self._buf[: self.max_line]

    def feed(self, data: bytes) -> None:
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                self._buf += data[start:]
                self._split_long()
                return
            self._buf += data[start:nl]
            if self._buf.endswith(b"\r"):
                del self._buf[-1]
            self._split_long()
            self._record(TAG_FULL, bytes(self._buf))
            self._buf.clear()
            start = nl + 1

    def close(self) -> None:
        """The stream ended: what is left (no newline) becomes a partial record."""
        if self._buf:
            self._record(TAG_PARTIAL, bytes(self._buf))
            self._buf.clear()
