"""Loading in-process NRI hooks through the same pluggy discovery as plugin registrations:
the built-in plugin modules, extra modules (``PYCONTAINERD_PLUGIN_MODULES``), and the
``pycontainerd.plugins`` entry points unless autoload is off."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import pluggy

from pycontainerd.core.nri import api
from pycontainerd.core.nri import hookspecs as nri_hookspecs
from pycontainerd.core.nri.plugin import BuiltinPlugin, Timeouts
from pycontainerd.core.plugin import hookspecs, loader

log = logging.getLogger(__name__)


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.add_hookspecs(nri_hookspecs)
    return pm


def load(
    builtin_modules: Sequence[str] = (),
    *,
    autoload: bool = True,
    extra: Iterable[Any] = (),
) -> pluggy.PluginManager:
    """A plugin manager holding every module that may implement NRI hooks. ``extra`` are
    module objects or names registered as well (tests, embedders)."""
    pm = new_manager()

    def add(plugin: Any, name: str) -> None:
        if pm.is_registered(plugin) or pm.get_plugin(name) is not None:
            return
        pm.register(plugin, name=name)

    for mod in builtin_modules:
        add(loader._import(mod), mod)
    env_extra = [m.strip() for m in os.environ.get(loader.EXTRA_MODULES_ENV, "").split(",")]
    for mod in [m for m in env_extra if m]:
        add(loader._import(mod), mod)
    for obj in extra:
        if isinstance(obj, str):
            add(loader._import(obj), obj)
        else:
            add(obj, getattr(obj, "__name__", None) or repr(obj))
    if autoload and not loader.autoload_disabled_by_env():
        for plugin, _source, name in loader._entry_points():
            add(plugin, name)
    return pm


def builtin_plugins(
    pm: pluggy.PluginManager, timeouts: Timeouts | None = None
) -> list[BuiltinPlugin]:
    """One :class:`BuiltinPlugin` per registered object implementing any NRI hook."""
    by_plugin: dict[int, BuiltinPlugin] = {}
    for hook_name, method in nri_hookspecs.HOOKS.items():
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            bp = by_plugin.get(id(impl.plugin))
            if bp is None:
                obj = impl.plugin
                index = str(getattr(obj, "NRI_PLUGIN_INDEX", "00"))
                api.check_plugin_index(index)
                base = str(
                    getattr(obj, "NRI_PLUGIN_NAME", "")
                    or impl.plugin_name.rsplit(".", 1)[-1].rsplit(":", 1)[-1]
                )
                bp = BuiltinPlugin(
                    kind="builtin", index=index, base=base, timeouts=timeouts or Timeouts()
                )
                by_plugin[id(impl.plugin)] = bp
            bp.handlers[method] = impl.function
    return list(by_plugin.values())
