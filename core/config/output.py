"""Effective configuration as TOML: ``config default``, ``config dump``, ``config migrate``."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import tomli_w

from pycontainerd.core.config.codec import decode_plugin_config, encode_plugin_config
from pycontainerd.core.config.loader import LoadedConfig, migrate
from pycontainerd.core.config.model import CURRENT_VERSION, DEFAULT_TIMEOUTS, Config

if TYPE_CHECKING:
    from pycontainerd.core.plugin.registration import Registration

_LEGACY_TABLES = ("grpc", "ttrpc", "metrics")
_LEGACY_DEBUG_KEYS = ("address", "uid", "gid")


def dump(loaded: LoadedConfig, registrations: Iterable[Registration]) -> dict[str, Any]:
    """The effective configuration after imports and migrations, as TOML-ready tables.

    Every registration with a config class gets its section decoded and re-encoded, so that
    defaults are filled in; sections of plugins that are not registered are kept as they are.
    Missing timeouts get their defaults. Legacy server tables are left out when empty.
    """
    regs = list(registrations)
    migrate(loaded, regs)
    out = encode_plugin_config(loaded.config)
    out["version"] = CURRENT_VERSION
    plugins: dict[str, Any] = copy.deepcopy(loaded.config.plugins)
    for reg in regs:
        if reg.config is None:
            continue
        obj, _ = decode_plugin_config(reg.config, plugins.get(reg.uri), reg.uri)
        plugins[reg.uri] = encode_plugin_config(obj)
    out["plugins"] = dict(sorted(plugins.items()))
    timeouts = dict(DEFAULT_TIMEOUTS)
    timeouts.update(loaded.config.timeouts)
    out["timeouts"] = dict(sorted(timeouts.items()))
    empty = encode_plugin_config(Config())
    for name in _LEGACY_TABLES:
        if out.get(name) == empty[name]:
            del out[name]
    debug = out.get("debug", {})
    for key in _LEGACY_DEBUG_KEYS:
        if debug.get(key) == empty["debug"][key]:
            debug.pop(key, None)
    return out


def default_config(registrations: Iterable[Registration]) -> dict[str, Any]:
    """The configuration in effect with no file: what ``config default`` prints."""
    return dump(LoadedConfig.defaults(), registrations)


def to_toml(tables: dict[str, Any]) -> str:
    """TOML text for ``tables`` (plain data as returned by :func:`dump`)."""
    return tomli_w.dumps(tables)
