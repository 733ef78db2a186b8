"""Registers ``io.containerd.shim.v1.manager`` (starts and tracks shims) and
``io.containerd.runtime.v2.task`` (the platform runtime over them)."""

from __future__ import annotations

from typing import Any

import attrs

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types


@attrs.define(kw_only=True)
class ShimManagerConfig:
    #: extra environment for every shim (e.g. ``SCHED_CORE = "1"``)
    env: dict[str, str] = attrs.Factory(dict)


@attrs.define(kw_only=True)
class TaskConfig:
    #: platforms the runtime supports ("" = the host's)
    platforms: list[str] = attrs.Factory(list)


async def _init_shim_manager(ic: InitContext) -> Any:
    from pycontainerd.plugins.runtimes.v2.manager import ShimManager

    cfg: ShimManagerConfig = ic.config
    metadata = ic.get_single(types.METADATA)
    events = ic.get_single(types.EVENT)
    return ShimManager(
        address=ic.grpc_address,
        ttrpc_address=ic.ttrpc_address,
        events=events,
        containers=metadata.containers,
        sandboxes=metadata.sandboxes,
        env=dict(cfg.env),
    )


async def _init_task_manager(ic: InitContext) -> Any:
    from pycontainerd.core.plugin import Platform
    from pycontainerd.plugins.runtimes.v2.manager import TaskManager
    from pycontainerd.plugins.snapshotters import host_platform

    cfg: TaskConfig = ic.config
    if cfg.platforms:
        for p in cfg.platforms:
            os_, _, rest = p.partition("/")
            arch, _, variant = rest.partition("/")
            ic.meta.platforms.append(Platform(os=os_, architecture=arch, variant=variant))
    else:
        ic.meta.platforms.append(host_platform())
    shims = ic.get_single(types.SHIM)
    tm = TaskManager(root=ic.root, state=ic.state, shims=shims)
    await tm.load()
    return tm


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.SHIM,
            id="manager",
            requires=(types.EVENT, types.METADATA),
            config=ShimManagerConfig,
            init=_init_shim_manager,
        ),
        Registration(
            type=types.RUNTIME_V2,
            id="task",
            requires=(types.SHIM,),
            config=TaskConfig,
            init=_init_task_manager,
        ),
    ]
