"""In-process stores for image tests: local content, native and overlayfs snapshotters, the
metadata facade over them, in namespace ``default``."""

from __future__ import annotations

import os

import pytest

from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.metadata.metadata import Metadata
from pycontainerd.plugins.content.local.store import LocalStore
from pycontainerd.plugins.snapshotters.native.snapshotter import NativeSnapshotter


async def open_metadata(tmp_path, *, overlay: bool = True) -> Metadata:
    content = await LocalStore.open(str(tmp_path / "content"))
    sns = {"native": await NativeSnapshotter.open(str(tmp_path / "native"))}
    if overlay and os.geteuid() == 0:
        from pycontainerd.plugins.snapshotters.overlayfs.snapshotter import (
            OverlaySnapshotter,
            check_supported,
        )

        try:
            check_supported(str(tmp_path / "overlayfs"))
            sns["overlayfs"] = await OverlaySnapshotter.open(str(tmp_path / "overlayfs"))
        except errdefs.ContainerdError:
            pass
    return await Metadata.open(
        str(tmp_path / "meta" / "meta.db"), content=content, snapshotters=sns
    )


@pytest.fixture
async def md(tmp_path):
    m = await open_metadata(tmp_path)
    with namespaces.use("default"):
        yield m
    for sn in m.snapshotters.values():
        await sn.backend.close()
    await m.close()


@pytest.fixture
def metadata_factory():
    """``await metadata_factory(path)``: another metadata instance over fresh backends."""
    return open_metadata
