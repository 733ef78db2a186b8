from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.metadata.db import DB, DB_VERSION, SCHEMA


async def test_open_creates_schema_version_row(tmp_path):
    db = await DB.open(str(tmp_path / "meta.db"))
    await db.close()
    conn = sqlite3.connect(tmp_path / "meta.db")
    assert conn.execute("SELECT schema, version FROM schema_version").fetchall() == [
        (SCHEMA, DB_VERSION)
    ]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_reopen_keeps_data_and_does_not_rerun_migrations(tmp_path):
    db = await DB.open(str(tmp_path / "meta.db"))
    await db.update(lambda tx: tx.ensure_namespace("a"))
    await db.close()
    db = await DB.open(str(tmp_path / "meta.db"))
    rows = await db.view(lambda tx: tx.all("SELECT name FROM namespaces"))
    await db.close()
    assert [r["name"] for r in rows] == ["a"]


async def test_newer_database_version_is_refused(tmp_path):
    db = await DB.open(str(tmp_path / "meta.db"))
    await db.update(
        lambda tx: tx.execute("UPDATE schema_version SET version = ?", (DB_VERSION + 1,))
    )
    await db.close()
    with pytest.raises(errdefs.FailedPrecondition, match="newer than supported"):
        await DB.open(str(tmp_path / "meta.db"))


async def test_update_rolls_back_everything_when_function_raises(db):
    def fn(tx):
        tx.ensure_namespace("a")
        tx.ensure_namespace("b")
        raise errdefs.InvalidArgument("boom")

    with pytest.raises(errdefs.InvalidArgument):
        await db.update(fn)
    assert await db.view(lambda tx: tx.all("SELECT * FROM namespaces")) == []


async def test_view_refuses_writes(db):
    with pytest.raises(errdefs.Internal):
        await db.view(lambda tx: tx.execute("INSERT INTO namespaces(name) VALUES ('x')"))


async def test_dirty_counts_only_committed_deletions_and_callbacks_see_it(db):
    seen: list[bool] = []
    db.register_mutation_callback(seen.append)

    def dirty_then_fail(tx):
        tx.mark_dirty()
        raise errdefs.Aborted("no")

    with pytest.raises(errdefs.Aborted):
        await db.update(dirty_then_fail)
    assert db.dirty == 0
    await db.update(lambda tx: tx.ensure_namespace("a"))
    await db.update(lambda tx: tx.mark_dirty())
    assert db.dirty == 1
    assert seen == [False, True]


async def test_closed_db_refuses_work(tmp_path):
    db = await DB.open(str(tmp_path / "meta.db"))
    await db.close()
    with pytest.raises(errdefs.FailedPrecondition, match="closed"):
        await db.view(lambda tx: None)


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pycontainerd.core import namespaces
    from pycontainerd.core.metadata.db import DB
    from pycontainerd.core.metadata.containers import Container, ContainerStore, Runtime

    async def main():
        db = await DB.open(sys.argv[1])
        store = ContainerStore(db)
        with namespaces.use("crash"):
            i = 0
            while True:
                await store.create(Container(
                    id=f"c{i}", runtime=Runtime(name="io.containerd.runc.v2"),
                    spec=("t", b"x" * 2000), labels={"n": str(i)},
                    extensions={"a": ("t", b"1"), "b": ("t", b"2")}))
                print(i, flush=True)
                i += 1

    asyncio.run(main())
    """
)


async def test_sigkill_during_writes_leaves_every_committed_container_whole(tmp_path):
    path = str(tmp_path / "meta.db")
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, path], stdout=subprocess.PIPE, text=True
    )
    committed = -1
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while committed < 50 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        committed = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert committed >= 50

    from pycontainerd.core import namespaces
    from pycontainerd.core.metadata.containers import ContainerStore

    db = await DB.open(path)
    try:
        integrity = await db.view(lambda tx: tx.one("PRAGMA integrity_check")[0])
        assert integrity == "ok"
        with namespaces.use("crash"):
            found = await ContainerStore(db).list()
        ids = {c.id for c in found}
        # everything reported committed is there, each container complete
        assert {f"c{i}" for i in range(committed + 1)} <= ids
        for c in found:
            assert c.labels == {"n": c.id[1:]}
            assert c.extensions == {"a": ("t", b"1"), "b": ("t", b"2")}
    finally:
        await db.close()
