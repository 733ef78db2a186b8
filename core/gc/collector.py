"""Mark and sweep over the metadata graph, with containerd's roots and reference labels.

Roots, per namespace:

* every lease that has not expired (``containerd.io/gc.expire``, RFC 3339), and everything it
  holds: content, ingests, images, snapshots (a ``containerd.io/gc.flat`` lease keeps only
  those objects, not what they reference);
* every image without an expired ``containerd.io/gc.expire`` label;
* every container (its snapshot and label references follow);
* content and snapshots labelled ``containerd.io/gc.root``;
* ingests whose expiry is still in the future;
* label references of sandboxes.

References: an image -> its target blob; a snapshot -> its parent; an ingest -> the blob it
is expected to become; a container -> its snapshot; and labels on images, content, snapshots,
containers and sandboxes: ``containerd.io/gc.ref.content`` (and ``...content.<anything>`` or
``...content/<anything>``) -> a blob, ``containerd.io/gc.ref.snapshot.<snapshotter>`` -> a
snapshot, ``containerd.io/gc.ref.image`` (and suffixed forms) -> an image.

Swept: leases, snapshots, ingests, content records and images that were not reached.
Containers and sandboxes are never collected. Back-reference (``gc.bref.*``) and conditional
(``gc.cond.*``) labels are not implemented yet.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator, Mapping

import attrs

from pycontainerd.core.gc import Node, ResourceType, tricolor
from pycontainerd.core.metadata import events
from pycontainerd.core.metadata.db import Tx, labels_from_db, ts_from_db

log = logging.getLogger(__name__)

LABEL_GC_ROOT = "containerd.io/gc.root"
LABEL_GC_REF_CONTENT = "containerd.io/gc.ref.content"
LABEL_GC_REF_IMAGE = "containerd.io/gc.ref.image"
LABEL_GC_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."
LABEL_GC_EXPIRE = "containerd.io/gc.expire"
LABEL_GC_FLAT = "containerd.io/gc.flat"

CONTENT = int(ResourceType.CONTENT)
SNAPSHOT = int(ResourceType.SNAPSHOT)
CONTAINER = int(ResourceType.CONTAINER)
IMAGE = int(ResourceType.IMAGE)
LEASE = int(ResourceType.LEASE)
INGEST = int(ResourceType.INGEST)
FLAT = 0x20


def _named_ref(key: str, prefix: str) -> bool:
    """``prefix`` itself, or ``prefix`` followed by ``.`` or ``/`` and a name."""
    return key == prefix or (key.startswith(prefix) and key[len(prefix)] in "./")


def label_refs(namespace: str, labels: Mapping[str, str]) -> Iterator[Node]:
    """The nodes the reference labels in ``labels`` point at."""
    for key in sorted(labels):
        value = labels[key]
        if not value:
            continue
        if _named_ref(key, LABEL_GC_REF_CONTENT):
            yield Node(CONTENT, namespace, value)
        elif _named_ref(key, LABEL_GC_REF_IMAGE):
            yield Node(IMAGE, namespace, value)
        elif key.startswith(LABEL_GC_REF_SNAPSHOT):
            snapshotter = key[len(LABEL_GC_REF_SNAPSHOT) :].split("/", 1)[0]
            if snapshotter:
                yield Node(SNAPSHOT, namespace, f"{snapshotter}/{value}")


def _parse_time(value: str) -> datetime.datetime | None:
    try:
        t = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        return None
    return t


def _expired(labels: Mapping[str, str], now: datetime.datetime, what: str) -> bool:
    value = labels.get(LABEL_GC_EXPIRE)
    if value is None:
        return False
    t = _parse_time(value)
    if t is None:
        log.info("ignoring invalid expiration value %r on %s", value, what)
        return False
    return now > t


@attrs.define
class _Graph:
    """The metadata loaded once for one collection."""

    images: dict[tuple[str, str], tuple[str, dict[str, str]]] = attrs.Factory(dict)
    content: dict[tuple[str, str], dict[str, str]] = attrs.Factory(dict)
    snapshots: dict[tuple[str, str], tuple[str, dict[str, str]]] = attrs.Factory(dict)
    ingests: dict[tuple[str, str], tuple[str, datetime.datetime | None]] = attrs.Factory(dict)
    containers: dict[tuple[str, str], tuple[str, dict[str, str]]] = attrs.Factory(dict)
    sandboxes: dict[tuple[str, str], dict[str, str]] = attrs.Factory(dict)
    leases: dict[tuple[str, str], dict[str, str]] = attrs.Factory(dict)
    lease_resources: dict[tuple[str, str], list[tuple[str, str, str]]] = attrs.Factory(dict)

    @classmethod
    def load(cls, tx: Tx) -> _Graph:
        g = cls()
        for r in tx.all("SELECT namespace, name, digest, labels FROM images"):
            g.images[(r["namespace"], r["name"])] = (r["digest"], labels_from_db(r["labels"]))
        for r in tx.all("SELECT namespace, digest, labels FROM content"):
            g.content[(r["namespace"], r["digest"])] = labels_from_db(r["labels"])
        for r in tx.all("SELECT namespace, snapshotter, key, parent, labels FROM snapshots"):
            g.snapshots[(r["namespace"], f"{r['snapshotter']}/{r['key']}")] = (
                r["parent"],
                labels_from_db(r["labels"]),
            )
        for r in tx.all("SELECT namespace, ref, expected, expire_at FROM ingests"):
            g.ingests[(r["namespace"], r["ref"])] = (r["expected"], ts_from_db(r["expire_at"]))
        for r in tx.all("SELECT namespace, id, snapshotter, snapshot_key, labels FROM containers"):
            snap = f"{r['snapshotter']}/{r['snapshot_key']}" if r["snapshotter"] else ""
            g.containers[(r["namespace"], r["id"])] = (snap, labels_from_db(r["labels"]))
        for r in tx.all("SELECT namespace, id, labels FROM sandboxes"):
            g.sandboxes[(r["namespace"], r["id"])] = labels_from_db(r["labels"])
        for r in tx.all("SELECT namespace, id, labels FROM leases"):
            g.leases[(r["namespace"], r["id"])] = labels_from_db(r["labels"])
        for r in tx.all("SELECT namespace, lease, kind, snapshotter, id FROM lease_resources"):
            g.lease_resources.setdefault((r["namespace"], r["lease"]), []).append(
                (r["kind"], r["snapshotter"], r["id"])
            )
        return g

    def roots(self, now: datetime.datetime) -> Iterator[Node]:
        for (ns, lid), labels in self.leases.items():
            if _expired(labels, now, f"lease {lid!r}"):
                log.debug("expired lease %s", lid, extra={"namespace": ns})
                continue
            flat = FLAT if LABEL_GC_FLAT in labels else 0
            yield Node(LEASE, ns, lid)
            for kind, snapshotter, rid in self.lease_resources.get((ns, lid), []):
                if kind == "content":
                    yield Node(CONTENT | flat, ns, rid)
                elif kind == "snapshots":
                    yield Node(SNAPSHOT | flat, ns, f"{snapshotter}/{rid}")
                elif kind == "ingests":
                    yield Node(INGEST, ns, rid)
                elif kind == "images":
                    yield Node(IMAGE | flat, ns, rid)
        for (ns, name), (_, labels) in self.images.items():
            if not _expired(labels, now, f"image {name!r}"):
                yield Node(IMAGE, ns, name)
        for (ns, ref), (_, expire_at) in self.ingests.items():
            if expire_at is not None and expire_at > now:
                yield Node(INGEST, ns, ref)
        for (ns, dgst), labels in self.content.items():
            if labels.get(LABEL_GC_ROOT):
                yield Node(CONTENT, ns, dgst)
        for ns, cid in self.containers:
            yield Node(CONTAINER, ns, cid)
        for (ns, key), (_, labels) in self.snapshots.items():
            if labels.get(LABEL_GC_ROOT):
                yield Node(SNAPSHOT, ns, key)
        for (ns, _), labels in self.sandboxes.items():
            yield from label_refs(ns, labels)

    def references(self, node: Node) -> Iterator[Node]:
        ns, key, flat = node.namespace, node.key, node.type & FLAT
        base = node.type & ~FLAT
        if node.type == CONTENT:
            labels = self.content.get((ns, key))
            if labels:
                yield from label_refs(ns, labels)
        elif base == SNAPSHOT:
            record = self.snapshots.get((ns, key))
            if record is None:
                return
            parent, labels = record
            if parent:
                snapshotter = key.split("/", 1)[0]
                yield Node(node.type, ns, f"{snapshotter}/{parent}")
            if not flat:
                yield from label_refs(ns, labels)
        elif base == IMAGE:
            image = self.images.get((ns, key))
            if image is None:
                return
            target, labels = image
            yield Node(CONTENT | flat, ns, target)
            if not flat:
                yield from label_refs(ns, labels)
        elif node.type == INGEST:
            ingest = self.ingests.get((ns, key))
            if ingest is not None and ingest[0]:
                yield Node(CONTENT, ns, ingest[0])
        elif node.type == CONTAINER:
            container = self.containers.get((ns, key))
            if container is None:
                return
            snap, labels = container
            if snap:
                yield Node(SNAPSHOT, ns, snap)
            yield from label_refs(ns, labels)

    def all(self) -> Iterator[Node]:
        for ns, lid in self.leases:
            yield Node(LEASE, ns, lid)
        for ns, key in self.snapshots:
            yield Node(SNAPSHOT, ns, key)
        for ns, ref in self.ingests:
            yield Node(INGEST, ns, ref)
        for ns, dgst in self.content:
            yield Node(CONTENT, ns, dgst)
        for ns, name in self.images:
            yield Node(IMAGE, ns, name)


@attrs.frozen(kw_only=True)
class SweepResult:
    removed: list[Node]
    #: (namespace, topic, event) to publish after the commit.
    events: list[tuple[str, str, object]]
    dirty_content: bool
    dirty_snapshotters: set[str]


def mark_and_sweep(tx: Tx, now: datetime.datetime | None = None) -> SweepResult:
    """Mark from the roots and delete every unreachable record, in one write transaction."""
    now = now or datetime.datetime.now(datetime.UTC)
    graph = _Graph.load(tx)
    marked = tricolor(graph.roots(now), graph.references)
    removed: list[Node] = []
    evts: list[tuple[str, str, object]] = []
    dirty_content = False
    dirty_snapshotters: set[str] = set()
    for node in graph.all():
        if node in marked:
            continue
        ns, key = node.namespace, node.key
        removed.append(node)
        if node.type == LEASE:
            tx.execute("DELETE FROM leases WHERE namespace = ? AND id = ?", (ns, key))
        elif node.type == SNAPSHOT:
            snapshotter, skey = key.split("/", 1)
            tx.execute(
                "DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
                (ns, snapshotter, skey),
            )
            dirty_snapshotters.add(snapshotter)
            evts.append(
                (
                    ns,
                    events.TOPIC_SNAPSHOT_REMOVE,
                    events.SnapshotRemove(key=skey, snapshotter=snapshotter),
                )
            )
            log.debug("remove snapshot %s", key, extra={"namespace": ns})
        elif node.type == INGEST:
            tx.execute("DELETE FROM ingests WHERE namespace = ? AND ref = ?", (ns, key))
            dirty_content = True
            log.debug("remove ingest %s", key, extra={"namespace": ns})
        elif node.type == CONTENT:
            tx.execute("DELETE FROM content WHERE namespace = ? AND digest = ?", (ns, key))
            dirty_content = True
            log.debug("remove content %s", key, extra={"namespace": ns})
        elif node.type == IMAGE:
            tx.execute("DELETE FROM images WHERE namespace = ? AND name = ?", (ns, key))
            evts.append((ns, events.TOPIC_IMAGE_DELETE, events.ImageDelete(name=key)))
            log.debug("remove image %s", key, extra={"namespace": ns})
    return SweepResult(
        removed=removed,
        events=evts,
        dirty_content=dirty_content,
        dirty_snapshotters=dirty_snapshotters,
    )
