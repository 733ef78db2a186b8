"""Registration of ``io.containerd.monitor.container.v1.restart``: the restart monitor, which
keeps containers labelled ``containerd.io/restart.status`` in that status."""

from __future__ import annotations

from typing import Any

import attrs

from pycontainerd.core import durations
from pycontainerd.core.config.migrations import migrate_restart_monitor
from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types

#: The local services the monitor works through (``io.containerd.service.v1.<id>``).
CONTAINERS_SERVICE = "containers-service"
TASKS_SERVICE = "tasks-service"
NAMESPACES_SERVICE = "namespaces-service"


@attrs.define(kw_only=True)
class Config:
    #: how long to wait between two reconciliations (Go duration; 0 means the default 10s)
    interval: str = attrs.field(default="10s", validator=durations.validate)


async def _init(ic: InitContext) -> Any:
    from pycontainerd.core.runtime import restart
    from pycontainerd.plugins.restart.monitor import Monitor

    config: Config = ic.config
    ic.meta.capabilities = list(restart.POLICIES)
    monitor = Monitor(
        containers=ic.get_by_id(types.SERVICE, CONTAINERS_SERVICE),
        tasks=ic.get_by_id(types.SERVICE, TASKS_SERVICE),
        namespaces=ic.get_by_id(types.SERVICE, NAMESPACES_SERVICE),
        interval=durations.parse(config.interval),
    )
    ic.spawn(monitor.run(), "restart-monitor")
    return monitor


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.MONITOR_CONTAINER,
            id="restart",
            requires=(types.EVENT, types.SERVICE),
            config=Config,
            init=_init,
            config_migration=migrate_restart_monitor,
        )
    ]
