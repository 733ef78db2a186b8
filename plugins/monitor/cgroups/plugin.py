"""Registration of ``io.containerd.monitor.task.v1.cgroups``: every running task's cgroup
stats as Prometheus metrics (``container_*``) on the metrics server's ``/v1/metrics``."""

from __future__ import annotations

from typing import Any

import attrs

from pycontainerd.core.config.migrations import migrate_cgroups_monitor
from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types

#: The runtime v2 plugin whose tasks are measured (``io.containerd.runtime.v2.task``).
RUNTIME_ID = "task"


@attrs.define(kw_only=True)
class Config:
    #: do not expose the tasks' metrics on the metrics server
    no_prometheus: bool = False


async def _init(ic: InitContext) -> Any:
    from pycontainerd.plugins.monitor.cgroups.collector import TaskMonitor
    from pycontainerd.plugins.snapshotters import host_platform

    config: Config = ic.config
    ic.meta.platforms.append(host_platform())
    return TaskMonitor(
        runtime=ic.get_by_id(types.RUNTIME_V2, RUNTIME_ID), prometheus=not config.no_prometheus
    )


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.MONITOR_TASK,
            id="cgroups",
            requires=(types.RUNTIME_V2,),
            config=Config,
            init=_init,
            config_migration=migrate_cgroups_monitor,
        )
    ]
