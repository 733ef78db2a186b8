"""The registration of ``io.containerd.monitor.container.v1.restart``: type, ID, requires and
config as containerd's, and an init that finds the local services and spawns the loop."""

from __future__ import annotations

import asyncio

import pytest

from pycontainerd.core.config.codec import ConfigError, decode_plugin_config
from pycontainerd.core.config.migrations import migrate_restart_monitor
from pycontainerd.core.plugin import InitContext, Meta, Plugin, Registration, types
from pycontainerd.core.plugin.context import PluginSet
from pycontainerd.plugins import builtins
from pycontainerd.plugins.restart import plugin
from pycontainerd.plugins.restart.monitor import Monitor


def test_registration_matches_containerd():
    [reg] = plugin.pycontainerd_registrations()
    assert reg.uri == "io.containerd.monitor.container.v1.restart"
    assert reg.requires == (types.EVENT, types.SERVICE)
    assert reg.config is plugin.Config
    assert reg.config_migration is migrate_restart_monitor


def test_is_a_builtin_after_the_tasks_service():
    mods = builtins.modules()
    assert "pycontainerd.plugins.restart.plugin" in mods
    assert mods.index("pycontainerd.plugins.restart.plugin") > mods.index(
        "pycontainerd.plugins.services.tasks.plugin"
    )


def test_default_interval_is_ten_seconds():
    [reg] = plugin.pycontainerd_registrations()
    cfg, warnings = decode_plugin_config(plugin.Config, {}, reg.uri)
    assert (cfg.interval, warnings) == ("10s", [])
    cfg, _ = decode_plugin_config(plugin.Config, {"interval": "300ms"}, reg.uri)
    assert cfg.interval == "300ms"


@pytest.mark.parametrize("bad", ["soon", "10", "1x", ""])
def test_an_interval_that_is_not_a_go_duration_is_a_config_error(bad):
    [reg] = plugin.pycontainerd_registrations()
    with pytest.raises(ConfigError, match="interval"):
        decode_plugin_config(plugin.Config, {"interval": bad}, reg.uri)


def test_v2_configs_are_migrated_from_the_internal_plugin_section():
    tables = {"io.containerd.internal.v1.restart": {"interval": "5s"}}
    migrate_restart_monitor(2, tables)
    assert tables == {"io.containerd.monitor.container.v1.restart": {"interval": "5s"}}


class _Namespaces:
    def __init__(self) -> None:
        self.listed = asyncio.Event()

    async def list(self):
        self.listed.set()
        return []


async def _noop(ic):  # pragma: no cover
    return None


def _service(id_, instance):
    return Plugin(
        registration=Registration(type=types.SERVICE, id=id_, init=_noop),
        config=None,
        meta=Meta(),
        instance=instance,
    )


async def test_init_takes_the_local_services_and_spawns_the_loop():
    ns = _Namespaces()
    containers, tasks = object(), object()
    ps = PluginSet()
    ps.add(_service("containers-service", containers))
    ps.add(_service("tasks-service", tasks))
    ps.add(_service("namespaces-service", ns))
    [reg] = plugin.pycontainerd_registrations()
    spawned: list[asyncio.Task] = []

    def spawn(coro, name):
        t = asyncio.get_running_loop().create_task(coro, name=name)
        spawned.append(t)
        return t

    ic = InitContext(
        registration=reg,
        config=plugin.Config(interval="1.5s"),
        properties={},
        plugins=ps,
        spawn=spawn,
    )
    m = await reg.init(ic)
    try:
        assert isinstance(m, Monitor)
        assert (m.containers, m.tasks, m.namespaces, m.interval) == (containers, tasks, ns, 1.5)
        assert ic.meta.capabilities == ["no", "always", "on-failure", "unless-stopped"]
        assert len(spawned) == 1
        await asyncio.wait_for(ns.listed.wait(), 5)
    finally:
        for t in spawned:
            t.cancel()
        results = await asyncio.gather(*spawned, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
