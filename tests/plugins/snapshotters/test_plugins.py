from __future__ import annotations

import pytest

from pycontainerd.core.plugin import InitContext, SkipPlugin, types
from pycontainerd.core.plugin.context import PluginSet
from pycontainerd.core.snapshots import Snapshotter
from pycontainerd.plugins.snapshotters.native import plugin as native_plugin
from pycontainerd.plugins.snapshotters.overlayfs import plugin as overlay_plugin
from pycontainerd.plugins.snapshotters.overlayfs import snapshotter as overlay_impl


def _ctx(reg, config, root) -> InitContext:
    return InitContext(
        registration=reg,
        config=config,
        properties={types.PROPERTY_ROOT_DIR: str(root), types.PROPERTY_STATE_DIR: str(root)},
        plugins=PluginSet(),
    )


def test_registrations_use_containerd_type_and_ids() -> None:
    (native,) = native_plugin.pycontainerd_registrations()
    (overlay,) = overlay_plugin.pycontainerd_registrations()
    assert native.uri == "io.containerd.snapshotter.v1.native"
    assert overlay.uri == "io.containerd.snapshotter.v1.overlayfs"
    assert overlay_plugin.Config().mount_options == [] and not overlay_plugin.Config().sync_remove


async def test_native_init_uses_root_path_and_exports_it(tmp_path) -> None:
    (reg,) = native_plugin.pycontainerd_registrations()
    ic = _ctx(reg, native_plugin.Config(root_path=str(tmp_path / "custom")), tmp_path / "plugin")
    sn = await reg.init(ic)
    try:
        assert isinstance(sn, Snapshotter)
        assert ic.meta.exports["root"] == str(tmp_path / "custom")
        assert (tmp_path / "custom" / "metadata.db").exists()
        assert not (tmp_path / "plugin").exists()
        assert ic.meta.platforms and ic.meta.platforms[0].os == "linux"
    finally:
        await sn.close()


@pytest.mark.root
async def test_overlayfs_init_exports_root(tmp_path) -> None:
    (reg,) = overlay_plugin.pycontainerd_registrations()
    ic = _ctx(reg, overlay_plugin.Config(), tmp_path)
    sn = await reg.init(ic)
    try:
        assert ic.meta.exports["root"] == str(tmp_path)
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith("overlayfs-check")] == []
    finally:
        await sn.close()


async def test_overlayfs_is_skipped_with_the_root_named_when_the_test_mount_fails(
    tmp_path, monkeypatch
) -> None:
    from pycontainerd.core import errdefs

    def refuse(m, target):
        raise errdefs.NotImplemented_("failed to mount: no such device")

    monkeypatch.setattr(overlay_impl.linux, "mount_at", refuse)
    (reg,) = overlay_plugin.pycontainerd_registrations()
    with pytest.raises(SkipPlugin, match=str(tmp_path)):
        await reg.init(_ctx(reg, overlay_plugin.Config(), tmp_path))
    assert list(tmp_path.iterdir()) == []
