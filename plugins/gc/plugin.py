"""Registration of ``io.containerd.gc.v1.scheduler``."""

from __future__ import annotations

from typing import Any

import attrs

from pycontainerd.core import durations
from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types


@attrs.define(kw_only=True)
class Config:
    #: fraction of time garbage collection may pause the metadata store (0 .. 0.5)
    pause_threshold: float = 0.02
    #: deletions that trigger a collection right away (0: any deletion, when none is scheduled)
    deletion_threshold: int = 0
    #: mutations that trigger a collection (0: never by mutations)
    mutation_threshold: int = 100
    #: delay between a trigger and the collection (Go duration)
    schedule_delay: str = attrs.field(default="0ms", validator=durations.validate)
    #: delay before the first collection after start (Go duration)
    startup_delay: str = attrs.field(default="100ms", validator=durations.validate)


async def _init(ic: InitContext) -> Any:
    from pycontainerd.plugins.gc.scheduler import Scheduler

    config: Config = ic.config
    md = ic.get_single(types.METADATA)
    scheduler = Scheduler(
        md,
        pause_threshold=config.pause_threshold,
        deletion_threshold=config.deletion_threshold,
        mutation_threshold=config.mutation_threshold,
        schedule_delay=durations.parse(config.schedule_delay),
        startup_delay=durations.parse(config.startup_delay),
    )
    ic.meta.exports.update(
        {
            "PauseThreshold": str(scheduler.pause_threshold),
            "DeletionThreshold": str(scheduler.deletion_threshold),
            "MutationThreshold": str(scheduler.mutation_threshold),
            "ScheduleDelay": durations.format(scheduler.schedule_delay),
        }
    )
    ic.spawn(scheduler.run(), "gc-scheduler")
    return scheduler


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.GC, id="scheduler", requires=(types.METADATA,), config=Config, init=_init
        )
    ]
