"""Garbage collection: containerd's tri-colour mark and sweep.

This package holds the generic part (resource nodes, :func:`tricolor`, statistics) and, in
:mod:`.collector`, the collection over the metadata graph: which objects are roots, which
labels are references, and what is removed. The scheduler that decides *when* to collect is
the ``io.containerd.gc.v1.scheduler`` plugin.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable

import attrs


class ResourceType(enum.IntEnum):
    """Resource types, numbered as containerd's (flat variants add :data:`FLAT`)."""

    UNKNOWN = 0
    CONTENT = 1
    SNAPSHOT = 2
    CONTAINER = 3
    TASK = 4
    IMAGE = 5
    LEASE = 6
    INGEST = 7


#: Flag on a node type: keep the object, but do not follow its references.
FLAT = 0x20
#: Bits above this are the caller's; they are stripped when a node is marked.
RESOURCE_MAX = 0x1F


@attrs.frozen
class Node:
    """One collectable object. ``type`` is a :class:`ResourceType` value, possibly with
    :data:`FLAT` set; ``key`` is a digest, name, id, ingest ref, or ``<snapshotter>/<key>``."""

    type: int
    namespace: str
    key: str

    def flat(self) -> Node:
        return Node(self.type | FLAT, self.namespace, self.key)

    def stripped(self) -> Node:
        return Node(self.type & RESOURCE_MAX, self.namespace, self.key)


def tricolor(roots: Iterable[Node], refs: Callable[[Node], Iterable[Node]]) -> set[Node]:
    """Every node reachable from ``roots`` through ``refs``, with the caller's flag bits
    stripped. ``refs`` is called once per distinct node (flat and non-flat variants of one
    object are distinct until marked)."""
    grays: list[Node] = []
    seen: set[Node] = set()
    for root in roots:
        if root not in seen:
            seen.add(root)
            grays.append(root)
    reachable: set[Node] = set()
    while grays:
        node = grays.pop()
        for target in refs(node):
            if target not in seen:
                seen.add(target)
                grays.append(target)
        reachable.add(node.stripped())
    return reachable


@attrs.define(kw_only=True)
class Stats:
    """What one collection did and how long its phases took (seconds)."""

    #: Mark and sweep of the metadata (the part that blocks writers).
    meta_duration: float = 0.0
    content_duration: float = 0.0
    snapshot_durations: dict[str, float] = attrs.Factory(dict)
    #: Nodes removed from the metadata, by type.
    removed: list[Node] = attrs.Factory(list)

    def elapsed(self) -> float:
        return self.meta_duration

    def removed_of(self, type_: ResourceType) -> list[Node]:
        return [n for n in self.removed if n.type == type_]
