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
