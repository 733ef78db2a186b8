"""The metadata service as a whole: the database, its stores, the namespaced views over the
backends, and garbage collection. This is what the ``io.containerd.metadata.v1.bolt`` plugin
returns and what services, the lease manager and the GC scheduler use."""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Mapping

import attrs

from pycontainerd.core import content as content_
from pycontainerd.core import snapshots as snapshots_
from pycontainerd.core.gc import Stats
from pycontainerd.core.gc.collector import mark_and_sweep
from pycontainerd.core.metadata.containers import ContainerStore
from pycontainerd.core.metadata.content import ContentStore
from pycontainerd.core.metadata.db import DB, Publisher
from pycontainerd.core.metadata.images import ImageStore
from pycontainerd.core.metadata.leases import LeaseManager
from pycontainerd.core.metadata.namespaces import NamespaceStore
from pycontainerd.core.metadata.sandboxes import SandboxStore
from pycontainerd.core.metadata.snapshots import Snapshotter

log = logging.getLogger(__name__)


@attrs.define(eq=False)
class Metadata:
    db: DB
    content_store: ContentStore | None = None
    snapshotters: dict[str, Snapshotter] = attrs.Factory(dict)
    namespaces: NamespaceStore = attrs.field(init=False)
    images: ImageStore = attrs.field(init=False)
    containers: ContainerStore = attrs.field(init=False)
    leases: LeaseManager = attrs.field(init=False)
    sandboxes: SandboxStore = attrs.field(init=False)
    _gc_lock: asyncio.Lock = attrs.field(init=False, factory=asyncio.Lock)

    def __attrs_post_init__(self) -> None:
        self.namespaces = NamespaceStore(self.db)
        self.images = ImageStore(self.db)
        self.containers = ContainerStore(self.db)
        self.leases = LeaseManager(self.db)
        self.sandboxes = SandboxStore(self.db)

    @classmethod
    async def open(
        cls,
        path: str,
        *,
        content: content_.Store | None = None,
        snapshotters: Mapping[str, snapshots_.Snapshotter] | None = None,
        shared_content: bool = True,
        no_sync: bool = False,
        publisher: Publisher | None = None,
    ) -> Metadata:
        db = await DB.open(path, no_sync=no_sync, publisher=publisher)
        m = cls(db)
        if content is not None:
            m.content_store = ContentStore(db, content, shared=shared_content)
        for name, sn in (snapshotters or {}).items():
            m.snapshotters[name] = Snapshotter(db, name, sn)
        return m

    def register_mutation_callback(self, fn: Callable[[bool], None]) -> None:
        self.db.register_mutation_callback(fn)

    def snapshotter(self, name: str) -> Snapshotter | None:
        return self.snapshotters.get(name)

    async def garbage_collect(self, now: datetime.datetime | None = None) -> Stats:
        """Remove every record nothing holds, then the backend objects no record refers to.
        Collections never overlap."""
        async with self._gc_lock:
            db = self.db
            t0 = time.monotonic()
            before = db.dirty
            dirty_content, db.dirty_content = db.dirty_content, False
            dirty_snapshotters, db.dirty_snapshotters = db.dirty_snapshotters, set()
            result = await db.update(lambda tx: mark_and_sweep(tx, now))
            db.dirty = max(0, db.dirty - before)
            stats = Stats(removed=result.removed)
            stats.meta_duration = time.monotonic() - t0

            for ns, topic, event in result.events:
                await db.publish(ns, topic, event)

            names = (
                set(self.snapshotters)
                if dirty_snapshotters is None
                else dirty_snapshotters | result.dirty_snapshotters
            )
            jobs = [self._clean_snapshotter(name, stats) for name in sorted(names)]
            if dirty_content or result.dirty_content:
                jobs.append(self._clean_content(stats))
            await asyncio.gather(*jobs)
            return stats

    async def _clean_snapshotter(self, name: str, stats: Stats) -> None:
        sn = self.snapshotters.get(name)
        if sn is None:
            return
        t0 = time.monotonic()
        try:
            await sn.garbage_collect()
        except Exception as exc:  # noqa: BLE001 - retried at the next collection
            log.warning("snapshot garbage collection failed: %s", exc, extra={"snapshotter": name})
            self.db.dirty_snapshotters = (self.db.dirty_snapshotters or set()) | {name}
            return
        stats.snapshot_durations[name] = time.monotonic() - t0

    async def _clean_content(self, stats: Stats) -> None:
        if self.content_store is None:
            return
        t0 = time.monotonic()
        try:
            await self.content_store.garbage_collect()
        except Exception as exc:  # noqa: BLE001 - retried at the next collection
            log.warning("content garbage collection failed: %s", exc)
            self.db.dirty_content = True
            return
        stats.content_duration = time.monotonic() - t0

    async def close(self) -> None:
        await self.db.close()
