"""Namespaces in the metadata database.

A namespace exists once it is created explicitly or once any object is created in it. It can
be deleted only when empty: the error names what is left (images, blobs, containers, snapshots
per snapshotter, leases, sandboxes).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core import namespaces as ns_names
from pycontainerd.core.metadata import events
from pycontainerd.core.metadata.db import DB, Tx, labels_from_db, labels_to_db
from pycontainerd.core.metadata.validation import validate_label, validate_labels

log = logging.getLogger(__name__)


def _exists(tx: Tx, name: str) -> bool:
    return tx.one("SELECT 1 FROM namespaces WHERE name = ?", (name,)) is not None


def _labels(tx: Tx, name: str) -> dict[str, str]:
    row = tx.one("SELECT labels FROM namespaces WHERE name = ?", (name,))
    if row is None:
        raise errdefs.NotFound(f"namespace {name!r}: not found")
    return labels_from_db(row["labels"])


def _validate_labels(labels: Mapping[str, str] | None) -> None:
    validate_labels(labels, "namespace.labels")


def remaining(tx: Tx, name: str) -> list[str]:
    """What still lives in namespace ``name``, in words (empty when the namespace is empty)."""
    out: list[str] = []
    for table, what in (("images", "images"), ("content", "blobs"), ("containers", "containers")):
        if tx.one(f"SELECT 1 FROM {table} WHERE namespace = ? LIMIT 1", (name,)):
            out.append(what)
    for row in tx.all(
        "SELECT DISTINCT snapshotter FROM snapshots WHERE namespace = ? ORDER BY snapshotter",
        (name,),
    ):
        out.append(f'snapshots on "{row["snapshotter"]}" snapshotter')
    for table, what in (("leases", "leases"), ("sandboxes", "sandboxes"), ("ingests", "ingests")):
        if tx.one(f"SELECT 1 FROM {table} WHERE namespace = ? LIMIT 1", (name,)):
            out.append(what)
    return out


@attrs.define(eq=False)
class NamespaceStore:
    """Namespaces CRUD (containerd's ``namespaces.Store`` plus the service's update)."""

    _db: DB

    async def create(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        ns_names.validate(name)
        _validate_labels(labels)

        def fn(tx: Tx) -> None:
            if _exists(tx, name):
                raise errdefs.AlreadyExists(f"namespace {name!r}: already exists")
            tx.execute(
                "INSERT INTO namespaces(name, labels) VALUES (?, ?)", (name, labels_to_db(labels))
            )

        await self._db.update(fn)
        await self._db.publish(
            name,
            events.TOPIC_NAMESPACE_CREATE,
            events.NamespaceCreate(name=name, labels=dict(labels or {})),
        )

    async def get(self, name: str) -> dict[str, str]:
        """The labels of namespace ``name``; NotFound if it does not exist."""
        return await self._db.view(lambda tx: _labels(tx, name))

    async def list(self) -> list[str]:
        rows = await self._db.view(lambda tx: tx.all("SELECT name FROM namespaces ORDER BY name"))
        return [r["name"] for r in rows]

    async def set_label(self, name: str, key: str, value: str) -> None:
        """Set one label; an empty ``value`` removes it."""
        validate_label(key, value)

        def fn(tx: Tx) -> None:
            labels = _labels(tx, name)
            if value:
                labels[key] = value
            else:
                labels.pop(key, None)
            tx.execute(
                "UPDATE namespaces SET labels = ? WHERE name = ?", (labels_to_db(labels), name)
            )

        await self._db.update(fn)

    async def update(
        self, name: str, labels: Mapping[str, str] | None, fieldpaths: Sequence[str] = ()
    ) -> dict[str, str]:
        """Replace all labels (no ``fieldpaths``) or only ``labels.<key>`` paths. Returns the
        resulting labels."""
        labels = dict(labels or {})
        _validate_labels(labels)
        for path in fieldpaths:
            if not path.startswith("labels."):
                raise errdefs.InvalidArgument(f"cannot update {path!r} field on namespace {name!r}")

        def fn(tx: Tx) -> dict[str, str]:
            current = _labels(tx, name)
            if fieldpaths:
                for path in fieldpaths:
                    key = path[len("labels.") :]
                    if labels.get(key):
                        current[key] = labels[key]
                    else:
                        current.pop(key, None)
            else:
                current = {k: v for k, v in labels.items() if v}
            tx.execute(
                "UPDATE namespaces SET labels = ? WHERE name = ?", (labels_to_db(current), name)
            )
            return current

        result = await self._db.update(fn)
        await self._db.publish(
            name, events.TOPIC_NAMESPACE_UPDATE, events.NamespaceUpdate(name=name, labels=result)
        )
        return result

    async def delete(self, name: str) -> None:
        def fn(tx: Tx) -> None:
            if not _exists(tx, name):
                raise errdefs.NotFound(f"namespace {name!r}: not found")
            left = remaining(tx, name)
            if left:
                raise errdefs.FailedPrecondition(
                    f"namespace {name!r} must be empty, but it still has {', '.join(left)}"
                )
            tx.execute("DELETE FROM namespaces WHERE name = ?", (name,))

        await self._db.update(fn)
        await self._db.publish(
            name, events.TOPIC_NAMESPACE_DELETE, events.NamespaceDelete(name=name)
        )
