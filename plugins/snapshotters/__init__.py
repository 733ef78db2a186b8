"""Snapshotter plugins: ``native`` (copies, works anywhere) and ``overlayfs`` (kernel overlay
mounts)."""

from __future__ import annotations

from pycontainerd.core.plugin import Platform


def host_platform() -> Platform:
    """The platform snapshots made on this host hold (reported in the plugin's meta)."""
    from pycontainerd.core import platforms

    return platforms.default_spec()
