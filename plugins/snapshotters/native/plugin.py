"""Registration of ``io.containerd.snapshotter.v1.native``."""

from __future__ import annotations

from typing import Any

import attrs

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types
from pycontainerd.plugins.snapshotters import host_platform


@attrs.define(kw_only=True)
class Config:
    #: where snapshots live; "" = the plugin's root directory
    root_path: str = ""


async def _init(ic: InitContext) -> Any:
    from pycontainerd.plugins.snapshotters.native.snapshotter import NativeSnapshotter

    config: Config = ic.config
    root = config.root_path or ic.properties[types.PROPERTY_ROOT_DIR]
    ic.meta.platforms.append(host_platform())
    ic.meta.exports["root"] = root
    return await NativeSnapshotter.open(root)


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [Registration(type=types.SNAPSHOTTER, id="native", config=Config, init=_init)]
