"""Leases: the contract of the lease manager, its value types, and the current lease.

A lease pins resources (content, ingests, images, snapshots) against garbage collection while
it exists. The lease of a request travels in a context variable, set by server interceptors
from the ``containerd-lease`` gRPC metadata, or in process with :func:`use`. Stores that create
resources add them to the current lease.
"""

from __future__ import annotations

import builtins
import contextlib
import contextvars
import datetime
from collections.abc import Iterator, Mapping
from typing import Protocol

import attrs

from pycontainerd.core import errdefs

GRPC_HEADER = "containerd-lease"

#: Label on a lease (or image) with an RFC 3339 time after which it no longer protects anything.
LABEL_GC_EXPIRE = "containerd.io/gc.expire"
#: Label on a lease: keep the leased objects themselves but do not follow their references.
LABEL_GC_FLAT = "containerd.io/gc.flat"

#: Resource types accepted by :meth:`Manager.add_resource` (``snapshots/<snapshotter>`` too).
RESOURCE_CONTENT = "content"
RESOURCE_INGESTS = "ingests"
RESOURCE_IMAGES = "images"
RESOURCE_SNAPSHOTS = "snapshots"

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("lease", default=None)


def get() -> str | None:
    """The lease of the current request, or None."""
    return _current.get() or None


def set_current(lease_id: str | None) -> contextvars.Token[str | None]:
    return _current.set(lease_id)


def reset(token: contextvars.Token[str | None]) -> None:
    _current.reset(token)


@contextlib.contextmanager
def use(lease_id: str | None) -> Iterator[str | None]:
    """Run a block with ``lease_id`` as the current lease (None: without a lease)."""
    token = _current.set(lease_id)
    try:
        yield lease_id
    finally:
        _current.reset(token)


@attrs.frozen(kw_only=True)
class Lease:
    id: str
    created_at: datetime.datetime | None = None
    labels: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Resource:
    """A resource held by a lease: ``type`` is ``content``, ``ingests``, ``images`` or
    ``snapshots/<snapshotter>``; ``id`` a digest, ingest ref, image name or snapshot key."""

    id: str
    type: str


def parse_resource_type(type_: str) -> tuple[str, str]:
    """Split and validate a resource type: ``("content", "")``, ``("snapshots", "overlayfs")``.

    Raises InvalidArgument for a malformed type and NotImplemented for an unknown one, as
    containerd does.
    """
    kind, sep, rest = type_.partition("/")
    if kind in (RESOURCE_CONTENT, RESOURCE_INGESTS, RESOURCE_IMAGES):
        if sep:
            raise errdefs.InvalidArgument(f"invalid resource type {type_}")
        return kind, ""
    if kind == RESOURCE_SNAPSHOTS:
        if not rest or "/" in rest:
            raise errdefs.InvalidArgument(f"invalid snapshot resource type {type_}")
        return kind, rest
    raise errdefs.NotImplemented_(f"resource type {type_} not supported yet")


class Manager(Protocol):
    """The lease manager (containerd's ``leases.Manager``); namespaced by the context."""

    async def create(self, id: str, labels: Mapping[str, str] | None = None) -> Lease: ...

    async def delete(self, id: str, *, sync: bool = False) -> None: ...

    async def list(self, filters: list[str] | None = None) -> builtins.list[Lease]: ...

    async def add_resource(self, lease_id: str, resource: Resource) -> None: ...

    async def delete_resource(self, lease_id: str, resource: Resource) -> None: ...

    async def list_resources(self, lease_id: str) -> builtins.list[Resource]: ...
