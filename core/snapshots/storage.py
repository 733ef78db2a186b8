"""The metastore a snapshotter keeps beside its data: which snapshots exist, their numeric ids
(the names of their directories), kinds, parents, labels, times and committed usage.

containerd keeps this in a bolt file; here it is SQLite (stdlib, WAL) in ``metadata.db`` in
the snapshotter's root. Everything happens inside a :meth:`MetaStore.transaction`; a snapshotter
does its filesystem work inside the transaction and lets an exception roll the records back, so
a failure never leaves a record without its directory. (A crash can leave a directory without a
record; snapshotters remove those with ``cleanup``.)

Rules: keys are unique (AlreadyExists); only committed snapshots can be parents
(InvalidArgument otherwise, NotFound when missing); only active snapshots can be committed
(FailedPrecondition); a snapshot with children cannot be removed (FailedPrecondition). Ids are
never reused, so a leftover directory can never be mistaken for a new snapshot's.

The store is blocking: use it from a thread (``asyncio.to_thread``). One store serialises its
transactions with a lock.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.snapshots import Info, Kind, Usage, adaptor, apply_update

log = logging.getLogger(__name__)

DB_NAME = "metadata.db"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    kind INTEGER NOT NULL,
    parent_id INTEGER REFERENCES snapshots(id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    inodes INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id);
CREATE TABLE IF NOT EXISTS labels (
    snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, key)
);
"""


@attrs.frozen(kw_only=True)
class Snapshot:
    """A snapshot as its snapshotter needs it: its id and the ids of its parents, nearest
    first."""

    id: str
    kind: Kind
    parent_ids: tuple[str, ...] = ()


def _ts(t: _dt.datetime) -> str:
    return t.astimezone(_dt.UTC).isoformat()


def _parse_ts(s: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(s)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


class Transaction:
    """Operations on the store inside one SQLite transaction."""

    def __init__(self, conn: sqlite3.Connection, writable: bool) -> None:
        self._conn = conn
        self.writable = writable

    def _require_writable(self) -> None:
        if not self.writable:
            raise errdefs.FailedPrecondition("snapshot metastore: transaction is read-only")

    def _row(self, key: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._conn.execute(
            "SELECT * FROM snapshots WHERE key = ?", (key,)
        ).fetchone()
        return row

    def _labels(self, sid: int) -> dict[str, str]:
        rows = self._conn.execute(
            "SELECT key, value FROM labels WHERE snapshot_id = ?", (sid,)
        ).fetchall()
        return {r["key"]: r["value"] for r in rows}

    def _write_labels(self, sid: int, labels: Mapping[str, str]) -> None:
        self._conn.execute("DELETE FROM labels WHERE snapshot_id = ?", (sid,))
        self._conn.executemany(
            "INSERT INTO labels (snapshot_id, key, value) VALUES (?, ?, ?)",
            [(sid, k, v) for k, v in labels.items() if v != ""],
        )

    def _parent_key(self, parent_id: int | None) -> str:
        if parent_id is None:
            return ""
        row = self._conn.execute("SELECT key FROM snapshots WHERE id = ?", (parent_id,)).fetchone()
        if row is None:
            raise errdefs.NotFound(f"snapshot metastore: missing parent with id {parent_id}")
        return str(row["key"])

    def _info(self, row: sqlite3.Row) -> Info:
        return Info(
            name=row["key"],
            kind=Kind(row["kind"]),
            parent=self._parent_key(row["parent_id"]),
            labels=self._labels(row["id"]),
            created_at=_parse_ts(row["created_at"]),
            updated_at=_parse_ts(row["updated_at"]),
        )

    def _parent_chain(self, parent_id: int | None) -> tuple[str, ...]:
        out: list[str] = []
        seen: set[int] = set()
        while parent_id is not None:
            if parent_id in seen:
                raise errdefs.DataLoss(f"snapshot metastore: parent cycle at id {parent_id}")
            seen.add(parent_id)
            out.append(str(parent_id))
            row = self._conn.execute(
                "SELECT parent_id FROM snapshots WHERE id = ?", (parent_id,)
            ).fetchone()
            if row is None:
                raise errdefs.NotFound(f"snapshot metastore: missing parent with id {parent_id}")
            parent_id = row["parent_id"]
        return tuple(out)

    # --------------------------------------------------------------------- reads

    def get_info(self, key: str) -> tuple[str, Info, Usage]:
        """(id, info, usage recorded at commit) of ``key``; NotFound when missing."""
        row = self._row(key)
        if row is None:
            raise errdefs.NotFound(f'snapshot "{key}" does not exist')
        return str(row["id"]), self._info(row), Usage(inodes=row["inodes"], size=row["size"])

    def get_snapshot(self, key: str) -> Snapshot:
        """Id, kind and parent ids of the active or view snapshot ``key``."""
        row = self._row(key)
        if row is None:
            raise errdefs.NotFound(f'snapshot "{key}" does not exist')
        kind = Kind(row["kind"])
        if kind not in (Kind.ACTIVE, Kind.VIEW):
            raise errdefs.FailedPrecondition(f'snapshot "{key}" is not active or view')
        return Snapshot(
            id=str(row["id"]), kind=kind, parent_ids=self._parent_chain(row["parent_id"])
        )

    def walk_info(self, filters: Sequence[str] = ()) -> list[Info]:
        """Every snapshot matching any of ``filters`` (empty: all), ordered by key."""
        match = _compile_filters(filters)
        out: list[Info] = []
        for row in self._conn.execute("SELECT * FROM snapshots ORDER BY key").fetchall():
            info = self._info(row)
            if match(info):
                out.append(info)
        return out

    def id_map(self) -> dict[str, str]:
        """id -> key of every snapshot."""
        rows = self._conn.execute("SELECT id, key FROM snapshots").fetchall()
        return {str(r["id"]): r["key"] for r in rows}

    def children(self, key: str) -> list[str]:
        rows = self._conn.execute(
            "SELECT c.key FROM snapshots c JOIN snapshots p ON c.parent_id = p.id "
            "WHERE p.key = ? ORDER BY c.key",
            (key,),
        ).fetchall()
        return [r["key"] for r in rows]

    # --------------------------------------------------------------------- writes

    def create_snapshot(
        self,
        kind: Kind,
        key: str,
        parent: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> Snapshot:
        """Record a new active or view snapshot ``key`` on committed ``parent``."""
        self._require_writable()
        if kind not in (Kind.ACTIVE, Kind.VIEW):
            raise errdefs.InvalidArgument(
                f"snapshot type {kind} invalid; only active or view snapshots can be created"
            )
        if not key:
            raise errdefs.InvalidArgument("snapshot key must not be empty")
        parent_id: int | None = None
        parent_ids: tuple[str, ...] = ()
        if parent:
            prow = self._row(parent)
            if prow is None:
                raise errdefs.NotFound(f'parent "{parent}" not found')
            if Kind(prow["kind"]) is not Kind.COMMITTED:
                raise errdefs.InvalidArgument(f'parent "{parent}" is not a committed snapshot')
            parent_id = prow["id"]
            parent_ids = self._parent_chain(parent_id)
        if self._row(key) is not None:
            raise errdefs.AlreadyExists(f'snapshot "{key}" already exists')
        now = _ts(_now())
        cur = self._conn.execute(
            "INSERT INTO snapshots (key, kind, parent_id, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (key, int(kind), parent_id, now, now),
        )
        sid = cur.lastrowid
        assert sid is not None
        self._write_labels(sid, labels or {})
        return Snapshot(id=str(sid), kind=kind, parent_ids=parent_ids)

    def update_info(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        """Apply the mutable fields of ``info`` (labels) as :func:`apply_update` says."""
        self._require_writable()
        row = self._row(info.name)
        if row is None:
            raise errdefs.NotFound(f'snapshot "{info.name}" does not exist')
        current = self._info(row)
        updated = apply_update(current, info, fieldpaths, _now())
        self._conn.execute(
            "UPDATE snapshots SET updated_at = ? WHERE id = ?",
            (_ts(updated.updated_at), row["id"]),
        )
        self._write_labels(row["id"], updated.labels)
        return self._info(self._row(info.name))  # type: ignore[arg-type]

    def remove(self, key: str) -> tuple[str, Kind]:
        """Delete the record of ``key``; returns its (id, kind)."""
        self._require_writable()
        row = self._row(key)
        if row is None:
            raise errdefs.NotFound(f'snapshot "{key}" does not exist')
        child = self._conn.execute(
            "SELECT key FROM snapshots WHERE parent_id = ? LIMIT 1", (row["id"],)
        ).fetchone()
        if child is not None:
            raise errdefs.FailedPrecondition(
                f'cannot remove snapshot "{key}": it has a child ("{child["key"]}")'
            )
        self._conn.execute("DELETE FROM labels WHERE snapshot_id = ?", (row["id"],))
        self._conn.execute("DELETE FROM snapshots WHERE id = ?", (row["id"],))
        return str(row["id"]), Kind(row["kind"])

    def commit_active(
        self,
        key: str,
        name: str,
        usage: Usage,
        labels: Mapping[str, str] | None = None,
    ) -> str:
        """Turn active ``key`` into committed ``name`` (same id, same parent); the labels are
        replaced by ``labels``. Returns the id."""
        self._require_writable()
        if not name:
            raise errdefs.InvalidArgument("committed snapshot name must not be empty")
        if self._row(name) is not None:
            raise errdefs.AlreadyExists(f'committed snapshot "{name}" already exists')
        row = self._row(key)
        if row is None:
            raise errdefs.NotFound(f'active snapshot "{key}" not found')
        if Kind(row["kind"]) is not Kind.ACTIVE:
            raise errdefs.FailedPrecondition(f'snapshot "{key}" is not active')
        if row["parent_id"] is not None:
            prow = self._conn.execute(
                "SELECT kind, key FROM snapshots WHERE id = ?", (row["parent_id"],)
            ).fetchone()
            if prow is None:
                raise errdefs.NotFound(f'missing parent of snapshot "{key}"')
            if Kind(prow["kind"]) is not Kind.COMMITTED:
                raise errdefs.FailedPrecondition(f'parent "{prow["key"]}" is not committed')
        now = _ts(_now())
        self._conn.execute(
            "UPDATE snapshots SET key = ?, kind = ?, created_at = ?, updated_at = ?, "
            "inodes = ?, size = ? WHERE id = ?",
            (name, int(Kind.COMMITTED), now, now, usage.inodes, usage.size, row["id"]),
        )
        self._write_labels(row["id"], labels or {})
        return str(row["id"])


def _compile_filters(filters: Sequence[str]):  # type: ignore[no-untyped-def]
    if not filters or all(not f.strip() for f in filters):
        return lambda info: True
    from pycontainerd.core import filters as _filters

    flt = _filters.parse_all(list(filters))
    return lambda info: flt.match(adaptor(info))


@attrs.define(eq=False)
class MetaStore:
    """The SQLite file of one snapshotter. Open with :meth:`open`, close with :meth:`close`."""

    path: str
    _conn: sqlite3.Connection
    _lock: threading.RLock = attrs.Factory(threading.RLock)
    _closed: bool = False

    @classmethod
    def open(cls, path: str) -> MetaStore:
        """Open (creating if needed) the store at ``path``. Blocking."""
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise errdefs.FailedPrecondition(
                    f"snapshot metastore {path}: schema version {version} is newer than "
                    f"supported ({SCHEMA_VERSION})"
                )
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        return cls(path, conn)

    @contextlib.contextmanager
    def transaction(self, writable: bool = False) -> Iterator[Transaction]:
        """A transaction: committed when the block ends, rolled back when it raises."""
        with self._lock:
            if self._closed:
                raise errdefs.FailedPrecondition(f"snapshot metastore {self.path} is closed")
            self._conn.execute("BEGIN IMMEDIATE" if writable else "BEGIN")
            try:
                yield Transaction(self._conn, writable)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
