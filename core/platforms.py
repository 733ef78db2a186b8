"""OCI platforms: parsing, normalising, formatting and matching, as containerd's platforms
package does it.

Specifiers look like ``os/arch[/variant]`` (``linux/arm64/v8``, ``linux/arm/v7``); a single
component is an OS (the host architecture is assumed) or an architecture (the host OS is
assumed). Architecture names are Go's (``amd64``, ``arm64``, ``arm`` + variant, ``386``);
common aliases (``x86_64``, ``aarch64``, ``armhf``, ``i386``) are normalised.

Matching: a :class:`MatchComparer` says whether a platform is acceptable (``match``) and which
of two is preferred (``less``). :func:`only` accepts what the given platform can run, best
first (``linux/arm64`` also runs ``linux/arm/v8``..``v5``; ``linux/amd64`` also ``386``);
:func:`default` is :func:`only` for this host; :data:`ALL` accepts everything.
"""

from __future__ import annotations

import functools
import os
import platform as _platform
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

from pycontainerd.core import errdefs
from pycontainerd.core.plugin.context import Platform

__all__ = [
    "ALL",
    "MatchComparer",
    "Matcher",
    "Platform",
    "any_of",
    "default",
    "default_spec",
    "format",
    "normalize",
    "only",
    "only_strict",
    "ordered",
    "parse",
    "parse_all",
    "select",
]

_SPECIFIER_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_OS_RE = re.compile(r"^([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.%-]*)\))?$")

_KNOWN_OS = frozenset(
    "aix android darwin dragonfly freebsd hurd illumos ios js linux nacl netbsd openbsd "
    "plan9 solaris windows zos".split()
)
_KNOWN_ARCH = frozenset(
    "386 amd64 amd64p32 arm armbe arm64 arm64be ppc64 ppc64le loong64 mips mipsle mips64 "
    "mips64le mips64p32 mips64p32le ppc riscv riscv64 s390 s390x sparc sparc64 wasm".split()
)

#: uname machine -> (Go architecture, variant)
_MACHINE_ARCH = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "i386": ("386", ""),
    "i486": ("386", ""),
    "i586": ("386", ""),
    "i686": ("386", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv8l": ("arm", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "ppc64le": ("ppc64le", ""),
    "ppc64": ("ppc64", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
    "loongarch64": ("loong64", ""),
    "mips64": ("mips64", ""),
}

# arm64 variant -> the variants it can also run, best first (v9.x implies v8.(x+5)).
_ARM64_MINORS = {f"v8.{i}": [(8, i)] for i in range(1, 10)}
_ARM64_MINORS.update({"v8": [(8, 0)], "v8.0": [(8, 0)]})
_ARM64_MINORS.update({"v9": [(9, 0), (8, 5)], "v9.0": [(9, 0), (8, 5)]})
_ARM64_MINORS.update({f"v9.{i}": [(9, i), (8, min(i + 5, 9))] for i in range(1, 8)})


def _host_os() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "darwin"
    if sys.platform.startswith("win"):
        return "windows"
    return sys.platform.rstrip("0123456789")


def _normalize_os(os_: str) -> str:
    if not os_:
        return _host_os()
    os_ = os_.lower()
    return "darwin" if os_ == "macos" else os_


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        return "arm64", variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
        return "arm", variant
    return arch, variant


def normalize(p: Platform) -> Platform:
    """The canonical form used for comparison: lowercase, Go names, default variants made
    explicit for arm (``v7``) and implicit for arm64 (``v8`` -> ``""``)."""
    arch, variant = _normalize_arch(p.architecture, p.variant)
    return Platform(
        os=_normalize_os(p.os), architecture=arch, variant=variant, os_version=p.os_version
    )


def _arm_variant_from_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip().lower() == "cpu architecture":
                    v = value.strip()
                    if v.startswith("7"):
                        return "v7"
                    if v.startswith("8"):
                        return "v8"
                    if v in ("6", "5", "4", "3"):
                        return "v" + v
                    return ""
    except OSError:
        pass
    return ""


@functools.cache
def default_spec() -> Platform:
    """This host's platform (``linux/amd64``, ``linux/arm64/v8``, ``linux/arm/v7`` ...).
    Computed once, on first use."""
    machine = _platform.machine().lower()
    arch, variant = _MACHINE_ARCH.get(machine, (machine, ""))
    if arch == "arm" and os.path.exists("/proc/cpuinfo"):
        variant = _arm_variant_from_cpuinfo() or variant
    return Platform(os=_host_os(), architecture=arch, variant=variant)


def parse(specifier: str) -> Platform:
    """Parse ``os[(osversion)]/arch[/variant]``, ``os`` or ``arch``; InvalidArgument when it
    cannot be."""
    if not isinstance(specifier, str) or not specifier:
        raise errdefs.InvalidArgument('invalid platform "": empty specifier')
    if "*" in specifier:
        raise errdefs.InvalidArgument(f"invalid platform {specifier!r}: wildcards not supported")
    parts = specifier.split("/")
    if len(parts) > 3:
        raise errdefs.InvalidArgument(f"invalid platform {specifier!r}: want os/arch[/variant]")
    m = _OS_RE.match(parts[0])
    if m is None:
        raise errdefs.InvalidArgument(
            f"invalid platform {specifier!r}: bad os component {parts[0]!r}"
        )
    for part in parts[1:]:
        if not _SPECIFIER_RE.match(part):
            raise errdefs.InvalidArgument(f"invalid platform {specifier!r}: bad component {part!r}")
    os_ = _normalize_os(m[1])
    os_version = m[2] or ""
    if "%" in os_version:
        from urllib.parse import unquote

        os_version = unquote(os_version)
    if len(parts) == 1:
        if os_ in _KNOWN_OS:
            host = default_spec()
            variant = host.variant if host.architecture == "arm" and host.variant != "v7" else ""
            return Platform(
                os=os_, architecture=host.architecture, variant=variant, os_version=os_version
            )
        arch, variant = _normalize_arch(parts[0], "")
        if arch == "arm" and variant == "v7":
            variant = ""
        if arch in _KNOWN_ARCH:
            return Platform(os=_host_os(), architecture=arch, variant=variant)
        raise errdefs.InvalidArgument(
            f"invalid platform {specifier!r}: unknown operating system or architecture"
        )
    if len(parts) == 2:
        arch, variant = _normalize_arch(parts[1], "")
        if arch == "arm" and variant == "v7":
            variant = ""
        return Platform(os=os_, architecture=arch, variant=variant, os_version=os_version)
    arch, variant = _normalize_arch(parts[1], parts[2])
    if arch == "arm64" and not variant:
        variant = "v8"
    return Platform(os=os_, architecture=arch, variant=variant, os_version=os_version)


def parse_all(specifiers: Iterable[str]) -> list[Platform]:
    return [parse(s) for s in specifiers]


def format(p: Platform) -> str:  # noqa: A001 - the name containerd uses
    """``os/arch[/variant]`` (``unknown`` when the OS is empty)."""
    if not p.os:
        return "unknown"
    return "/".join(x for x in (p.os, p.architecture, p.variant) if x)


class Matcher(Protocol):
    def match(self, p: Platform) -> bool: ...


class MatchComparer(Matcher, Protocol):
    def less(self, a: Platform, b: Platform) -> bool:
        """True when ``a`` is preferred over ``b``."""
        ...


def _exact(want: Platform, p: Platform) -> bool:
    n = normalize(p)
    return want.os == n.os and want.architecture == n.architecture and want.variant == n.variant


class _Ordered:
    """Accepts any of the platforms; earlier ones are preferred."""

    def __init__(self, platforms: Sequence[Platform]) -> None:
        self._platforms = [normalize(p) for p in platforms]

    def rank(self, p: Platform) -> int | None:
        for i, want in enumerate(self._platforms):
            if _exact(want, p):
                return i
        return None

    def match(self, p: Platform) -> bool:
        return self.rank(p) is not None

    def less(self, a: Platform, b: Platform) -> bool:
        ra, rb = self.rank(a), self.rank(b)
        if ra is None:
            return False
        return rb is None or ra < rb

    def __repr__(self) -> str:
        return f"ordered({', '.join(format(p) for p in self._platforms)})"


class _Any:
    """Accepts any of the platforms, with no preference among them."""

    def __init__(self, platforms: Sequence[Platform]) -> None:
        self._platforms = [normalize(p) for p in platforms]

    def match(self, p: Platform) -> bool:
        return any(_exact(want, p) for want in self._platforms)

    def less(self, a: Platform, b: Platform) -> bool:
        return self.match(a) and not self.match(b)


class _All:
    def match(self, p: Platform) -> bool:
        return True

    def less(self, a: Platform, b: Platform) -> bool:
        return False

    def __repr__(self) -> str:
        return "ALL"


#: Accepts every platform.
ALL: MatchComparer = _All()


def _vector(p: Platform) -> list[Platform]:
    """``p`` and what a machine of platform ``p`` can also run, best first."""

    def with_(arch: str, variant: str) -> Platform:
        return Platform(os=p.os, architecture=arch, variant=variant, os_version=p.os_version)

    out = [p]
    if p.architecture == "amd64":
        level = p.variant[1:] if p.variant.startswith("v") else ""
        if level.isdigit():
            out += [with_("amd64", f"v{n}") for n in range(int(level) - 1, 0, -1)]
        out.append(with_("386", ""))
    elif p.architecture == "arm":
        level = p.variant[1:] if p.variant.startswith("v") else ""
        if level.isdigit():
            out += [with_("arm", f"v{n}") for n in range(int(level) - 1, 4, -1)]
    elif p.architecture == "arm64":
        variant = p.variant or "v8"
        versions = _ARM64_MINORS.get(variant)
        if versions is None:
            return out
        out = []
        for major, top in versions:
            for minor in range(top, -1, -1):
                out.append(with_("arm64", f"v{major}" if minor == 0 else f"v{major}.{minor}"))
        out += _vector(with_("arm", "v8"))
    return out


def only(p: Platform) -> MatchComparer:
    """What a host of platform ``p`` runs, best first (``linux/arm64`` accepts
    ``linux/arm64/v8`` then ``linux/arm/v8``..``v5``)."""
    return _Ordered(_vector(normalize(p)))


def only_strict(p: Platform) -> MatchComparer:
    """Exactly ``p`` (after normalisation), nothing it could also run."""
    return _Ordered([p])


def ordered(*platforms: Platform) -> MatchComparer:
    """Any of ``platforms``, earlier preferred."""
    return _Ordered(platforms)


def any_of(*platforms: Platform) -> MatchComparer:
    """Any of ``platforms``, no preference."""
    return _Any(platforms)


def default() -> MatchComparer:
    """:func:`only` for this host."""
    return only(default_spec())


T = TypeVar("T")


def select(comparer: MatchComparer, platforms: Iterable[tuple[T, Platform | None]]) -> list[T]:
    """The items whose platform matches, best first, original order among equals. Items
    without a platform match only :data:`ALL`."""
    matched: list[tuple[T, Platform | None]] = []
    for item, p in platforms:
        if p is None:
            if comparer is ALL:
                matched.append((item, p))
        elif comparer.match(p):
            matched.append((item, p))
    # Insertion sort keeps it stable with a less() that is only a strict weak order.
    ordered_items: list[tuple[T, Platform | None]] = []
    for entry in matched:
        i = len(ordered_items)
        while i > 0:
            prev = ordered_items[i - 1][1]
            if entry[1] is not None and prev is not None and comparer.less(entry[1], prev):
                i -= 1
            else:
                break
        ordered_items.insert(i, entry)
    return [item for item, _ in ordered_items]
