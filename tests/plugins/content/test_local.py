from __future__ import annotations

import pytest

from pycontainerd.core.content import testsuite
from pycontainerd.plugins.content.local.store import LocalStore, MemoryLabelStore

_label_stores: dict[str, MemoryLabelStore] = {}


async def _labeled_store(root: str) -> LocalStore:
    # one label store per root, so a "restarted" store sees the same labels
    return await LocalStore.open(root, _label_stores.setdefault(root, MemoryLabelStore()))


async def _plain_store(root: str) -> LocalStore:
    return await LocalStore.open(root)


@pytest.mark.parametrize("case", testsuite.case_names())
async def test_local_store_conformance(case: str, tmp_path) -> None:
    try:
        await testsuite.run_case(case, _labeled_store, str(tmp_path / "content"))
    except testsuite.SkipCase as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize(
    "case", [c for c in testsuite.case_names() if c != "commit_labels_and_update"]
)
async def test_local_store_without_label_store_conformance(case: str, tmp_path) -> None:
    try:
        await testsuite.run_case(
            case, _plain_store, str(tmp_path / "content"), testsuite.Options(labels=False)
        )
    except testsuite.SkipCase as exc:
        pytest.skip(str(exc))
