"""CDI devices of CRI containers, as containerd's ``WithCDI`` applies them: the names in
``ContainerConfig.CDI_devices`` then those in ``cdi.k8s.io/`` container annotations (each once),
resolved against the spec files in ``cdi_spec_dirs`` and injected into the OCI spec. NRI
plugins' CDI device adjustments go through the same registry (:func:`injector`).

Spec files are re-read when they change (the registry checks before each use), so devices
appear without a restart. The registry reads files: call from a thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pycontainerd.core import errdefs

if TYPE_CHECKING:
    from pycontainerd.core.cdi import Registry

log = logging.getLogger(__name__)

#: The annotation prefix of CDI devices (``pycontainerd.core.cdi.ANNOTATION_PREFIX``), here so
#: that containers without CDI devices do not load the CDI code.
_ANNOTATION_PREFIX = "cdi.k8s.io/"

_registries: dict[tuple[str, ...], Registry] = {}


def registry(spec_dirs: Sequence[str]) -> Registry:
    """The registry of ``spec_dirs`` (one per set of directories, kept for the process)."""
    from pycontainerd.core import cdi

    key = tuple(spec_dirs)
    reg = _registries.get(key)
    if reg is None:
        reg = _registries[key] = cdi.Registry(list(key))
    return reg


def requested(config: Any) -> list[str]:
    """The CDI device names a CRI ``ContainerConfig`` asks for, in order, each once."""
    names: list[str] = []
    for d in config.CDI_devices:
        if d.name not in names:
            names.append(d.name)
    if not any(k.startswith(_ANNOTATION_PREFIX) for k in config.annotations):
        return names
    from pycontainerd.core import cdi

    try:
        from_annotations = cdi.devices_from_annotations(dict(config.annotations))
    except errdefs.InvalidArgument as e:
        raise errdefs.InvalidArgument(f"failed to parse CDI device annotations: {e}") from None
    for name in from_annotations:
        if name not in names:
            names.append(name)
    return names


def inject(
    spec: dict[str, Any], devices: Sequence[str], *, enabled: bool, spec_dirs: Sequence[str]
) -> None:
    """Inject ``devices`` into ``spec``; an error names what could not be resolved and leaves
    the spec as it was."""
    if not devices:
        return
    if not enabled:
        raise errdefs.FailedPrecondition(
            f"CDI devices ({', '.join(devices)}) requested but CDI support is explicitly disabled"
        )
    reg = registry(spec_dirs)
    for path, errors in reg.errors().items():
        for err in errors:
            log.warning("cdi: spec %s: %s", path, err)
    try:
        reg.inject(spec, list(devices))
    except errdefs.ContainerdError as e:
        raise errdefs.from_code(e.code, f"CDI device injection failed: {e}") from None


def injector(
    *, enabled: bool, spec_dirs: Sequence[str]
) -> Callable[[dict[str, Any], list[str]], None]:
    """``inject`` bound to the CRI configuration (for NRI adjustments)."""

    def run(spec: dict[str, Any], devices: list[str]) -> None:
        inject(spec, devices, enabled=enabled, spec_dirs=spec_dirs)

    return run
