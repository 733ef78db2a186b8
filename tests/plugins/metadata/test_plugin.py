from __future__ import annotations

import os

import pytest

from pycontainerd.core import namespaces
from pycontainerd.core.config.codec import ConfigError, decode_plugin_config
from pycontainerd.core.content import digests
from pycontainerd.core.events.exchange import Exchange
from pycontainerd.core.metadata.metadata import Metadata
from pycontainerd.core.plugin import InitContext, Meta, Plugin, Registration, types
from pycontainerd.core.plugin.context import PluginSet
from pycontainerd.plugins.content.local.store import LocalStore
from pycontainerd.plugins.metadata import plugin
from pycontainerd.plugins.snapshotters.native.snapshotter import NativeSnapshotter


async def _noop(ic):  # pragma: no cover - registrations for pre-initialised instances
    return None


def _done(type_: str, id_: str, instance) -> Plugin:
    reg = Registration(type=type_, id=id_, init=_noop)
    return Plugin(registration=reg, config=None, meta=Meta(), instance=instance)


async def _plugins(tmp_path, with_events=True) -> PluginSet:
    ps = PluginSet()
    if with_events:
        ps.add(_done(types.EVENT, "exchange", Exchange()))
    ps.add(_done(types.CONTENT, "content", await LocalStore.open(str(tmp_path / "content"))))
    ps.add(_done(types.SNAPSHOTTER, "native", await NativeSnapshotter.open(str(tmp_path / "n"))))
    return ps


def _ic(tmp_path, plugins, config=None) -> InitContext:
    [reg] = plugin.pycontainerd_registrations()
    return InitContext(
        registration=reg,
        config=config or plugin.Config(),
        properties={types.PROPERTY_ROOT_DIR: str(tmp_path / "root")},
        plugins=plugins,
    )


def test_registration_matches_containerd():
    [reg] = plugin.pycontainerd_registrations()
    assert reg.uri == "io.containerd.metadata.v1.bolt"
    assert set(reg.requires) == {types.CONTENT, types.EVENT, types.SNAPSHOTTER}
    reg.validate()


def test_config_defaults_and_policy_validation():
    cfg, _ = decode_plugin_config(plugin.Config, {}, "io.containerd.metadata.v1.bolt")
    assert (cfg.content_sharing_policy, cfg.no_sync) == ("shared", False)
    cfg, _ = decode_plugin_config(
        plugin.Config, {"content_sharing_policy": "isolated", "no_sync": True}, "x.y"
    )
    assert (cfg.content_sharing_policy, cfg.no_sync) == ("isolated", True)
    with pytest.raises(ConfigError, match="content_sharing_policy must be shared or isolated"):
        decode_plugin_config(plugin.Config, {"content_sharing_policy": "open"}, "x.y")


async def test_init_opens_meta_db_under_root_and_wraps_backends(tmp_path):
    md = await plugin._init(_ic(tmp_path, await _plugins(tmp_path)))
    try:
        assert isinstance(md, Metadata)
        assert os.path.exists(tmp_path / "root" / "meta.db")
        assert set(md.snapshotters) == {"native"}
        assert md.content_store is not None and md.content_store.shared
    finally:
        await md.close()


async def test_init_without_event_exchange_still_works(tmp_path):
    md = await plugin._init(_ic(tmp_path, await _plugins(tmp_path, with_events=False)))
    try:
        assert md.db.publisher is None
    finally:
        await md.close()


async def test_isolated_policy_hides_blobs_another_namespace_wrote(tmp_path):
    cfg = plugin.Config(content_sharing_policy="isolated")
    md = await plugin._init(_ic(tmp_path, await _plugins(tmp_path), cfg))
    data = b"secret layer"
    dgst = digests.from_bytes(data)
    try:
        with namespaces.use("a"):
            w = await md.content_store.writer("r", total=len(data), expected=dgst)
            await w.write(data)
            await w.commit(len(data), dgst)
        with namespaces.use("b"):
            w = await md.content_store.writer("r", total=len(data), expected=dgst)
            # isolated: "b" must send the bytes itself; nothing is pre-filled
            assert w.status().offset == 0
            await w.close()
    finally:
        await md.close()
