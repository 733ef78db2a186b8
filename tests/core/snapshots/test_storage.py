from __future__ import annotations

import sqlite3

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.snapshots import Info, Kind, Usage
from pycontainerd.core.snapshots.storage import MetaStore


@pytest.fixture
def store(tmp_path):
    ms = MetaStore.open(str(tmp_path / "metadata.db"))
    yield ms
    ms.close()


def _commit(ms: MetaStore, name: str, parent: str = "") -> str:
    with ms.transaction(writable=True) as tx:
        tx.create_snapshot(Kind.ACTIVE, f"{name}-key", parent)
        return tx.commit_active(f"{name}-key", name, Usage(inodes=1, size=10))


def test_create_gives_increasing_ids_and_the_parent_chain_nearest_first(store) -> None:
    a = _commit(store, "a")
    b = _commit(store, "b", "a")
    with store.transaction(writable=True) as tx:
        s = tx.create_snapshot(Kind.ACTIVE, "c", "b", {"x": "y"})
    assert int(a) < int(b) < int(s.id)
    assert s.kind is Kind.ACTIVE and s.parent_ids == (b, a)
    with store.transaction() as tx:
        assert tx.get_snapshot("c").parent_ids == (b, a)
        id_, info, _ = tx.get_info("c")
        assert id_ == s.id and info.parent == "b" and info.labels == {"x": "y"}


def test_commit_keeps_the_id_and_records_usage(store) -> None:
    with store.transaction(writable=True) as tx:
        s = tx.create_snapshot(Kind.ACTIVE, "k")
        assert tx.commit_active("k", "n", Usage(inodes=3, size=4096), {"l": "1"}) == s.id
    with store.transaction() as tx:
        id_, info, usage = tx.get_info("n")
        assert (id_, info.kind, info.labels, usage) == (
            s.id,
            Kind.COMMITTED,
            {"l": "1"},
            Usage(inodes=3, size=4096),
        )
        with pytest.raises(errdefs.NotFound):
            tx.get_info("k")
        with pytest.raises(errdefs.FailedPrecondition):
            tx.get_snapshot("n")


@pytest.mark.parametrize("kind", [Kind.ACTIVE, Kind.VIEW])
def test_active_and_view_snapshots_cannot_be_parents(store, kind) -> None:
    with store.transaction(writable=True) as tx:
        tx.create_snapshot(kind, "p")
    with pytest.raises(errdefs.InvalidArgument, match='parent "p" is not a committed'):
        with store.transaction(writable=True) as tx:
            tx.create_snapshot(Kind.ACTIVE, "c", "p")


def test_missing_parent_is_not_found_and_duplicate_key_already_exists(store) -> None:
    with pytest.raises(errdefs.NotFound, match='parent "nope" not found'):
        with store.transaction(writable=True) as tx:
            tx.create_snapshot(Kind.ACTIVE, "c", "nope")
    with store.transaction(writable=True) as tx:
        tx.create_snapshot(Kind.ACTIVE, "c")
    with pytest.raises(errdefs.AlreadyExists):
        with store.transaction(writable=True) as tx:
            tx.create_snapshot(Kind.VIEW, "c")


def test_only_active_snapshots_can_be_committed(store) -> None:
    _commit(store, "done")
    with store.transaction(writable=True) as tx:
        tx.create_snapshot(Kind.VIEW, "v", "done")
    for key in ("v", "done"):
        with pytest.raises(errdefs.FailedPrecondition, match="is not active"):
            with store.transaction(writable=True) as tx:
                tx.commit_active(key, f"{key}-2", Usage())
    with pytest.raises(errdefs.NotFound):
        with store.transaction(writable=True) as tx:
            tx.commit_active("missing", "x", Usage())


def test_removing_a_snapshot_with_children_fails_and_keeps_it(store) -> None:
    _commit(store, "p")
    with store.transaction(writable=True) as tx:
        tx.create_snapshot(Kind.VIEW, "child", "p")
    with pytest.raises(errdefs.FailedPrecondition, match="child"):
        with store.transaction(writable=True) as tx:
            tx.remove("p")
    with store.transaction(writable=True) as tx:
        assert tx.remove("child")[1] is Kind.VIEW
        assert tx.remove("p")[1] is Kind.COMMITTED
        assert tx.id_map() == {}


def test_an_exception_rolls_the_whole_transaction_back(store) -> None:
    with pytest.raises(RuntimeError):
        with store.transaction(writable=True) as tx:
            tx.create_snapshot(Kind.ACTIVE, "a")
            raise RuntimeError("filesystem work failed")
    with store.transaction() as tx:
        assert tx.id_map() == {}


def test_read_only_transactions_refuse_writes(store) -> None:
    with pytest.raises(errdefs.FailedPrecondition):
        with store.transaction() as tx:
            tx.create_snapshot(Kind.ACTIVE, "a")


def test_update_info_follows_fieldpaths(store) -> None:
    with store.transaction(writable=True) as tx:
        tx.create_snapshot(Kind.ACTIVE, "a", labels={"a": "1", "b": "2"})
        got = tx.update_info(Info(name="a", labels={"a": "x", "b": "y"}), ["labels.a"])
        assert got.labels == {"a": "x", "b": "2"}
        got = tx.update_info(Info(name="a", labels={}), ["labels.b"])
        assert got.labels == {"a": "x"}
        got = tx.update_info(Info(name="a", labels={"z": "1"}))
        assert got.labels == {"z": "1"}
        with pytest.raises(errdefs.InvalidArgument, match='cannot update "name"'):
            tx.update_info(Info(name="a"), ["name"])
        with pytest.raises(errdefs.NotFound):
            tx.update_info(Info(name="b"), [])


def test_walk_info_filters_on_kind_name_parent_and_labels(store) -> None:
    _commit(store, "base")
    with store.transaction(writable=True) as tx:
        tx.create_snapshot(Kind.ACTIVE, "a", "base", {"app": "x"})
        tx.create_snapshot(Kind.VIEW, "v", "base")
    with store.transaction() as tx:
        assert [i.name for i in tx.walk_info()] == ["a", "base", "v"]
        assert [i.name for i in tx.walk_info(["kind==view"])] == ["v"]
        assert [i.name for i in tx.walk_info(["parent==base,labels.app==x"])] == ["a"]
        assert [i.name for i in tx.walk_info(["name==base", "kind==view"])] == ["base", "v"]


def test_data_survives_reopening(tmp_path) -> None:
    path = str(tmp_path / "metadata.db")
    ms = MetaStore.open(path)
    _commit(ms, "base")
    with ms.transaction() as tx:
        before = tx.get_info("base")
    ms.close()
    ms = MetaStore.open(path)
    try:
        with ms.transaction() as tx:
            assert tx.get_info("base") == before
    finally:
        ms.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_closed_store_refuses_transactions(tmp_path) -> None:
    ms = MetaStore.open(str(tmp_path / "m.db"))
    ms.close()
    ms.close()
    with pytest.raises(errdefs.FailedPrecondition, match="closed"):
        with ms.transaction():
            pass
