"""Registration and config of ``io.containerd.image-verifier.v1.bindir``, and the transfer
service getting (or not getting) it through its InitContext."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from pycontainerd.core import config
from pycontainerd.core.config.codec import ConfigError, decode_plugin_config
from pycontainerd.core.plugin import InitContext, Status, loader, types
from pycontainerd.core.plugin.context import PluginSet
from pycontainerd.core.server.server import Server, Settings
from pycontainerd.plugins import builtins
from pycontainerd.plugins.imageverifier import plugin
from pycontainerd.plugins.imageverifier.bindir import BinDirVerifier

URI = "io.containerd.image-verifier.v1.bindir"
MODULES = [
    "pycontainerd.plugins.warning.plugin",
    "pycontainerd.plugins.events.plugin",
    "pycontainerd.plugins.content.local.plugin",
    "pycontainerd.plugins.snapshotters.native.plugin",
    "pycontainerd.plugins.metadata.plugin",
    "pycontainerd.plugins.gc.plugin",
    "pycontainerd.plugins.leases.plugin",
    "pycontainerd.plugins.diff.walking.plugin",
    "pycontainerd.plugins.imageverifier.plugin",
    "pycontainerd.plugins.transfer.plugin",
]


def test_registration_and_default_config_match_containerd():
    [reg] = plugin.pycontainerd_registrations()
    assert reg.uri == URI
    assert reg.requires == ()
    cfg, warnings = decode_plugin_config(plugin.Config, {}, reg.uri)
    assert warnings == []
    assert (cfg.bin_dir, cfg.max_verifiers, cfg.per_verifier_timeout) == (
        "/opt/containerd/image-verifier/bin",
        10,
        "10s",
    )


def test_builtin_and_registered_before_the_transfer_service():
    mods = builtins.modules()
    me = mods.index("pycontainerd.plugins.imageverifier.plugin")
    assert mods[me + 1] == "pycontainerd.plugins.transfer.plugin"


@pytest.mark.parametrize("bad", ["ten seconds", "10", ""])
def test_bad_per_verifier_timeout_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="per_verifier_timeout"):
        decode_plugin_config(plugin.Config, {"per_verifier_timeout": bad}, URI)


def test_wrong_types_are_config_errors():
    with pytest.raises(ConfigError, match="max_verifiers"):
        decode_plugin_config(plugin.Config, {"max_verifiers": "many"}, URI)


async def test_init_builds_the_verifier_from_the_config(tmp_path):
    [reg] = plugin.pycontainerd_registrations()
    cfg, _ = decode_plugin_config(
        plugin.Config,
        {"bin_dir": str(tmp_path), "max_verifiers": -1, "per_verifier_timeout": "1m30s"},
        URI,
    )
    ic = InitContext(registration=reg, config=cfg, properties={}, plugins=PluginSet())
    v = await reg.init(ic)
    assert isinstance(v, BinDirVerifier)
    assert (v.bin_dir, v.max_verifiers, v.per_verifier_timeout) == (str(tmp_path), -1, 90.0)


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    servers: list[Server] = []

    async def start_(disabled: list[str], configs: dict[str, Any]) -> Server:
        base = tmp_path / f"d{len(servers)}"
        registry = loader.discover(MODULES, autoload=False)
        server = Server(
            settings=Settings(
                root=str(base / "root"),
                state=str(base / "state"),
                disabled_plugins=disabled,
                plugin_configs=configs,
            ),
            registry=registry,
            decode=config.decode_plugin_config,
        )
        servers.append(server)
        await server.start()
        return server

    yield start_
    for s in servers:
        assert await s.stop(1) == []


def _transfer(server: Server) -> Any:
    p = server.plugins.get("io.containerd.transfer.v1.local")
    assert p is not None and p.status is Status.OK, p and p.error_text()
    return p.instance


async def test_the_transfer_service_gets_the_verifier_through_its_init_context(start, tmp_path):
    server = await start([], {URI: {"bin_dir": str(tmp_path / "bin")}})
    verifiers = _transfer(server).config.verifiers
    assert list(verifiers) == ["bindir"]
    assert verifiers["bindir"] is server.plugins.get(URI).instance
    assert verifiers["bindir"].bin_dir == str(tmp_path / "bin")


async def test_the_transfer_service_starts_without_verifiers_when_bindir_is_disabled(start):
    server = await start([URI], {})
    assert server.plugins.get(URI) is None
    assert dict(_transfer(server).config.verifiers) == {}


def test_the_transfer_service_requires_image_verifiers():
    from pycontainerd.plugins.transfer import plugin as transfer_plugin

    [reg] = transfer_plugin.pycontainerd_registrations()
    assert types.IMAGE_VERIFIER in reg.requires
