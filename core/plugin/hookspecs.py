"""The hook every plugin module implements (built-in or shipped by a third party)."""

from __future__ import annotations

import pluggy

from pycontainerd.core.plugin.registration import Registration

PROJECT = "pycontainerd"
#: Entry-point group third parties use: ``[project.entry-points."pycontainerd.plugins"]``.
ENTRY_POINT_GROUP = "pycontainerd.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def pycontainerd_registrations() -> list[Registration]:  # type: ignore[empty-body]
    """Return the plugin registrations this module provides.

    Called once at start-up. Must not do I/O or import heavy modules: the registration's
    ``init`` is where a plugin does its work.
    """
