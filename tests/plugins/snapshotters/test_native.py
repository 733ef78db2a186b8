from __future__ import annotations

import os

import pytest

from pycontainerd.core.snapshots import Snapshotter, testsuite
from pycontainerd.plugins.snapshotters.native.snapshotter import NativeSnapshotter


async def _factory(root: str) -> Snapshotter:
    return await NativeSnapshotter.open(root)


@pytest.mark.root
@pytest.mark.parametrize("case", testsuite.CASES, ids=testsuite.case_id)
async def test_native_conformance(case: testsuite.Case, tmp_path) -> None:
    await testsuite.run(case, _factory, str(tmp_path))


def test_native_satisfies_the_snapshotter_protocol(tmp_path) -> None:
    assert issubclass(NativeSnapshotter, Snapshotter)


@pytest.mark.root
async def test_native_views_of_a_parent_bind_the_parent_without_copying(tmp_path) -> None:
    sn = await NativeSnapshotter.open(str(tmp_path))
    try:
        await sn.prepare("a")
        await sn.commit("base", "a")
        dirs_before = set(os.listdir(tmp_path / "snapshots"))
        mounts = await sn.view("v", "base")
        assert [m.type for m in mounts] == ["bind"]
        assert "ro" in mounts[0].options
        assert set(os.listdir(tmp_path / "snapshots")) == dirs_before
    finally:
        await sn.close()
