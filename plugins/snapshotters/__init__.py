"""Snapshotter plugins: ``native`` (copies, works anywhere) and ``overlayfs`` (kernel overlay
mounts)."""

from __future__ import annotations

from pycontainerd.core.plugin import Platform


def host_platform() -> Platform:
    """The platform snapshots made on this host hold (reported in the plugin's meta)."""
    import platform

    machine = platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)
    return Platform(os="linux", architecture=arch)
