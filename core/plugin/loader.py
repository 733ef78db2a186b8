"""Discovery: built-in plugin modules and third-party entry points, through one pluggy hook.

Built-ins are registered exactly like third-party plugins (first the built-in module list,
then the ``pycontainerd.plugins`` entry-point group), so the built-ins prove the extension
path. pluggy discovers; it does not order: we call each plugin's hook in registration order
and leave ordering to :mod:`pycontainerd.core.plugin.graph`.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

import pluggy

from pycontainerd.core.plugin import hookspecs
from pycontainerd.core.plugin.registration import Registration, RegistrationError
from pycontainerd.core.plugin.registry import Registry

log = logging.getLogger(__name__)

#: Set to a non-empty value other than "0"/"false" to skip third-party entry points.
DISABLE_AUTOLOAD_ENV = "PYCONTAINERD_DISABLE_PLUGIN_AUTOLOAD"
#: Comma-separated extra modules to load as plugin modules (used by tests and operators).
EXTRA_MODULES_ENV = "PYCONTAINERD_PLUGIN_MODULES"


def autoload_disabled_by_env() -> bool:
    v = os.environ.get(DISABLE_AUTOLOAD_ENV, "")
    return v.lower() not in ("", "0", "false", "no")


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as e:  # a broken plugin module names itself
        raise RegistrationError(f"cannot import plugin module {name}: {e}") from e


def discover(
    builtin_modules: Sequence[str],
    *,
    autoload: bool = True,
    extra_modules: Iterable[str] = (),
) -> Registry:
    """Collect every registration; raise RegistrationError on any invalid or duplicate one."""
    pm = new_manager()
    sources: dict[int, str] = {}

    def add(plugin: Any, name: str, source: str) -> None:
        if pm.is_registered(plugin) or pm.get_plugin(name) is not None:
            return  # the same module or entry point seen twice: load once
        pm.register(plugin, name=name)
        sources[id(plugin)] = source

    for mod in builtin_modules:
        add(_import(mod), mod, "builtin")
    env_extra = [m for m in os.environ.get(EXTRA_MODULES_ENV, "").split(",") if m.strip()]
    for mod in [*extra_modules, *env_extra]:
        add(_import(mod.strip()), mod.strip(), f"module {mod.strip()}")
    if autoload and not autoload_disabled_by_env():
        for plugin, source, name in _entry_points():
            add(plugin, name, source)

    registry = Registry()
    for impl in pm.hook.pycontainerd_registrations.get_hookimpls():
        source = sources.get(id(impl.plugin), impl.plugin_name)
        try:
            result: Any = impl.function()
            regs: list[Any] = list(result or [])
        except Exception as e:
            raise RegistrationError(f"plugin module {impl.plugin_name} ({source}): {e}") from e
        for reg in regs:
            if not isinstance(reg, Registration):
                raise RegistrationError(
                    f"plugin module {impl.plugin_name} ({source}) returned {type(reg).__name__}, "
                    "not a Registration"
                )
            if reg.source == "builtin" and source != "builtin":
                reg = _with_source(reg, source)
            registry.register(reg)
    return registry


def _with_source(reg: Registration, source: str) -> Registration:
    import attrs

    return attrs.evolve(reg, source=source)


def _may_have_entry_points(group: str) -> bool:
    """False only when no distribution on ``sys.path`` can declare an entry point in
    ``group``: no ``*.dist-info``/``*.egg-info`` there has an ``entry_points.txt`` with a
    ``[group]`` section, and no meta path finder other than the standard one finds
    distributions. Then ``importlib.metadata`` (~70 ms to import and scan) is not needed."""
    if any(
        getattr(f, "find_distributions", None) is not None
        and f is not importlib.machinery.PathFinder
        for f in sys.meta_path
    ):
        return True
    needle = f"[{group}]"
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except NotADirectoryError:
            return True  # a zip or other archive: let importlib.metadata look inside
        except OSError:
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(entry or ".", name, "entry_points.txt")) as f:
                    if needle in f.read():
                        return True
            except OSError:
                continue
    return False


def _entry_points() -> list[tuple[Any, str, str]]:
    """(loaded object, "distribution version", unique name) for each entry point, once."""
    if not _may_have_entry_points(hookspecs.ENTRY_POINT_GROUP):
        return []
    from importlib.metadata import entry_points

    out: list[tuple[Any, str, str]] = []
    seen: set[tuple[str, str]] = set()
    for ep in entry_points(group=hookspecs.ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
        key = (dist.name if dist is not None else "", ep.value)
        if key in seen:
            continue
        seen.add(key)
        try:
            obj = ep.load()
        except Exception as e:
            raise RegistrationError(
                f"cannot load plugin entry point {ep.name!r} = {ep.value!r} from {dist_name}: {e}"
            ) from e
        out.append((obj, f"entry point {ep.name} ({dist_name})", f"ep:{ep.value}"))
    return out
