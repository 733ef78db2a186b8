"""The metadata database: SQLite in place of containerd's bbolt.

One file (``meta.db`` under the metadata plugin's root) holds every namespaced object:
namespaces, images, containers, sandboxes, leases and their resources, content records and
ingests, and snapshot records per snapshotter.

Threading: the database is owned by **one dedicated executor thread** that holds the only
sqlite3 connection. A transaction is a plain function ``fn(tx) -> result`` that runs entirely
on that thread (:meth:`DB.view`, :meth:`DB.update`); coroutines await its result. So the event
loop never waits on disk, transactions never interleave (the thread runs them one after the
other, which also gives garbage collection its "no writes between mark and sweep" for free),
and no lock is held across an ``await``. A transaction function must not await, block on the
network, or call back into the loop; it gets the namespace and lease as arguments because
context variables do not follow work into the thread.

Durability: WAL journal, ``synchronous=FULL`` (``OFF`` with ``no_sync``), so a committed
transaction survives a crash of the process (and, without ``no_sync``, of the host), and an
interrupted one leaves no trace.

Schema changes are migrations: numbered functions run in order inside one transaction at open,
with the version kept in the ``schema_version`` table.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import attrs

from pycontainerd.core import errdefs, namespaces

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Structure of the data; a backwards-incompatible change needs a new schema name.
SCHEMA = "v1"


class Publisher(Protocol):
    """Where stores publish events (the event exchange satisfies it)."""

    async def publish(self, topic: str, event: Any) -> None: ...


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated statements inside the current transaction (``executescript`` would
    commit it)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            conn.execute(statement)


def _migrate_1(conn: sqlite3.Connection) -> None:
    _execute_script(
        conn,
        """
        CREATE TABLE namespaces (
            name TEXT PRIMARY KEY,
            labels TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE images (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            name TEXT NOT NULL,
            media_type TEXT NOT NULL,
            digest TEXT NOT NULL,
            size INTEGER NOT NULL,
            annotations TEXT NOT NULL DEFAULT '{}',
            labels TEXT NOT NULL DEFAULT '{}',
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (namespace, name)
        );
        CREATE TABLE containers (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            id TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            image TEXT NOT NULL DEFAULT '',
            runtime_name TEXT NOT NULL,
            runtime_options_type TEXT,
            runtime_options BLOB,
            spec_type TEXT,
            spec BLOB,
            snapshotter TEXT NOT NULL DEFAULT '',
            snapshot_key TEXT NOT NULL DEFAULT '',
            sandbox TEXT NOT NULL DEFAULT '',
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (namespace, id)
        );
        CREATE TABLE sandboxes (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            id TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            runtime_name TEXT NOT NULL DEFAULT '',
            runtime_options_type TEXT,
            runtime_options BLOB,
            spec_type TEXT,
            spec BLOB,
            sandboxer TEXT NOT NULL DEFAULT '',
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (namespace, id)
        );
        -- owner_kind is 'container' or 'sandbox'
        CREATE TABLE extensions (
            namespace TEXT NOT NULL,
            owner_kind TEXT NOT NULL,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            type_url TEXT NOT NULL,
            value BLOB NOT NULL,
            PRIMARY KEY (namespace, owner_kind, owner, name)
        );
        CREATE TABLE leases (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            id TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            created_at INTEGER NOT NULL,
            PRIMARY KEY (namespace, id)
        );
        -- kind: content | ingests | images | snapshots; snapshotter set for snapshots only
        CREATE TABLE lease_resources (
            namespace TEXT NOT NULL,
            lease TEXT NOT NULL,
            kind TEXT NOT NULL,
            snapshotter TEXT NOT NULL DEFAULT '',
            id TEXT NOT NULL,
            PRIMARY KEY (namespace, lease, kind, snapshotter, id),
            FOREIGN KEY (namespace, lease) REFERENCES leases(namespace, id) ON DELETE CASCADE
        );
        CREATE TABLE content (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            digest TEXT NOT NULL,
            size INTEGER NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (namespace, digest)
        );
        CREATE INDEX content_digest ON content(digest);
        CREATE TABLE ingests (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            ref TEXT NOT NULL,
            backend_ref TEXT NOT NULL,
            expire_at INTEGER,
            expected TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (namespace, ref)
        );
        CREATE TABLE snapshots (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            snapshotter TEXT NOT NULL,
            key TEXT NOT NULL,
            backend_key TEXT NOT NULL,
            parent TEXT NOT NULL DEFAULT '',
            labels TEXT NOT NULL DEFAULT '{}',
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (namespace, snapshotter, key)
        );
        CREATE INDEX snapshots_parent ON snapshots(namespace, snapshotter, parent);
        CREATE INDEX snapshots_backend ON snapshots(snapshotter, backend_key);
        CREATE TABLE sequences (
            name TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        );
        """,
    )


#: Migrations in order; index + 1 is the version each one brings the database to.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_1]
DB_VERSION = len(MIGRATIONS)


# --- encoding helpers shared by the stores -------------------------------------------------


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def ts_to_db(t: datetime.datetime) -> int:
    """Microseconds since the epoch (UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.UTC)
    delta = t - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def ts_from_db(v: int | None) -> datetime.datetime | None:
    if v is None:
        return None
    return datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(microseconds=v)


def labels_to_db(labels: Mapping[str, str] | None) -> str:
    """Labels as stored: empty values are dropped (an empty value means "unset")."""
    return json.dumps({k: v for k, v in sorted((labels or {}).items()) if v}, sort_keys=True)


def labels_from_db(text: str | None) -> dict[str, str]:
    return dict(json.loads(text)) if text else {}


# --- transactions ---------------------------------------------------------------------------


@attrs.define(eq=False)
class Tx:
    """A transaction on the database thread. Use only inside the function given to
    :meth:`DB.view` / :meth:`DB.update`."""

    conn: sqlite3.Connection
    writable: bool
    #: Deletions in this transaction that may leave garbage (added to ``DB.dirty`` on commit).
    dirty: int = 0
    #: Backends with removed records, to clean after the next garbage collection.
    dirty_content: bool = False
    dirty_snapshotters: set[str] = attrs.Factory(set)

    def execute(self, sql: str, params: tuple[Any, ...] | Mapping[str, Any] = ()) -> sqlite3.Cursor:
        if not self.writable and not sql.lstrip().upper().startswith(("SELECT", "WITH")):
            raise errdefs.Internal("write attempted in a read-only metadata transaction")
        return self.conn.execute(sql, params)

    def all(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, params).fetchone()
        return row

    def mark_dirty(self, n: int = 1, *, content: bool = False, snapshotter: str = "") -> None:
        """Record a deletion; ``content``/``snapshotter`` name the backend that may now hold
        something unreferenced."""
        self.dirty += n
        self.dirty_content = self.dirty_content or content
        if snapshotter:
            self.dirty_snapshotters.add(snapshotter)

    def next_sequence(self, name: str) -> int:
        """The next number of the named counter (1, 2, ...), as bbolt's NextSequence."""
        self.execute(
            "INSERT INTO sequences(name, value) VALUES (?, 1) "
            "ON CONFLICT(name) DO UPDATE SET value = value + 1",
            (name,),
        )
        row = self.one("SELECT value FROM sequences WHERE name = ?", (name,))
        assert row is not None
        return int(row["value"])

    def ensure_namespace(self, namespace: str) -> None:
        """Objects created in a namespace bring the namespace into existence, as in containerd."""
        self.execute("INSERT OR IGNORE INTO namespaces(name) VALUES (?)", (namespace,))


@attrs.define(eq=False)
class DB:
    """The metadata database. Open with :meth:`open`; close with :meth:`close`."""

    path: str
    no_sync: bool = False
    publisher: Publisher | None = None
    #: Deletions since the last garbage collection (containerd's ``dirty``).
    dirty: int = 0
    #: Backends to clean after the next collection. Both start "everything", so the first
    #: collection after start also removes what a crash left in the backends unrecorded.
    dirty_content: bool = True
    dirty_snapshotters: set[str] | None = None
    _executor: concurrent.futures.ThreadPoolExecutor | None = None
    _conn: sqlite3.Connection | None = None
    _mutation_callbacks: list[Callable[[bool], None]] = attrs.Factory(list)

    @classmethod
    async def open(
        cls, path: str, *, no_sync: bool = False, publisher: Publisher | None = None
    ) -> DB:
        db = cls(path, no_sync=no_sync, publisher=publisher)
        db._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="metadata-db"
        )
        try:
            await db._submit(db._open_sync)
        except BaseException:
            db._executor.shutdown(wait=False)
            db._executor = None
            raise
        return db

    def _open_sync(self) -> None:
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, mode=0o711, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'OFF' if self.no_sync else 'FULL'}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=10000")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "schema TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            row = conn.execute(
                "SELECT version FROM schema_version WHERE schema = ?", (SCHEMA,)
            ).fetchone()
            current = row[0] if row else 0
            if current > DB_VERSION:
                raise errdefs.FailedPrecondition(
                    f"metadata database {self.path} is at version {SCHEMA}.{current}, "
                    f"newer than supported {SCHEMA}.{DB_VERSION}"
                )
            for version in range(current + 1, DB_VERSION + 1):
                MIGRATIONS[version - 1](conn)
                log.debug("migrated metadata database to %s.%d", SCHEMA, version)
            if current != DB_VERSION:
                conn.execute(
                    "INSERT OR REPLACE INTO schema_version(schema, version) VALUES (?, ?)",
                    (SCHEMA, DB_VERSION),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def _submit(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise errdefs.FailedPrecondition(f"metadata database {self.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)

    def _run(self, fn: Callable[[Tx], T], writable: bool) -> tuple[T, Tx]:
        conn = self._conn
        if conn is None:
            raise errdefs.FailedPrecondition(f"metadata database {self.path} is closed")
        tx = Tx(conn, writable)
        conn.execute("BEGIN IMMEDIATE" if writable else "BEGIN")
        try:
            result = fn(tx)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result, tx

    def _merge(self, tx: Tx) -> None:
        self.dirty += tx.dirty
        self.dirty_content = self.dirty_content or tx.dirty_content
        if self.dirty_snapshotters is not None:
            self.dirty_snapshotters |= tx.dirty_snapshotters

    async def view(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in a read-only transaction on the database thread."""
        result, _ = await self._submit(lambda: self._run(fn, False))
        return result

    async def update(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in a write transaction on the database thread. It commits when ``fn``
        returns and rolls back (leaving nothing behind) when it raises. Mutation callbacks run
        after the commit.

        If the awaiting task is cancelled, the transaction still completes on the thread.
        """
        result, tx = await self._submit(lambda: self._run(fn, True))
        self._merge(tx)
        self._notify()
        return result

    def _notify(self) -> None:
        dirty = self.dirty > 0
        for cb in list(self._mutation_callbacks):
            try:
                cb(dirty)
            except Exception:
                log.exception("metadata mutation callback failed")

    def register_mutation_callback(self, fn: Callable[[bool], None]) -> None:
        """Call ``fn(dirty)`` after every committed write; ``dirty`` says whether deletions
        happened since the last garbage collection."""
        self._mutation_callbacks.append(fn)

    async def publish(self, namespace: str, topic: str, event: Any) -> None:
        """Publish ``event`` on ``topic`` in ``namespace`` if a publisher is configured.
        Failures are logged, never raised: the change is already committed."""
        if self.publisher is None:
            return
        try:
            with namespaces.use(namespace):
                await self.publisher.publish(topic, event)
        except Exception as exc:  # noqa: BLE001 - an event must not fail a committed change
            log.warning("failed to publish %s: %s", topic, exc, extra={"namespace": namespace})

    async def close(self) -> None:
        executor = self._executor
        if executor is None:
            return

        def close_sync() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await self._submit(close_sync)
        finally:
            self._executor = None
            executor.shutdown(wait=True)
