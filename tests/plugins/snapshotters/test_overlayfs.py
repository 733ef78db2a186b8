from __future__ import annotations

import pytest

from pycontainerd.core.snapshots import Snapshotter, testsuite
from pycontainerd.plugins.snapshotters.overlayfs.snapshotter import (
    OverlaySnapshotter,
    check_supported,
)


async def _factory(root: str) -> Snapshotter:
    return await OverlaySnapshotter.open(root)


async def _sync_factory(root: str) -> Snapshotter:
    return await OverlaySnapshotter.open(root, sync_remove=True, upperdir_label=True)


@pytest.fixture
def overlay_root(tmp_path):
    try:
        check_supported(str(tmp_path / "check"))
    except Exception as e:  # the kernel has no overlayfs, or this filesystem cannot be upper
        pytest.skip(f"overlayfs not usable under {tmp_path}: {e}")
    return tmp_path


@pytest.mark.root
@pytest.mark.parametrize("case", testsuite.CASES, ids=testsuite.case_id)
async def test_overlayfs_conformance(case: testsuite.Case, overlay_root) -> None:
    await testsuite.run(case, _factory, str(overlay_root))


@pytest.mark.root
@pytest.mark.parametrize("case", testsuite.CASES, ids=testsuite.case_id)
async def test_overlayfs_conformance_with_sync_remove_and_upperdir_label(
    case: testsuite.Case, overlay_root
) -> None:
    await testsuite.run(case, _sync_factory, str(overlay_root))


@pytest.mark.root
async def test_overlayfs_mount_shapes_follow_the_parent_chain(overlay_root) -> None:
    sn = await OverlaySnapshotter.open(str(overlay_root / "sn"), mount_options=["volatile"])
    try:
        lone = await sn.prepare("lone")
        assert [(m.type, m.options) for m in lone] == [("bind", ("rw", "rbind"))]
        await sn.commit("l1", "lone")
        one = await sn.view("v1", "l1")
        assert [(m.type, m.options) for m in one] == [("bind", ("ro", "rbind"))]
        active = await sn.prepare("a", "l1")
        assert [m.type for m in active] == ["overlay"]
        opts = active[0].options
        assert any(o.startswith("upperdir=") for o in opts)
        assert any(o.startswith("workdir=") for o in opts)
        assert "volatile" in opts
        await sn.commit("l2", "a")
        two = await sn.view("v2", "l2")
        (m,) = two
        assert m.type == "overlay" and m.readonly
        lower = next(o for o in m.options if o.startswith("lowerdir="))
        dirs = lower.split("=", 1)[1].split(":")
        assert len(dirs) == 2
        assert all(d.startswith(sn.snapshots_dir + "/") and d.endswith("/fs") for d in dirs)
    finally:
        await sn.close()


@pytest.mark.root
async def test_overlayfs_child_usage_excludes_the_parent(overlay_root) -> None:
    sn = await OverlaySnapshotter.open(str(overlay_root / "sn"))
    try:
        await testsuite._committed(sn, "base", "", {"big": b"x" * (1 << 20)})
        await sn.prepare("child", "base")
        assert (await sn.usage("child")).size < 1 << 20
    finally:
        await sn.close()


@pytest.mark.root
async def test_overlayfs_upperdir_label_names_the_upper_directory(overlay_root) -> None:
    sn = await OverlaySnapshotter.open(str(overlay_root / "sn"), upperdir_label=True)
    try:
        await sn.prepare("a", labels={"x": "y"})
        info = await sn.stat("a")
        upper = info.labels["containerd.io/snapshot/overlay.upperdir"]
        assert upper.startswith(str(overlay_root / "sn" / "snapshots")) and upper.endswith("/fs")
        assert info.labels["x"] == "y"
    finally:
        await sn.close()


@pytest.mark.root
async def test_overlayfs_without_sync_remove_keeps_the_directory_until_cleanup(
    overlay_root,
) -> None:
    root = overlay_root / "sn"
    sn = await OverlaySnapshotter.open(str(root))
    try:
        await sn.prepare("a")
        await sn.remove("a")
        assert len(list((root / "snapshots").iterdir())) == 1
        await sn.cleanup()
        assert list((root / "snapshots").iterdir()) == []
    finally:
        await sn.close()
