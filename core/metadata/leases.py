"""Leases in the metadata database, and the helpers stores use to add what they create to the
current lease inside their own transaction."""

from __future__ import annotations

import builtins
from collections.abc import Mapping

import attrs

from pycontainerd.core import errdefs, filters, namespaces
from pycontainerd.core import leases as leases_
from pycontainerd.core.content import digests
from pycontainerd.core.leases import Lease, Resource
from pycontainerd.core.metadata.db import (
    DB,
    Tx,
    labels_from_db,
    labels_to_db,
    now,
    ts_from_db,
    ts_to_db,
)
from pycontainerd.core.metadata.validation import check_map, validate_labels


def _lease_exists(tx: Tx, namespace: str, lease_id: str) -> bool:
    return (
        tx.one("SELECT 1 FROM leases WHERE namespace = ? AND id = ?", (namespace, lease_id))
        is not None
    )


def add_to_lease(
    tx: Tx, namespace: str, lease_id: str | None, kind: str, id_: str, snapshotter: str = ""
) -> None:
    """Record ``id_`` of ``kind`` under the lease (no-op without a lease). NotFound if the lease
    does not exist, which fails the enclosing transaction."""
    if not lease_id:
        return
    if not _lease_exists(tx, namespace, lease_id):
        raise errdefs.NotFound(f"lease {lease_id!r} does not exist")
    tx.execute(
        "INSERT OR IGNORE INTO lease_resources(namespace, lease, kind, snapshotter, id) "
        "VALUES (?, ?, ?, ?, ?)",
        (namespace, lease_id, kind, snapshotter, id_),
    )


def remove_from_lease(
    tx: Tx, namespace: str, lease_id: str | None, kind: str, id_: str, snapshotter: str = ""
) -> None:
    if not lease_id:
        return
    tx.execute(
        "DELETE FROM lease_resources WHERE namespace = ? AND lease = ? AND kind = ? "
        "AND snapshotter = ? AND id = ?",
        (namespace, lease_id, kind, snapshotter, id_),
    )


def _parse_resource(r: Resource) -> tuple[str, str, str]:
    kind, snapshotter = leases_.parse_resource_type(r.type)
    id_ = r.id
    if not id_:
        raise errdefs.InvalidArgument(f"resource of type {r.type} needs an id")
    if kind == leases_.RESOURCE_CONTENT:
        try:
            digests.validate(id_)
        except errdefs.ContainerdError as exc:
            raise errdefs.InvalidArgument(f"invalid content resource id {id_}: {exc}") from None
    return kind, snapshotter, id_


def _row_to_lease(row: object) -> Lease:
    return Lease(
        id=row["id"],  # type: ignore[index]
        created_at=ts_from_db(row["created_at"]),  # type: ignore[index]
        labels=labels_from_db(row["labels"]),  # type: ignore[index]
    )


def _adapt(lease: Lease) -> filters.FieldFn:
    def adaptor(fieldpath: list[str]) -> tuple[str, bool]:
        if not fieldpath:
            return "", False
        if fieldpath[0] == "id":
            return lease.id, bool(lease.id)
        if fieldpath[0] == "labels":
            return check_map(fieldpath[1:], lease.labels)
        return "", False

    return adaptor


@attrs.define(eq=False)
class LeaseManager:
    """containerd's lease manager over the metadata database (``core.leases.Manager``).

    ``delete(sync=True)`` is honoured by the lease plugin, which runs garbage collection."""

    _db: DB

    async def create(self, id: str, labels: Mapping[str, str] | None = None) -> Lease:  # noqa: A002
        if not id:
            raise errdefs.InvalidArgument("lease id must be provided")
        validate_labels(labels, "lease.labels")
        namespace = namespaces.required()
        created = now()

        def fn(tx: Tx) -> None:
            tx.ensure_namespace(namespace)
            if _lease_exists(tx, namespace, id):
                raise errdefs.AlreadyExists(f"lease {id!r}: already exists")
            tx.execute(
                "INSERT INTO leases(namespace, id, labels, created_at) VALUES (?, ?, ?, ?)",
                (namespace, id, labels_to_db(labels), ts_to_db(created)),
            )

        await self._db.update(fn)
        return Lease(
            id=id, created_at=created, labels={k: v for k, v in (labels or {}).items() if v}
        )

    async def get(self, id: str) -> Lease:  # noqa: A002
        namespace = namespaces.required()

        def fn(tx: Tx) -> Lease:
            row = tx.one("SELECT * FROM leases WHERE namespace = ? AND id = ?", (namespace, id))
            if row is None:
                raise errdefs.NotFound(f"lease {id!r}: not found")
            return _row_to_lease(row)

        return await self._db.view(fn)

    async def delete(self, id: str, *, sync: bool = False) -> None:  # noqa: A002
        namespace = namespaces.required()

        def fn(tx: Tx) -> None:
            cur = tx.execute("DELETE FROM leases WHERE namespace = ? AND id = ?", (namespace, id))
            if cur.rowcount == 0:
                raise errdefs.NotFound(f"lease {id!r}: not found")
            tx.mark_dirty()

        await self._db.update(fn)

    async def list(self, filters_: list[str] | None = None) -> builtins.list[Lease]:
        namespace = namespaces.required()
        flt = filters.parse_all(list(filters_ or []))
        rows = await self._db.view(
            lambda tx: tx.all("SELECT * FROM leases WHERE namespace = ? ORDER BY id", (namespace,))
        )
        out = [_row_to_lease(r) for r in rows]
        return [lease for lease in out if flt.match(_adapt(lease))]

    async def add_resource(self, lease_id: str, resource: Resource) -> None:
        namespace = namespaces.required()
        kind, snapshotter, id_ = _parse_resource(resource)

        def fn(tx: Tx) -> None:
            if not _lease_exists(tx, namespace, lease_id):
                raise errdefs.NotFound(f"lease {lease_id!r}: not found")
            add_to_lease(tx, namespace, lease_id, kind, id_, snapshotter)

        await self._db.update(fn)

    async def delete_resource(self, lease_id: str, resource: Resource) -> None:
        namespace = namespaces.required()
        kind, snapshotter, id_ = _parse_resource(resource)

        def fn(tx: Tx) -> None:
            if not _lease_exists(tx, namespace, lease_id):
                raise errdefs.NotFound(f"lease {lease_id!r}: not found")
            remove_from_lease(tx, namespace, lease_id, kind, id_, snapshotter)
            tx.mark_dirty()

        await self._db.update(fn)

    async def list_resources(self, lease_id: str) -> builtins.list[Resource]:
        namespace = namespaces.required()

        def fn(tx: Tx) -> builtins.list[Resource]:
            if not _lease_exists(tx, namespace, lease_id):
                raise errdefs.NotFound(f"lease {lease_id!r}: not found")
            rows = tx.all(
                "SELECT kind, snapshotter, id FROM lease_resources "
                "WHERE namespace = ? AND lease = ?",
                (namespace, lease_id),
            )
            order = {"content": 0, "images": 1, "ingests": 2, "snapshots": 3}
            rows = sorted(rows, key=lambda r: (order.get(r["kind"], 9), r["snapshotter"], r["id"]))
            return [
                Resource(
                    id=r["id"],
                    type=f"snapshots/{r['snapshotter']}" if r["kind"] == "snapshots" else r["kind"],
                )
                for r in rows
            ]

        return await self._db.view(fn)
