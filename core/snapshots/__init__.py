"""The snapshotter contract: value types and the :class:`Snapshotter` protocol.

A snapshotter keeps a tree of filesystem snapshots. ``prepare`` creates an *active* snapshot
(writable) on top of an optional *committed* parent, ``view`` a read-only one, ``commit`` turns
an active snapshot into a committed one under a new name (the active key is gone afterwards),
and ``remove`` deletes a snapshot that has no children. Callers get :class:`Mount` lists and
mount them themselves. Keys and names share one namespace per snapshotter.

Every backend (``native``, ``overlayfs``, a proxy over gRPC, a third party's) runs the same
conformance suite, :mod:`pycontainerd.core.snapshots.testsuite`.
"""

from __future__ import annotations

import datetime as _dt
import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.mount import Mount

#: Prefix of the keys an unpacker uses for the snapshots it extracts layers into.
UNPACK_KEY_PREFIX = "extract"
#: Only labels under this prefix are carried from a snapshot to the snapshot made from it.
INHERITED_LABELS_PREFIX = "containerd.io/snapshot/"
#: Set by an unpacker on the extraction ``prepare`` to the target chain ID (remote snapshots).
LABEL_SNAPSHOT_REF = "containerd.io/snapshot.ref"
LABEL_SNAPSHOT_UIDMAPPING = "containerd.io/snapshot/uidmapping"
LABEL_SNAPSHOT_GIDMAPPING = "containerd.io/snapshot/gidmapping"


class Kind(enum.IntEnum):
    """A snapshot's kind; the numbers are containerd's (and its protobuf enum's)."""

    UNKNOWN = 0
    VIEW = 1
    ACTIVE = 2
    COMMITTED = 3

    @classmethod
    def parse(cls, text: str) -> Kind:
        """``"active"`` -> ACTIVE, case-insensitive; anything unknown -> UNKNOWN."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            return cls.UNKNOWN

    def __str__(self) -> str:
        return self.name.capitalize()

    @property
    def filter_value(self) -> str:
        """The value the ``kind`` filter field compares with: active, view, committed."""
        return self.name.lower()


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _labels(value: Mapping[str, str] | None) -> dict[str, str]:
    return dict(value or {})


@attrs.frozen(kw_only=True)
class Info:
    """What a snapshotter records about one snapshot. ``name`` is the key (active/view) or the
    committed name; ``parent`` is the committed name it descends from, or ""."""

    name: str
    kind: Kind = Kind.UNKNOWN
    parent: str = ""
    labels: dict[str, str] = attrs.field(factory=dict, converter=_labels)
    created_at: _dt.datetime = attrs.field(factory=_utcnow)
    updated_at: _dt.datetime = attrs.field(factory=_utcnow)


@attrs.frozen(kw_only=True)
class Usage:
    """Resources used by one snapshot, excluding its parents."""

    inodes: int = 0
    size: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(inodes=self.inodes + other.inodes, size=self.size + other.size)


@runtime_checkable
class Snapshotter(Protocol):
    """What every snapshotter provides. All methods are coroutines except :meth:`walk`, which
    returns an async iterator (an ``async def`` generator satisfies it)."""

    async def stat(self, key: str) -> Info:
        """Info of an active, view or committed snapshot; NotFound if there is none."""
        ...

    async def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        """Change the mutable properties (labels) of ``info.name``.

        ``fieldpaths`` empty: replace all labels. ``labels``: same. ``labels.<k>``: set label
        ``k`` to ``info.labels[k]``, or delete it when absent. Anything else: InvalidArgument.
        Returns the stored info after the update.
        """
        ...

    async def usage(self, key: str) -> Usage:
        """Disk usage of the snapshot itself, without its parents."""
        ...

    async def mounts(self, key: str) -> list[Mount]:
        """The mounts of an active or view snapshot (as returned by prepare/view)."""
        ...

    async def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Create an active snapshot ``key`` on the committed ``parent`` ("" = empty)."""
        ...

    async def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Create a read-only view ``key`` of the committed ``parent``; it cannot be committed."""
        ...

    async def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Turn active ``key`` into committed ``name`` (same parent); ``key`` disappears."""
        ...

    async def remove(self, key: str) -> None:
        """Remove a snapshot and its data; FailedPrecondition while it has children."""
        ...

    def walk(self, filters: Sequence[str] = ()) -> AsyncIterator[Info]:
        """Every snapshot matching any of ``filters`` (containerd filter syntax; fields
        ``kind``, ``name``, ``parent``, ``labels.<k>``); empty = all."""
        ...

    async def close(self) -> None:
        """Release resources. Calling it twice is fine."""
        ...


@runtime_checkable
class Cleaner(Protocol):
    """Optional: a snapshotter that can reclaim disk space left behind (crash leftovers,
    removed snapshots whose directories were kept for speed)."""

    async def cleanup(self) -> None: ...


def filter_inherited_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """The labels that travel from one snapshot to the next: those under
    ``containerd.io/snapshot/`` plus :data:`LABEL_SNAPSHOT_REF`."""
    if not labels:
        return {}
    return {
        k: v
        for k, v in labels.items()
        if k.startswith(INHERITED_LABELS_PREFIX) or k == LABEL_SNAPSHOT_REF
    }


def adaptor(info: Info) -> Any:
    """A filter adaptor for ``info``: field path list -> (value, present)."""

    def field(path: Sequence[str]) -> tuple[str, bool]:
        if not path:
            return "", False
        head = path[0]
        if head == "kind":
            if info.kind is Kind.UNKNOWN:
                return "", False
            return info.kind.filter_value, True
        if head == "name":
            return info.name, True
        if head == "parent":
            return info.parent, True
        if head == "labels":
            key = ".".join(path[1:])
            if key in info.labels:
                return info.labels[key], True
            return "", False
        return "", False

    return field


def apply_update(current: Info, info: Info, fieldpaths: Sequence[str], now: _dt.datetime) -> Info:
    """The info that results from ``update(info, fieldpaths)`` on ``current`` (shared by every
    store so that all snapshotters treat field paths alike)."""
    labels = dict(current.labels)
    if not fieldpaths:
        labels = dict(info.labels)
    for path in fieldpaths:
        if path.startswith("labels."):
            key = path[len("labels.") :]
            if key in info.labels:
                labels[key] = info.labels[key]
            else:
                labels.pop(key, None)
        elif path == "labels":
            labels = dict(info.labels)
        else:
            raise errdefs.InvalidArgument(
                f'cannot update "{path}" field on snapshot "{current.name}"'
            )
    return attrs.evolve(current, labels=labels, updated_at=now)


__all__ = [
    "INHERITED_LABELS_PREFIX",
    "LABEL_SNAPSHOT_GIDMAPPING",
    "LABEL_SNAPSHOT_REF",
    "LABEL_SNAPSHOT_UIDMAPPING",
    "UNPACK_KEY_PREFIX",
    "Cleaner",
    "Info",
    "Kind",
    "Mount",
    "Snapshotter",
    "Usage",
    "adaptor",
    "apply_update",
    "filter_inherited_labels",
]
