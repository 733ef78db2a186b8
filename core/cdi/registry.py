"""The CDI registry: spec files loaded from a list of directories, devices resolved by their
fully-qualified names, and their edits injected into OCI runtime specs.

As CDI's cache: directories are scanned in order, later ones having higher priority (a device
in a later directory overrides one of the same name in an earlier one); two specs of the same
priority defining one device are both reported and the device is left out (unless a later
directory defines it); a file that fails to load is reported under its path and does not keep
the others from loading; subdirectories are not entered. Files are read in name order.

With ``auto_refresh`` (the default) every query first checks, with one ``scandir`` and a
``stat`` per spec file, whether any directory changed, and reloads if so; this stands in for
CDI's inotify watch. The registry is thread-safe; its I/O is blocking (small files), so async
callers may prefer ``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.cdi import parser
from pycontainerd.core.cdi.edits import apply_edits
from pycontainerd.core.cdi.specs import (
    ContainerEdits,
    Device,
    InvalidSpec,
    Spec,
    merge_edits,
    read_spec,
)

log = logging.getLogger(__name__)

DEFAULT_STATIC_DIR = "/etc/cdi"
DEFAULT_DYNAMIC_DIR = "/var/run/cdi"
#: Default spec directories, lowest priority first.
DEFAULT_SPEC_DIRS: tuple[str, ...] = (DEFAULT_STATIC_DIR, DEFAULT_DYNAMIC_DIR)
#: File name suffixes of spec files (CDI reads ``.json`` and ``.yaml``; ``.yml`` too here).
SPEC_EXTENSIONS: tuple[str, ...] = (".json", ".yaml", ".yml")


class UnresolvableDevices(errdefs.NotFound):
    """Some requested devices are not defined by any loaded spec. ``devices`` lists them."""

    def __init__(self, message: str, devices: Sequence[str]) -> None:
        super().__init__(message)
        self.devices: tuple[str, ...] = tuple(devices)


class InvalidDeviceNames(errdefs.InvalidArgument):
    """Some requested device names are malformed. ``devices`` lists every name that could not
    be resolved, malformed or not."""

    def __init__(self, message: str, devices: Sequence[str]) -> None:
        super().__init__(message)
        self.devices: tuple[str, ...] = tuple(devices)


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names)


_Fingerprint = tuple[tuple[str, Any], ...]


def _spec_dirs(dirs: Iterable[str | os.PathLike[str]] | None) -> tuple[str, ...]:
    """Cleaned directory paths; none given means :data:`DEFAULT_SPEC_DIRS` (as CDI)."""
    cleaned = tuple(os.path.normpath(os.fspath(d)) for d in dirs or ())
    return cleaned or DEFAULT_SPEC_DIRS


@attrs.define(eq=False)
class Registry:
    """CDI specs loaded from ``spec_dirs`` (default :data:`DEFAULT_SPEC_DIRS`).

    Nothing is read until the first query or :meth:`refresh`.
    """

    _spec_dirs: tuple[str, ...] = attrs.field(
        default=None,
        converter=_spec_dirs,
        alias="spec_dirs",
    )
    _auto_refresh: bool = attrs.field(default=True, kw_only=True, alias="auto_refresh")
    _lock: threading.RLock = attrs.field(factory=threading.RLock, init=False)
    _loaded: bool = attrs.field(default=False, init=False)
    _fingerprint: _Fingerprint | None = attrs.field(default=None, init=False)
    _specs: dict[str, list[Spec]] = attrs.field(factory=dict, init=False)
    _devices: dict[str, tuple[Spec, Device]] = attrs.field(factory=dict, init=False)
    _errors: dict[str, list[str]] = attrs.field(factory=dict, init=False)

    @property
    def spec_dirs(self) -> tuple[str, ...]:
        return self._spec_dirs

    # --- loading ---------------------------------------------------------------------------

    def refresh(self) -> dict[str, list[str]]:
        """Rescan every spec directory now. Returns :meth:`errors`."""
        with self._lock:
            self._load()
            return self._copy_errors()

    def errors(self) -> dict[str, list[str]]:
        """Problems from the last scan, by spec file path (or directory path, for a directory
        that cannot be read). Each message names the file."""
        with self._lock:
            self._ensure_fresh()
            return self._copy_errors()

    def _copy_errors(self) -> dict[str, list[str]]:
        return {path: list(msgs) for path, msgs in self._errors.items()}

    def _ensure_fresh(self) -> None:
        if not self._loaded or (
            self._auto_refresh and self._scan_fingerprint() != self._fingerprint
        ):
            self._load()

    def _scan_fingerprint(self) -> _Fingerprint:
        out: list[tuple[str, Any]] = []
        for d in self._spec_dirs:
            try:
                with os.scandir(d) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except FileNotFoundError:
                out.append((d, None))
                continue
            except OSError as exc:
                out.append((d, ("error", str(exc))))
                continue
            files: list[tuple[Any, ...]] = []
            for e in entries:
                if not e.name.endswith(SPEC_EXTENSIONS):
                    continue
                try:
                    st = e.stat()
                except OSError:
                    files.append((e.name,))
                    continue
                files.append((e.name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
            out.append((d, tuple(files)))
        return tuple(out)

    def _load(self) -> None:
        fingerprint = self._scan_fingerprint()
        specs: dict[str, list[Spec]] = {}
        devices: dict[str, tuple[Spec, Device]] = {}
        conflicts: set[str] = set()
        errors: dict[str, list[str]] = {}

        for priority, d in enumerate(self._spec_dirs):
            try:
                with os.scandir(d) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except FileNotFoundError:
                continue
            except OSError as exc:
                msg = f"failed to read CDI spec directory {d!r}: {exc.strerror or exc}"
                errors.setdefault(d, []).append(msg)
                log.warning("%s", msg)
                continue
            for entry in entries:
                if not entry.name.endswith(SPEC_EXTENSIONS):
                    continue
                try:
                    if entry.is_dir():
                        continue
                except OSError:
                    pass
                path = os.path.join(d, entry.name)
                try:
                    spec = read_spec(path, priority)
                except FileNotFoundError:
                    continue  # removed meanwhile (or a dangling link)
                except InvalidSpec as exc:
                    errors.setdefault(path, []).append(str(exc))
                    log.warning("%s", exc)
                    continue
                except Exception as exc:  # a bad file must not keep the others from loading
                    msg = f"failed to load CDI spec {path!r}: {exc!r}"
                    errors.setdefault(path, []).append(msg)
                    log.warning("%s", msg)
                    continue
                specs.setdefault(spec.vendor, []).append(spec)
                for dev in spec.devices:
                    name = dev.qualified_name
                    old = devices.get(name)
                    if old is not None and old[0].priority == priority:
                        msg = (
                            f"conflicting CDI device {name!r} defined in {old[0].path!r} and "
                            f"{spec.path!r}"
                        )
                        for p in (old[0].path, spec.path):
                            errors.setdefault(p, []).append(msg)
                        log.warning("%s", msg)
                        conflicts.add(name)
                        continue
                    devices[name] = (spec, dev)
                    conflicts.discard(name)  # a higher-priority definition settles it
        for name in conflicts:
            del devices[name]

        self._specs = specs
        self._devices = devices
        self._errors = errors
        self._fingerprint = fingerprint
        self._loaded = True
        log.debug("loaded CDI specs: %d devices, %d errors", len(devices), len(errors))

    # --- queries ---------------------------------------------------------------------------

    def list_devices(self) -> list[str]:
        """Fully-qualified names of every resolvable device, sorted."""
        with self._lock:
            self._ensure_fresh()
            return sorted(self._devices)

    def list_vendors(self) -> list[str]:
        with self._lock:
            self._ensure_fresh()
            return sorted(self._specs)

    def list_classes(self) -> list[str]:
        with self._lock:
            self._ensure_fresh()
            return sorted({s.device_class for specs in self._specs.values() for s in specs})

    def get_vendor_specs(self, vendor: str) -> list[Spec]:
        """The loaded specs of ``vendor``, in load order."""
        with self._lock:
            self._ensure_fresh()
            return list(self._specs.get(vendor, ()))

    def get_device(self, name: str) -> Device | None:
        """The device with the fully-qualified ``name``, or None."""
        with self._lock:
            self._ensure_fresh()
            found = self._devices.get(name)
            return None if found is None else found[1]

    def get_device_spec(self, name: str) -> Spec | None:
        """The spec that defines the device with the fully-qualified ``name``, or None."""
        with self._lock:
            self._ensure_fresh()
            found = self._devices.get(name)
            return None if found is None else found[0]

    # --- injection -------------------------------------------------------------------------

    def resolve(self, devices: Sequence[str]) -> ContainerEdits:
        """The edits for ``devices``: for each device, in order, its spec's edits (the first
        time a device of that spec comes) and then its own.

        Raises :class:`InvalidDeviceNames` (``InvalidArgument``) when any name is malformed,
        else :class:`UnresolvableDevices` (``NotFound``) when any is unknown; either lists
        every name that cannot be resolved.
        """
        with self._lock:
            self._ensure_fresh()
            unresolved: list[str] = []
            malformed: list[str] = []
            parts: list[ContainerEdits] = []
            seen_specs: set[int] = set()
            for name in devices:
                found = self._devices.get(name)
                if found is None:
                    unresolved.append(name)
                    if not parser.is_qualified_name(name):
                        malformed.append(name)
                    continue
                spec, dev = found
                if id(spec) not in seen_specs:
                    seen_specs.add(id(spec))
                    parts.append(spec.container_edits)
                parts.append(dev.container_edits)
        if malformed:
            reasons = []
            for name in malformed:
                try:
                    parser.parse_qualified_name(name)
                except parser.InvalidDeviceName as exc:
                    reasons.append(str(exc))
            raise InvalidDeviceNames(
                f"unresolvable CDI devices {_quoted(unresolved)}: {'; '.join(reasons)}",
                unresolved,
            )
        if unresolved:
            raise UnresolvableDevices(f"unresolvable CDI devices {_quoted(unresolved)}", unresolved)
        return merge_edits(parts)

    def inject(self, spec: dict[str, Any], devices: Sequence[str]) -> None:
        """Apply the edits of ``devices`` (fully-qualified names) to the OCI runtime spec
        ``spec`` in place. Nothing is changed when any name fails to resolve (see
        :meth:`resolve`) or a device node cannot be read from the host
        (:class:`~pycontainerd.core.cdi.edits.DeviceNodeError`, ``FailedPrecondition``)."""
        if not devices:
            return
        edits = self.resolve(devices)
        apply_edits(spec, edits)
        log.debug("injected CDI devices %s", ", ".join(devices))


_default: Registry | None = None
_default_lock = threading.Lock()


def default_registry() -> Registry:
    """The process-wide registry (default directories, auto refresh), made on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Registry()
        return _default


def configure(
    spec_dirs: Sequence[str | os.PathLike[str]] | None = None, *, auto_refresh: bool = True
) -> Registry:
    """Replace the process-wide registry with one reading ``spec_dirs``; return it."""
    global _default
    registry = Registry(spec_dirs, auto_refresh=auto_refresh)
    with _default_lock:
        _default = registry
    return registry


def inject(
    spec: dict[str, Any], devices: Sequence[str], *, registry: Registry | None = None
) -> None:
    """Inject CDI ``devices`` into the OCI runtime spec ``spec`` with ``registry`` (default:
    the process-wide one). See :meth:`Registry.inject`."""
    (registry or default_registry()).inject(spec, devices)
