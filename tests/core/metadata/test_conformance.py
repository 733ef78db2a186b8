"""The namespaced views pass the same conformance suites as the backends they wrap."""

from __future__ import annotations

import os

import pytest

from pycontainerd.core import namespaces
from pycontainerd.core.content import testsuite as content_suite
from pycontainerd.core.metadata.content import ContentStore
from pycontainerd.core.metadata.db import DB
from pycontainerd.core.metadata.snapshots import Snapshotter
from pycontainerd.core.snapshots import testsuite as snapshot_suite
from pycontainerd.plugins.content.local.store import LocalStore
from pycontainerd.plugins.snapshotters.native.snapshotter import NativeSnapshotter


class _ClosingSnapshotter(Snapshotter):
    async def close(self) -> None:
        await super().close()
        await self._db.close()


async def _snapshotter(root: str) -> Snapshotter:
    db = await DB.open(os.path.join(root, "meta.db"))
    return _ClosingSnapshotter(db, "native", await NativeSnapshotter.open(root))


@pytest.mark.root
@pytest.mark.parametrize("case", snapshot_suite.CASES, ids=snapshot_suite.case_id)
async def test_metadata_snapshotter_conformance(case, tmp_path):
    with namespaces.use("conformance"):
        # backend snapshots are keyed <ns>/<n>/<key>, so leftovers are the backend's own
        await snapshot_suite.run(case, _snapshotter, str(tmp_path))


async def _content(root: str) -> ContentStore:
    db = await DB.open(os.path.join(root, "meta.db"))
    return ContentStore(db, await LocalStore.open(os.path.join(root, "backend")))


@pytest.mark.parametrize("name", content_suite.case_names())
async def test_metadata_content_store_conformance(name, tmp_path):
    with namespaces.use("conformance"):
        await content_suite.run_case(name, _content, str(tmp_path))
