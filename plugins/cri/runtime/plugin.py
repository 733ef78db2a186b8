"""Registration of ``io.containerd.cri.v1.runtime``: the CRI runtime configuration (runtime
handlers, CNI, security switches) from ``[plugins."io.containerd.cri.v1.runtime"]``; exports
``CRIVersion`` and the host platform."""

from __future__ import annotations

import os
from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types
from pycontainerd.plugins.cri.config import RuntimeConfig
from pycontainerd.plugins.cri.config_migration import migrate_cri


async def _init(ic: InitContext) -> Any:
    from pycontainerd.core import platforms
    from pycontainerd.plugins.cri import constants
    from pycontainerd.plugins.cri.runtime.runtime import CRIRuntime, load_base_specs, validate

    ic.meta.platforms = [platforms.default_spec()]
    ic.meta.exports["CRIVersion"] = constants.CRI_VERSION
    config: RuntimeConfig = ic.config
    warnings = validate(config)
    if warnings:
        ws = ic.get_single(types.WARNING)
        for w in warnings:
            id_, _, message = w.partition(": ")
            ws.emit(id_, message)
    root = os.path.dirname(ic.properties[types.PROPERTY_ROOT_DIR])
    state = os.path.dirname(ic.properties[types.PROPERTY_STATE_DIR])
    return CRIRuntime(
        config=config,
        root_dir=os.path.join(root, constants.CRI_DIR_NAME),
        state_dir=os.path.join(state, constants.CRI_DIR_NAME),
        containerd_root_dir=root,
        containerd_endpoint=ic.grpc_address,
        base_oci_specs=load_base_specs(config),
    )


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.CRI,
            id="runtime",
            requires=(types.WARNING,),
            config=RuntimeConfig,
            config_migration=migrate_cri,
            init=_init,
        )
    ]
