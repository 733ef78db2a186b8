"""The namespaced content store: a view over one backend content store.

Blobs live once in the backend; the metadata database records which namespace has which blob
(with its labels), and which ingests are in progress in which namespace. A namespace sees only
blobs it has committed (or, under the ``shared`` policy, written again: a write of a digest the
backend already has records it without copying). With a lease in the context, a writer adds its
ingest to the lease, and a commit moves it to the committed blob.

Backend ingests are named ``<namespace>/<sequence>/<ref>`` so that namespaces never collide.
Garbage collection removes the records; :meth:`ContentStore.garbage_collect` then deletes
backend blobs and ingests no record refers to.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import AsyncIterator, Mapping, Sequence

import attrs

from pycontainerd.core import errdefs, filters, namespaces
from pycontainerd.core import leases as leases_
from pycontainerd.core.content import Descriptor, Info, ReaderAt, Status, Store, Writer, digests
from pycontainerd.core.content.adaptors import adapt_info, adapt_status
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

log = logging.getLogger(__name__)

POLICY_SHARED = "shared"
POLICY_ISOLATED = "isolated"
#: Namespace label: under the isolated policy, blobs of a namespace labelled "true" are shared.
LABEL_SHARED_NAMESPACE = "containerd.io/namespace.shareable"
#: How long an ingest outside any lease is protected from garbage collection.
INGEST_EXPIRY = datetime.timedelta(hours=24)


def _read_info(row: object) -> Info:
    return Info(
        digest=row["digest"],  # type: ignore[index]
        size=row["size"],  # type: ignore[index]
        labels=labels_from_db(row["labels"]),  # type: ignore[index]
        created_at=ts_from_db(row["created_at"]),  # type: ignore[index]
        updated_at=ts_from_db(row["updated_at"]),  # type: ignore[index]
    )


def _blob_row(tx: Tx, namespace: str, dgst: str) -> object | None:
    return tx.one("SELECT * FROM content WHERE namespace = ? AND digest = ?", (namespace, dgst))


def _is_shared_content(tx: Tx, dgst: str) -> bool:
    for row in tx.all(
        "SELECT n.labels FROM namespaces n JOIN content c ON c.namespace = n.name "
        "WHERE c.digest = ?",
        (dgst,),
    ):
        if labels_from_db(row["labels"]).get(LABEL_SHARED_NAMESPACE) == "true":
            return True
    return False


@attrs.define(eq=False)
class ContentStore:
    """Implements :class:`pycontainerd.core.content.Store`, namespaced by the context."""

    _db: DB
    backend: Store
    shared: bool = True
    _lock: RWLock = attrs.Factory(RWLock)

    # --- committed blobs ---------------------------------------------------------------

    async def info(self, dgst: str) -> Info:
        digests.validate(dgst)
        namespace = namespaces.required()

        def fn(tx: Tx) -> Info:
            row = _blob_row(tx, namespace, dgst)
            if row is None:
                raise errdefs.NotFound(f"content digest {dgst}: not found")
            return _read_info(row)

        return await self._db.view(fn)

    async def update(self, info: Info, fieldpaths: Sequence[str] | None = None) -> Info:
        digests.validate(info.digest)
        namespace = namespaces.required()
        paths = list(fieldpaths or ())

        def fn(tx: Tx) -> Info:
            row = _blob_row(tx, namespace, info.digest)
            if row is None:
                raise errdefs.NotFound(f"content digest {info.digest}: not found")
            current = _read_info(row)
            labels = update_labels(
                current.labels, info.labels, paths, f"content info {info.digest!r}"
            )
            updated = attrs.evolve(
                current, labels={k: v for k, v in labels.items() if v}, updated_at=now()
            )
            tx.execute(
                "UPDATE content SET labels = ?, updated_at = ? WHERE namespace = ? AND digest = ?",
                (
                    labels_to_db(updated.labels),
                    ts_to_db(updated.updated_at),
                    namespace,
                    info.digest,
                ),
            )
            return updated

        async with self._lock.read():
            return await self._db.update(fn)

    async def walk(self, filters_: Sequence[str] = ()) -> AsyncIterator[Info]:
        namespace = namespaces.required()
        flt = filters.parse_all(list(filters_))
        rows = await self._db.view(
            lambda tx: tx.all(
                "SELECT * FROM content WHERE namespace = ? ORDER BY digest", (namespace,)
            )
        )
        for row in rows:
            info = _read_info(row)
            if flt.match(adapt_info(info)):  # type: ignore[arg-type]
                yield info

    async def delete(self, dgst: str) -> None:
        digests.validate(dgst)
        namespace = namespaces.required()
        lease = leases_.get()

        def fn(tx: Tx) -> None:
            cur = tx.execute(
                "DELETE FROM content WHERE namespace = ? AND digest = ?", (namespace, dgst)
            )
            if cur.rowcount == 0:
                raise errdefs.NotFound(f"content digest {dgst}: not found")
            remove_from_lease(tx, namespace, lease, leases_.RESOURCE_CONTENT, dgst)
            tx.mark_dirty(content=True)

        async with self._lock.read():
            await self._db.update(fn)
        await self._db.publish(
            namespace, events.TOPIC_CONTENT_DELETE, events.ContentDelete(digest=dgst)
        )

    async def reader_at(self, desc: Descriptor) -> ReaderAt:
        await self.info(desc.digest)  # NotFound unless visible in this namespace
        return await self.backend.reader_at(desc)

    # --- ingests -------------------------------------------------------------------------

    async def _backend_ref(self, namespace: str, ref: str) -> str:
        row = await self._db.view(
            lambda tx: tx.one(
                "SELECT backend_ref FROM ingests WHERE namespace = ? AND ref = ?", (namespace, ref)
            )
        )
        if row is None:
            raise errdefs.NotFound(f"reference {ref}: not found")
        return str(row["backend_ref"])

    async def status(self, ref: str) -> Status:
        namespace = namespaces.required()
        bref = await self._backend_ref(namespace, ref)
        st = await self.backend.status(bref)
        return attrs.evolve(st, ref=ref)

    async def list_statuses(self, filters_: Sequence[str] = ()) -> list[Status]:
        namespace = namespaces.required()
        flt = filters.parse_all(list(filters_))
        rows = await self._db.view(
            lambda tx: tx.all(
                "SELECT ref, backend_ref FROM ingests WHERE namespace = ? ORDER BY ref",
                (namespace,),
            )
        )
        out: list[Status] = []
        for row in rows:
            try:
                st = await self.backend.status(row["backend_ref"])
            except errdefs.NotFound:
                continue
            st = attrs.evolve(st, ref=row["ref"])
            if flt.match(adapt_status(st)):  # type: ignore[arg-type]
                out.append(st)
        return out

    async def abort(self, ref: str) -> None:
        namespace = namespaces.required()
        lease = leases_.get()

        def fn(tx: Tx) -> tuple[str, str]:
            row = tx.one(
                "SELECT backend_ref, expected FROM ingests WHERE namespace = ? AND ref = ?",
                (namespace, ref),
            )
            if row is None:
                raise errdefs.NotFound(f"reference {ref}: not found")
            tx.execute("DELETE FROM ingests WHERE namespace = ? AND ref = ?", (namespace, ref))
            remove_from_lease(tx, namespace, lease, leases_.RESOURCE_INGESTS, ref)
            return str(row["backend_ref"]), str(row["expected"])

        async with self._lock.read():
            bref, expected = await self._db.update(fn)
            if not expected:
                try:
                    await self.backend.abort(bref)
                except errdefs.NotFound:
                    pass

    async def writer(self, ref: str, total: int = 0, expected: str = "") -> Writer:
        """Open (or resume) the ingest ``ref`` in the current namespace. AlreadyExists if the
        namespace already has ``expected`` (the blob is then added to the current lease)."""
        if not ref:
            raise errdefs.InvalidArgument("ref must not be empty")
        namespace = namespaces.required()
        lease = leases_.get()
        async with self._lock.read():
            backend_size: int | None = None
            if expected:
                try:
                    backend_size = (await self.backend.info(expected)).size
                except errdefs.NotFound:
                    backend_size = None

            def fn(tx: Tx) -> tuple[bool, str, bool, bool]:
                """-> (exists, backend ref, shared, created)"""
                if expected and _blob_row(tx, namespace, expected) is not None:
                    add_to_lease(tx, namespace, lease, leases_.RESOURCE_CONTENT, expected)
                    return True, "", False, False
                shared = False
                if (
                    expected
                    and backend_size is not None
                    and (self.shared or _is_shared_content(tx, expected))
                    and (total == 0 or total == backend_size)
                ):
                    shared = True
                tx.ensure_namespace(namespace)
                row = tx.one(
                    "SELECT backend_ref FROM ingests WHERE namespace = ? AND ref = ?",
                    (namespace, ref),
                )
                created = row is None
                if created:
                    bref = f"{namespace}/{tx.next_sequence('ingests')}/{ref}"
                    tx.execute(
                        "INSERT INTO ingests(namespace, ref, backend_ref) VALUES (?, ?, ?)",
                        (namespace, ref, bref),
                    )
                else:
                    bref = str(row["backend_ref"])  # type: ignore[index]
                if lease:
                    add_to_lease(tx, namespace, lease, leases_.RESOURCE_INGESTS, ref)
                else:
                    tx.execute(
                        "UPDATE ingests SET expire_at = ? WHERE namespace = ? AND ref = ?",
                        (ts_to_db(now() + INGEST_EXPIRY), namespace, ref),
                    )
                if shared:
                    tx.execute(
                        "UPDATE ingests SET expected = ? WHERE namespace = ? AND ref = ?",
                        (expected, namespace, ref),
                    )
                return False, bref, shared, created

            exists, bref, shared, created = await self._db.update(fn)
            if exists:
                raise errdefs.AlreadyExists(f"content {expected}: already exists")
            w = _NamespacedWriter(
                store=self,
                namespace=namespace,
                ref=ref,
                bref=bref,
                desc=Descriptor(digest=expected or "", size=backend_size or total),
            )
            if not shared:
                try:
                    w.inner = await self.backend.writer(bref, total=total)
                except BaseException:
                    if created:
                        await self._db.update(
                            lambda tx: tx.execute(
                                "DELETE FROM ingests WHERE namespace = ? AND ref = ?",
                                (namespace, ref),
                            )
                        )
                    raise
            return w

    # --- garbage collection ----------------------------------------------------------------

    async def garbage_collect(self) -> None:
        """Delete backend blobs and ingests that no namespace's record refers to."""
        async with self._lock.write():

            def fn(tx: Tx) -> tuple[set[str], set[str]]:
                blobs = {r["digest"] for r in tx.all("SELECT DISTINCT digest FROM content")}
                refs: set[str] = set()
                for r in tx.all("SELECT backend_ref, expected FROM ingests"):
                    refs.add(r["backend_ref"])
                    if r["expected"]:
                        blobs.add(r["expected"])
                return blobs, refs

            seen_blobs, seen_refs = await self._db.view(fn)
            doomed = [
                info.digest async for info in self.backend.walk() if info.digest not in seen_blobs
            ]
            for dgst in doomed:
                try:
                    await self.backend.delete(dgst)
                    log.debug("removed content %s", dgst)
                except errdefs.NotFound:
                    pass
            for st in await self.backend.list_statuses():
                if st.ref not in seen_refs:
                    try:
                        await self.backend.abort(st.ref)
                        log.debug("cleanup aborting ingest %s", st.ref)
                    except errdefs.NotFound:
                        pass


@attrs.define(eq=False, kw_only=True)
class _NamespacedWriter:
    """A writer whose commit records the blob in its namespace."""

    store: ContentStore
    namespace: str
    ref: str
    bref: str
    desc: Descriptor
    inner: Writer | None = None
    started: datetime.datetime = attrs.Factory(now)

    async def _create_and_copy(self, size: int) -> None:
        backend = self.store.backend
        w = await backend.writer(self.bref, total=self.desc.size)
        try:
            if size > 0:
                reader = await backend.reader_at(self.desc)
                try:
                    offset = 0
                    while offset < size:
                        chunk = await reader.read_at(offset, min(1 << 20, size - offset))
                        if not chunk:
                            break
                        await w.write(chunk)
                        offset += len(chunk)
                finally:
                    await reader.close()
        except BaseException:
            await w.close()
            raise
        self.inner = w

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.inner is None:
            if not data:
                return 0
            await self._create_and_copy(self.desc.size)
        assert self.inner is not None
        return await self.inner.write(data)

    def digest(self) -> str:
        return self.inner.digest() if self.inner is not None else self.desc.digest

    def status(self) -> Status:
        if self.inner is not None:
            return attrs.evolve(self.inner.status(), ref=self.ref)
        return Status(
            ref=self.ref,
            offset=self.desc.size,
            total=self.desc.size,
            expected=self.desc.digest,
            started_at=self.started,
            updated_at=self.started,
        )

    async def truncate(self, size: int) -> None:
        if self.inner is not None:
            await self.inner.truncate(size)
            return
        await self._create_and_copy(size)

    async def close(self) -> None:
        if self.inner is not None:
            await self.inner.close()

    async def commit(
        self, size: int = 0, expected: str = "", labels: Mapping[str, str] | None = None
    ) -> None:
        store = self.store
        namespace = self.namespace
        lease = leases_.get()
        labels = {k: v for k, v in (labels or {}).items() if v}
        try:
            validate_labels(labels, "info.labels")
        except errdefs.InvalidArgument:
            await self.close()
            raise
        async with store._lock.read():
            if self.inner is None:
                if size and size != self.desc.size:
                    raise errdefs.FailedPrecondition(
                        f"{self.ref!r} failed size validation: {self.desc.size} != {size}"
                    )
                if expected and expected != self.desc.digest:
                    raise errdefs.FailedPrecondition(f"{self.ref!r} unexpected digest")
                size = self.desc.size
                actual = self.desc.digest
            else:
                offset = self.inner.status().offset
                if size and size != offset:
                    await self.inner.close()
                    raise errdefs.FailedPrecondition(
                        f"{self.ref!r} failed size validation: {offset} != {size}"
                    )
                size = offset
                try:
                    await self.inner.commit(size, expected)
                except errdefs.AlreadyExists:
                    pass
                actual = self.inner.digest()

            def fn(tx: Tx) -> bool:
                exists = _blob_row(tx, namespace, actual) is not None
                if not exists:
                    t = ts_to_db(now())
                    tx.ensure_namespace(namespace)
                    tx.execute(
                        "INSERT INTO content(namespace, digest, size, labels, created_at, "
                        "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (namespace, actual, size, labels_to_db(labels), t, t),
                    )
                tx.execute(
                    "DELETE FROM ingests WHERE namespace = ? AND ref = ?", (namespace, self.ref)
                )
                remove_from_lease(tx, namespace, lease, leases_.RESOURCE_INGESTS, self.ref)
                add_to_lease(tx, namespace, lease, leases_.RESOURCE_CONTENT, actual)
                return exists

            exists = await store._db.update(fn)
        if exists:
            raise errdefs.AlreadyExists(f"content {actual}: already exists")
        await store._db.publish(
            namespace, events.TOPIC_CONTENT_CREATE, events.ContentCreate(digest=actual, size=size)
        )
