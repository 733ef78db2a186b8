"""The content store contract: value types and the small protocols every backend implements.

Lifecycle (as containerd's ``core/content``): an :class:`Ingester` opens a :class:`Writer`
for a ref; an :class:`IngestManager` lists and aborts ingests in progress; once committed,
a blob is read through a :class:`Provider` and managed (info, labels, walk, delete) through a
:class:`Manager`. Until committed, data is not visible through Provider or Manager; once
committed, it is no longer an ingest.

Digests are strings ``"<algorithm>:<hex>"`` (see :mod:`pycontainerd.core.content.digests`).
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

import attrs

from pycontainerd.core.content.descriptor import Descriptor


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _labels(value: Mapping[str, str] | None) -> dict[str, str]:
    return dict(value or {})


@attrs.frozen(kw_only=True)
class Info:
    """What is known about a committed blob."""

    digest: str
    size: int = 0
    created_at: datetime.datetime = attrs.field(factory=_utc_now)
    updated_at: datetime.datetime = attrs.field(factory=_utc_now)
    labels: dict[str, str] = attrs.field(factory=dict, converter=_labels)


@attrs.frozen(kw_only=True)
class Status:
    """The state of an ingest (a write in progress) identified by ``ref``."""

    ref: str
    offset: int = 0
    #: Expected size when known, else 0.
    total: int = 0
    #: Expected digest when known, else "".
    expected: str = ""
    started_at: datetime.datetime = attrs.field(factory=_utc_now)
    updated_at: datetime.datetime = attrs.field(factory=_utc_now)


@runtime_checkable
class ReaderAt(Protocol):
    """Random access to one committed blob."""

    @property
    def size(self) -> int: ...

    async def read_at(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes from ``offset``; fewer only at the end of the blob, ``b""`` at or
        past the end. A negative offset or size is InvalidArgument."""
        ...

    async def close(self) -> None:
        """Release the reader; closing twice is not an error."""
        ...


@runtime_checkable
class Writer(Protocol):
    """One open ingest. Writes append at the current offset."""

    async def write(self, data: bytes | bytearray | memoryview) -> int: ...

    def digest(self) -> str:
        """Digest of the bytes written so far."""
        ...

    def status(self) -> Status: ...

    async def commit(
        self, size: int = 0, expected: str = "", labels: Mapping[str, str] | None = None
    ) -> None:
        """Verify (``size``/``expected`` when non-zero) and make the blob visible.

        Always closes the writer, even on error. Mismatch -> FailedPrecondition; content
        already present -> AlreadyExists (and the ingest is removed)."""
        ...

    async def truncate(self, size: int) -> None:
        """Cut the ingest back to ``size`` bytes (the offset becomes ``size``)."""
        ...

    async def close(self) -> None:
        """Close without committing; the ingest stays and may be resumed or aborted.
        Closing twice is not an error."""
        ...


@runtime_checkable
class Provider(Protocol):
    async def reader_at(self, desc: Descriptor) -> ReaderAt:
        """A reader for ``desc.digest`` (only the digest is required); NotFound if absent."""
        ...


@runtime_checkable
class Ingester(Protocol):
    async def writer(self, ref: str, total: int = 0, expected: str = "") -> Writer:
        """Open (or resume) the ingest ``ref``. A ref already open elsewhere -> Unavailable;
        ``expected`` already committed -> AlreadyExists."""
        ...


@runtime_checkable
class InfoProvider(Protocol):
    async def info(self, dgst: str) -> Info:
        """Info of a committed blob; NotFound if absent."""
        ...


@runtime_checkable
class Manager(InfoProvider, Protocol):
    async def update(self, info: Info, fieldpaths: Sequence[str] | None = None) -> Info:
        """Update mutable fields (``labels``, ``labels.<key>``); all of them when
        ``fieldpaths`` is empty."""
        ...

    def walk(self, filters: Sequence[str] = ()) -> AsyncIterator[Info]:
        """Every committed blob matching any of ``filters`` (all when empty)."""
        ...

    async def delete(self, dgst: str) -> None:
        """Remove a committed blob; NotFound if absent."""
        ...


@runtime_checkable
class IngestManager(Protocol):
    async def status(self, ref: str) -> Status:
        """Status of the ingest ``ref``; NotFound if there is none."""
        ...

    async def list_statuses(self, filters: Sequence[str] = ()) -> list[Status]:
        """Active ingests matching any of ``filters`` (field ``ref``); all when empty."""
        ...

    async def abort(self, ref: str) -> None:
        """Remove the ingest ``ref`` and its data; NotFound if there is none."""
        ...


@runtime_checkable
class Store(Manager, Provider, IngestManager, Ingester, Protocol):
    """A complete content store."""
