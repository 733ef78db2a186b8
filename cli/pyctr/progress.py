"""Progress display for long pyctr operations (image import).

On a terminal: one line per blob (name, status, bytes done/total, a bar), redrawn in place at
most every 100 ms, then a summary. Elsewhere (pipes, files, CI logs): one plain line per blob
when it is stored or found present, and the same summary, so that output stays readable and
diffable.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

import attrs

if TYPE_CHECKING:
    from pycontainerd.core.images.archive import BlobProgress

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float) -> str:
    """containerd's progress.Bytes: ``388.0 B``, ``1.9 MiB``."""
    i = 0
    while n >= 1024 and i < len(_UNITS) - 1:
        n /= 1024
        i += 1
    return f"{n:.1f} {_UNITS[i]}"


def human_size(n: float) -> str:
    """go-units HumanSize (decimal, 4 significant digits): ``2.039MB``."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.4g}{units[i]}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


@attrs.define
class _Line:
    name: str
    status: str
    offset: int
    total: int


def _short(name: str) -> str:
    if name.startswith("blobs/"):
        alg, _, hexpart = name[len("blobs/") :].partition("/")
        return f"{alg}:{hexpart[:12]}"
    return name if len(name) <= 40 else "..." + name[-37:]


@attrs.define(eq=False)
class ImportProgress:
    """Callable as an :data:`pycontainerd.core.images.archive.Progress`."""

    out: TextIO = attrs.field(factory=lambda: sys.stdout)
    tty: bool | None = None
    interval: float = 0.1
    _lines: dict[str, _Line] = attrs.Factory(dict)
    _drawn: int = 0
    _last: float = 0.0
    _started: float = attrs.Factory(time.monotonic)

    def __attrs_post_init__(self) -> None:
        if self.tty is None:
            self.tty = bool(getattr(self.out, "isatty", lambda: False)())

    def __call__(self, p: BlobProgress) -> None:
        line = self._lines.get(p.name)
        if line is None:
            line = self._lines[p.name] = _Line(p.name, p.status, p.offset, p.total)
        line.status, line.offset, line.total = p.status, p.offset, p.total
        if self.tty:
            now = time.monotonic()
            if p.status != "writing" or now - self._last >= self.interval:
                self._last = now
                self._draw()
        elif p.status in ("done", "exists"):
            what = "already exists" if p.status == "exists" else "stored"
            self.out.write(f"{_short(p.name)}: {what} {human_bytes(p.total)}\n")
            self.out.flush()

    def _bar(self, line: _Line, width: int = 20) -> str:
        frac = 1.0 if not line.total else min(1.0, line.offset / line.total)
        full = int(frac * width)
        return "|" + "+" * full + " " * (width - full) + "|"

    def _draw(self) -> None:
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}A")
        rows = list(self._lines.values())
        for r in rows:
            status = {"exists": "exists", "done": "done", "writing": "writing"}.get(
                r.status, r.status
            )
            self.out.write(
                f"\x1b[2K{_short(r.name):<40} {status:<8} {self._bar(r)} "
                f"{human_bytes(r.offset)}/{human_bytes(r.total)}\n"
            )
        self._drawn = len(rows)
        self.out.flush()

    def summary(self) -> str:
        elapsed = time.monotonic() - self._started
        total = sum(r.total for r in self._lines.values())
        written = sum(r.total for r in self._lines.values() if r.status == "done")
        rate = written / elapsed if elapsed > 0 else 0.0
        return (
            f"elapsed: {elapsed:.1f}s total: {human_bytes(total)} "
            f"written: {human_bytes(written)} ({human_bytes(rate)}/s) "
            f"blobs: {len(self._lines)}"
        )

    def finish(self) -> None:
        if self.tty:
            self._draw()
        self.out.write(self.summary() + "\n")
        self.out.flush()
