"""The built-in plugin modules, loaded through the same pluggy hook as third-party ones.

Order here is registration order, which breaks ties in the init graph. A module listed here
must import nothing heavy at import time.
"""

from __future__ import annotations

MODULES = [
    "pycontainerd.plugins.warning.plugin",
    "pycontainerd.plugins.events.plugin",
    "pycontainerd.plugins.content.local.plugin",
    "pycontainerd.plugins.snapshotters.native.plugin",
    "pycontainerd.plugins.snapshotters.overlayfs.plugin",
    "pycontainerd.plugins.metadata.plugin",
    "pycontainerd.plugins.gc.plugin",
    "pycontainerd.plugins.leases.plugin",
    "pycontainerd.plugins.diff.walking.plugin",
    "pycontainerd.plugins.imageverifier.plugin",
    "pycontainerd.plugins.transfer.plugin",
    "pycontainerd.plugins.streaming.plugin",
    "pycontainerd.plugins.services.content.plugin",
    "pycontainerd.plugins.services.snapshots.plugin",
    "pycontainerd.plugins.services.diff.plugin",
    "pycontainerd.plugins.services.namespaces.plugin",
    "pycontainerd.plugins.services.images.plugin",
    "pycontainerd.plugins.services.containers.plugin",
    "pycontainerd.plugins.services.leases.plugin",
    "pycontainerd.plugins.services.sandboxes.plugin",
    "pycontainerd.plugins.services.introspection.plugin",
    "pycontainerd.plugins.services.events.plugin",
    "pycontainerd.plugins.services.transfer.plugin",
    "pycontainerd.plugins.services.streaming.plugin",
    "pycontainerd.plugins.runtimes.v2.plugin",
    "pycontainerd.plugins.monitor.cgroups.plugin",
    "pycontainerd.plugins.services.tasks.plugin",
    "pycontainerd.plugins.restart.plugin",
    "pycontainerd.plugins.services.version.plugin",
    "pycontainerd.plugins.services.healthcheck.plugin",
    "pycontainerd.plugins.nri.plugin",
    "pycontainerd.plugins.cri.runtime.plugin",
    "pycontainerd.plugins.cri.images.plugin",
    "pycontainerd.plugins.cri.podsandbox.plugin",
    "pycontainerd.plugins.cri.plugin",
    "pycontainerd.plugins.server.plugin",
]


def modules() -> list[str]:
    """The built-in plugin modules, in registration order."""
    return list(MODULES)
