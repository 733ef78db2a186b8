"""Registers the NRI adaptation, ``io.containerd.nri.v1.nri`` (containerd's config keys).

The instance is a :class:`pycontainerd.core.nri.NRI`, not yet started: the CRI plugin starts
it with its sync/update functions (``await nri.start(sync=..., update=...)``). In-process NRI
hooks are collected from the same plugin modules and entry points as registrations.
"""

from __future__ import annotations

import attrs

from pycontainerd.core.nri.config import DefaultValidatorConfig
from pycontainerd.core.plugin import InitContext, Registration, SkipPlugin, hookimpl, types


@attrs.define(kw_only=True)
class Config:
    disable: bool = False
    socket_path: str = "/var/run/nri/nri.sock"
    plugin_path: str = "/opt/nri/plugins"
    plugin_config_path: str = "/etc/nri/conf.d"
    plugin_registration_timeout: str = "5s"
    plugin_request_timeout: str = "2s"
    disable_connections: bool = False
    default_validator: DefaultValidatorConfig = attrs.Factory(DefaultValidatorConfig)


async def _init(ic: InitContext) -> object:
    from pycontainerd import __version__
    from pycontainerd.core import durations
    from pycontainerd.core.nri import NRI, hooks
    from pycontainerd.core.nri import Config as NRIConfig
    from pycontainerd.core.nri.validator import default_validator
    from pycontainerd.plugins import builtins

    cfg: Config = ic.config
    if cfg.disable:
        raise SkipPlugin("nri: disabled by configuration")
    reg = durations.parse(cfg.plugin_registration_timeout)
    req = durations.parse(cfg.plugin_request_timeout)
    nri_cfg = NRIConfig(
        socket_path=cfg.socket_path,
        plugin_path=cfg.plugin_path,
        plugin_config_path=cfg.plugin_config_path,
        registration_timeout=reg if reg > 0 else 5.0,
        request_timeout=req if req > 0 else 2.0,
        disable_connections=cfg.disable_connections,
        runtime_name="pycontainerd",
        runtime_version=__version__,
    )
    nri = NRI(nri_cfg)
    builtin = hooks.builtin_plugins(hooks.load(builtins.modules()), nri.timeouts)
    if (validator := default_validator(cfg.default_validator, nri.timeouts)) is not None:
        builtin.insert(0, validator)
    nri.builtin = builtin
    return nri


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [Registration(type=types.NRI, id="nri", init=_init, config=Config)]
