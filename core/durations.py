"""Go duration strings (``"100ms"``, ``"1h30m"``, ``"-1.5s"``), as containerd's config uses them."""

from __future__ import annotations

import re
from typing import Any

from pycontainerd.core import errdefs

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse(text: str) -> float:
    """Seconds in a Go duration string. ``"0"`` alone needs no unit. InvalidArgument if bad."""
    s = text.strip()
    if not s:
        raise errdefs.InvalidArgument(f"invalid duration {text!r}")
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise errdefs.InvalidArgument(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos == 0:
        raise errdefs.InvalidArgument(f"invalid duration {text!r}")
    return sign * total


def format(seconds: float) -> str:  # noqa: A001 - mirrors Go's Duration.String
    """A Go-style duration string for ``seconds`` (``1.5`` -> ``"1.5s"``, ``0`` -> ``"0s"``)."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    ns = round(abs(seconds) * 1e9)
    if ns < 1000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_trim(ns / 1e3)}\u00b5s"
    if ns < 1_000_000_000:
        return f"{sign}{_trim(ns / 1e6)}ms"
    hours, rem = divmod(ns, 3600 * 10**9)
    minutes, rem = divmod(rem, 60 * 10**9)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + f"{_trim(rem / 1e9)}s"


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def validate(_inst: object, attr: Any, value: str) -> None:
    """An attrs validator for a config field holding a Go duration: ValueError naming the
    field (the config decoder reports it with the plugin's table)."""
    try:
        parse(value)
    except errdefs.InvalidArgument as exc:
        raise ValueError(f"{attr.name}: {exc}") from None
