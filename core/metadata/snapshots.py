"""The namespaced snapshotter: a view over one backend snapshotter.

Each namespace has its own key space. A snapshot ``key`` in namespace ``ns`` lives in the
backend as ``<ns>/<sequence>/<key>``; the metadata database maps one to the other and keeps
the parent link, timestamps and labels (the backend only gets the inherited
``containerd.io/snapshot/`` labels). With a lease in the context, created and committed
snapshots are added to it. Garbage collection removes records; :meth:`Snapshotter.garbage_collect`
then removes backend snapshots no record refers to, children before parents.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence

import attrs

from pycontainerd.core import errdefs, filters, namespaces
from pycontainerd.core import leases as leases_
from pycontainerd.core import snapshots as snapshots_
from pycontainerd.core.metadata import events
from pycontainerd.core.metadata.db import (
    DB,
    Tx,
    labels_from_db,
    labels_to_db,
    now,
    ts_from_db,
    ts_to_db,
)
from pycontainerd.core.metadata.leases import add_to_lease, remove_from_lease
from pycontainerd.core.metadata.rwlock import RWLock
from pycontainerd.core.metadata.validation import update_labels, validate_labels
from pycontainerd.core.mount import Mount
from pycontainerd.core.snapshots import Info, Kind, Usage

log = logging.getLogger(__name__)


def _row(tx: Tx, namespace: str, snapshotter: str, key: str) -> object | None:
    return tx.one(
        "SELECT * FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
        (namespace, snapshotter, key),
    )


def _overlay(backend: Info, row: object) -> Info:
    """The backend's info (kind) seen through the namespace's record."""
    labels = dict(backend.labels)
    labels.update(labels_from_db(row["labels"]))  # type: ignore[index]
    return attrs.evolve(
        backend,
        name=row["key"],  # type: ignore[index]
        parent=row["parent"],  # type: ignore[index]
        labels=labels,
        created_at=ts_from_db(row["created_at"]),  # type: ignore[index]
        updated_at=ts_from_db(row["updated_at"]),  # type: ignore[index]
    )


@attrs.define(eq=False)
class Snapshotter:
    """Implements :class:`pycontainerd.core.snapshots.Snapshotter`, namespaced by the context."""

    _db: DB
    name: str
    backend: snapshots_.Snapshotter
    _lock: RWLock = attrs.Factory(RWLock)

    async def _resolve(self, key: str) -> tuple[str, object]:
        namespace = namespaces.required()
        row = await self._db.view(lambda tx: _row(tx, namespace, self.name, key))
        if row is None:
            raise errdefs.NotFound(f"snapshot {key} does not exist")
        return str(row["backend_key"]), row  # type: ignore[index]

    async def stat(self, key: str) -> Info:
        bkey, row = await self._resolve(key)
        return _overlay(await self.backend.stat(bkey), row)

    async def usage(self, key: str) -> Usage:
        bkey, _ = await self._resolve(key)
        return await self.backend.usage(bkey)

    async def mounts(self, key: str) -> list[Mount]:
        bkey, _ = await self._resolve(key)
        return await self.backend.mounts(bkey)

    async def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        if not info.name:
            raise errdefs.InvalidArgument("snapshot name must not be empty")
        namespace = namespaces.required()

        def fn(tx: Tx) -> tuple[object, dict[str, str]]:
            row = _row(tx, namespace, self.name, info.name)
            if row is None:
                raise errdefs.NotFound(f"snapshot {info.name} does not exist")
            labels = update_labels(
                labels_from_db(row["labels"]),  # type: ignore[index]
                info.labels,
                fieldpaths,
                f"snapshot {info.name!r}",
            )
            tx.execute(
                "UPDATE snapshots SET labels = ?, updated_at = ? "
                "WHERE namespace = ? AND snapshotter = ? AND key = ?",
                (labels_to_db(labels), ts_to_db(now()), namespace, self.name, info.name),
            )
            return _row(tx, namespace, self.name, info.name), labels  # type: ignore[return-value]

        async with self._lock.read():
            row, labels = await self._db.update(fn)
            inner = Info(
                name=str(row["backend_key"]),  # type: ignore[index]
                labels=snapshots_.filter_inherited_labels(labels),
            )
            binfo = await self.backend.update(inner, list(fieldpaths))
        return _overlay(binfo, row)

    async def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        mounts = await self._create(key, parent, labels, readonly=False)
        namespace = namespaces.required()
        await self._db.publish(
            namespace,
            events.TOPIC_SNAPSHOT_PREPARE,
            events.SnapshotPrepare(key=key, parent=parent, snapshotter=self.name),
        )
        return mounts

    async def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return await self._create(key, parent, labels, readonly=True)

    async def _create(
        self, key: str, parent: str, labels: Mapping[str, str] | None, *, readonly: bool
    ) -> list[Mount]:
        if not key:
            raise errdefs.InvalidArgument("snapshot key must not be empty")
        namespace = namespaces.required()
        lease = leases_.get()
        labels = {k: v for k, v in (labels or {}).items() if v}
        validate_labels(labels, "info.labels")
        target = labels.get(snapshots_.LABEL_SNAPSHOT_REF, "")

        async with self._lock.read():

            def reserve(tx: Tx) -> tuple[str, str, str]:
                """-> (error kind, backend key, backend parent)"""
                if target and _row(tx, namespace, self.name, target) is not None:
                    add_to_lease(tx, namespace, lease, "snapshots", target, self.name)
                    return "target", "", ""
                if _row(tx, namespace, self.name, key) is not None:
                    add_to_lease(tx, namespace, lease, "snapshots", key, self.name)
                    return "key", "", ""
                bparent = ""
                if parent:
                    prow = _row(tx, namespace, self.name, parent)
                    if prow is None:
                        raise errdefs.NotFound(f"parent snapshot {parent} does not exist")
                    bparent = str(prow["backend_key"])  # type: ignore[index]
                tx.ensure_namespace(namespace)
                seq = tx.next_sequence(f"snapshots/{self.name}")
                return "", f"{namespace}/{seq}/{key}", bparent

            exists, bkey, bparent = await self._db.update(reserve)
            if exists == "target":
                raise errdefs.AlreadyExists(f"target snapshot {target!r}: already exists")
            if exists == "key":
                raise errdefs.AlreadyExists(f"snapshot {key!r}: already exists")

            inherited = snapshots_.filter_inherited_labels(labels)
            create = self.backend.view if readonly else self.backend.prepare
            record_key = key
            created = ""
            rerr: errdefs.ContainerdError | None = None
            try:
                mounts = await create(bkey, bparent, inherited)
                created = bkey
                t = now()
                created_at = updated_at = t
            except errdefs.AlreadyExists as exc:
                if not target:
                    raise errdefs.Unknown(f"unexpected error from snapshotter: {exc}") from exc
                found: Info | None = None
                async for i in self.backend.walk():
                    if (
                        i.kind is Kind.COMMITTED
                        and i.labels.get(snapshots_.LABEL_SNAPSHOT_REF) == target
                        and i.parent == bparent
                    ):
                        found = i
                        break
                if found is None:
                    raise errdefs.NotFound(f"target snapshot {target!r} in backend") from exc
                record_key, bkey, bparent = target, found.name, found.parent
                created_at, updated_at = found.created_at, found.updated_at
                labels = {**found.labels, **labels}
                mounts = []
                rerr = errdefs.AlreadyExists(
                    f"target snapshot {target!r} from snapshotter: already exists"
                )

            def record(tx: Tx) -> None:
                add_to_lease(tx, namespace, lease, "snapshots", record_key, self.name)
                if _row(tx, namespace, self.name, record_key) is not None:
                    raise errdefs.AlreadyExists(f"snapshot {record_key!r}: already exists")
                if parent:
                    prow = _row(tx, namespace, self.name, parent)
                    if prow is None:
                        raise errdefs.NotFound(f"parent snapshot {parent} does not exist")
                    if prow["backend_key"] != bparent:  # type: ignore[index]
                        raise errdefs.InvalidArgument(
                            f"mismatched parent {parent} from target {target}"
                        )
                tx.execute(
                    "INSERT INTO snapshots(namespace, snapshotter, key, backend_key, parent, "
                    "labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        namespace,
                        self.name,
                        record_key,
                        bkey,
                        parent,
                        labels_to_db(labels),
                        ts_to_db(created_at),
                        ts_to_db(updated_at),
                    ),
                )

            try:
                await self._db.update(record)
            except errdefs.ContainerdError as exc:
                rerr = exc
            if rerr is not None:
                if created:
                    try:
                        await self.backend.remove(created)
                    except Exception as exc:  # noqa: BLE001 - garbage collection will retry
                        log.error(
                            "failed to clean up unreferenced snapshot %s: %s",
                            created,
                            exc,
                            extra={"snapshotter": self.name},
                        )
                raise rerr
            return mounts

    async def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        namespace = namespaces.required()
        lease = leases_.get()
        labels = {k: v for k, v in (labels or {}).items() if v}
        validate_labels(labels, "info.labels")

        async with self._lock.read():

            def prepare(tx: Tx) -> tuple[str, str]:
                if _row(tx, namespace, self.name, name) is not None:
                    raise errdefs.AlreadyExists(f"snapshot {name!r}: already exists")
                row = _row(tx, namespace, self.name, key)
                if row is None:
                    raise errdefs.NotFound(f"snapshot {key} does not exist")
                seq = tx.next_sequence(f"snapshots/{self.name}")
                return str(row["backend_key"]), f"{namespace}/{seq}/{name}"  # type: ignore[index]

            bkey, bname = await self._db.update(prepare)
            await self.backend.commit(bname, bkey, snapshots_.filter_inherited_labels(labels))

            def record(tx: Tx) -> None:
                row = _row(tx, namespace, self.name, key)
                if row is None or row["backend_key"] != bkey:  # type: ignore[index]
                    raise errdefs.NotFound(f"snapshot {key} does not exist")
                if _row(tx, namespace, self.name, name) is not None:
                    raise errdefs.AlreadyExists(f"snapshot {name!r}: already exists")
                add_to_lease(tx, namespace, lease, "snapshots", name, self.name)
                t = ts_to_db(now())
                tx.execute(
                    "INSERT INTO snapshots(namespace, snapshotter, key, backend_key, parent, "
                    "labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (namespace, self.name, name, bname, row["parent"], labels_to_db(labels), t, t),  # type: ignore[index]
                )
                tx.execute(
                    "DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
                    (namespace, self.name, key),
                )
                remove_from_lease(tx, namespace, lease, "snapshots", key, self.name)

            try:
                await self._db.update(record)
            except BaseException:
                log.error(
                    "uncommittable snapshot %s: transaction failed after commit as %s; "
                    "garbage collection will remove it",
                    key,
                    bname,
                    extra={"snapshotter": self.name},
                )
                raise
        await self._db.publish(
            namespace,
            events.TOPIC_SNAPSHOT_COMMIT,
            events.SnapshotCommit(key=key, name=name, snapshotter=self.name),
        )

    async def remove(self, key: str) -> None:
        """Remove the record; the backend snapshot goes at the next garbage collection."""
        namespace = namespaces.required()
        lease = leases_.get()

        def fn(tx: Tx) -> None:
            if _row(tx, namespace, self.name, key) is None:
                raise errdefs.NotFound(f"snapshot {key} does not exist")
            if tx.one(
                "SELECT 1 FROM snapshots WHERE namespace = ? AND snapshotter = ? AND parent = ? "
                "LIMIT 1",
                (namespace, self.name, key),
            ):
                raise errdefs.FailedPrecondition(f"cannot remove snapshot {key} with child")
            tx.execute(
                "DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
                (namespace, self.name, key),
            )
            remove_from_lease(tx, namespace, lease, "snapshots", key, self.name)
            tx.mark_dirty(snapshotter=self.name)

        async with self._lock.read():
            await self._db.update(fn)
        await self._db.publish(
            namespace,
            events.TOPIC_SNAPSHOT_REMOVE,
            events.SnapshotRemove(key=key, snapshotter=self.name),
        )

    async def walk(self, filters_: Sequence[str] = ()) -> AsyncIterator[Info]:
        namespace = namespaces.required()
        flt = filters.parse_all(list(filters_))
        rows = await self._db.view(
            lambda tx: tx.all(
                "SELECT * FROM snapshots WHERE namespace = ? AND snapshotter = ? ORDER BY key",
                (namespace, self.name),
            )
        )
        for row in rows:
            try:
                binfo = await self.backend.stat(row["backend_key"])
            except errdefs.NotFound:
                continue
            info = _overlay(binfo, row)
            if flt.match(snapshots_.adaptor(info)):
                yield info

    async def close(self) -> None:
        await self.backend.close()

    async def cleanup(self) -> None:
        """Reclaim backend space now (the snapshots service's ``Cleanup``): remove backend
        snapshots without a record, then let the backend clean up after itself."""
        await self.garbage_collect()

    async def garbage_collect(self) -> None:
        """Remove backend snapshots that no namespace's record refers to, children first."""
        async with self._lock.write():
            rows = await self._db.view(
                lambda tx: tx.all(
                    "SELECT backend_key FROM snapshots WHERE snapshotter = ?", (self.name,)
                )
            )
            seen = {r["backend_key"] for r in rows}
            children: dict[str, list[str]] = {}
            parent_of: dict[str, str] = {}
            async for info in self.backend.walk():
                parent_of[info.name] = info.parent
                children.setdefault(info.parent, []).append(info.name)

            async def prune(name: str) -> None:
                for child in children.get(name, []):
                    await prune(child)
                if name in seen:
                    return
                try:
                    await self.backend.remove(name)
                    log.debug("removed snapshot %s", name, extra={"snapshotter": self.name})
                except errdefs.FailedPrecondition as exc:
                    log.warning("failed to remove snapshot %s: %s", name, exc)
                except errdefs.NotFound:
                    pass

            for name, parent in parent_of.items():
                if not parent or parent not in parent_of:
                    await prune(name)
        cleaner = self.backend
        if isinstance(cleaner, snapshots_.Cleaner):
            try:
                await cleaner.cleanup()
            except errdefs.NotImplemented_:
                pass
