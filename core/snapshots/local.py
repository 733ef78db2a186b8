"""Machinery shared by snapshotters that keep their data in ``<root>/snapshots/<id>`` beside a
``<root>/metadata.db`` metastore (native, overlayfs, and third parties that want the same).

A subclass says how a new snapshot's directory is filled (:meth:`LocalSnapshotter._populate`),
which mounts a snapshot has (:meth:`LocalSnapshotter._mounts`) and where its own data lives
for usage accounting (:meth:`LocalSnapshotter._data_path`). Creation is crash-safe: the
directory is built under a temporary name and renamed to its id inside the metastore
transaction; a crash can leave at most a directory without a record, which :meth:`cleanup` (and
opening) removes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.mount import Mount
from pycontainerd.core.snapshots import Info, Kind, Usage, fsutil, storage
from pycontainerd.core.snapshots.storage import MetaStore, Snapshot, Transaction

log = logging.getLogger(__name__)


@attrs.define(eq=False)
class LocalSnapshotter:
    """Base of directory-per-snapshot snapshotters. Use ``await Cls.open(root, ...)``."""

    root: str
    _ms: MetaStore
    #: remove a snapshot's directory at ``remove`` (else ``cleanup`` reclaims it)
    sync_remove: bool = True

    @property
    def snapshots_dir(self) -> str:
        return os.path.join(self.root, "snapshots")

    def snapshot_dir(self, id_: str) -> str:
        return os.path.join(self.root, "snapshots", id_)

    # ------------------------------------------------------------------ subclass hooks

    def _populate(self, tmp: str, kind: Kind, snap: Snapshot, info: Info) -> None:
        """Fill the new snapshot's directory ``tmp`` (blocking, inside the transaction)."""
        raise NotImplementedError

    def _mounts(self, snap: Snapshot, info: Info) -> list[Mount]:
        raise NotImplementedError

    def _needs_dir(self, kind: Kind, snap: Snapshot) -> bool:
        """Whether the new snapshot gets a directory of its own."""
        return True

    def _data_path(self, id_: str) -> str:
        """Where the snapshot's own changes live (measured by ``usage``)."""
        return self.snapshot_dir(id_)

    def _decorate(self, id_: str, info: Info) -> Info:
        """Info as returned to callers (overlayfs adds its upperdir label)."""
        return info

    # ------------------------------------------------------------------ lifecycle

    @staticmethod
    def _open_store(root: str) -> MetaStore:
        os.makedirs(root, mode=0o700, exist_ok=True)
        os.makedirs(os.path.join(root, "snapshots"), mode=0o700, exist_ok=True)
        return MetaStore.open(os.path.join(root, storage.DB_NAME))

    async def close(self) -> None:
        await asyncio.to_thread(self._ms.close)

    async def cleanup(self) -> None:
        """Remove directories under ``snapshots/`` that belong to no snapshot."""
        await asyncio.to_thread(self.cleanup_sync)

    def cleanup_sync(self) -> None:
        for path in self._orphans():
            log.info("removing orphaned snapshot directory %s", path)
            try:
                fsutil.remove_all(path)
            except OSError as e:
                log.warning("failed to remove directory %s: %s", path, e)

    def _orphans(self, tx: Transaction | None = None) -> list[str]:
        if tx is None:
            with self._ms.transaction(writable=False) as t:
                ids = t.id_map()
        else:
            ids = tx.id_map()
        try:
            names = os.listdir(self.snapshots_dir)
        except FileNotFoundError:
            return []
        return [os.path.join(self.snapshots_dir, n) for n in sorted(names) if n not in ids]

    # ------------------------------------------------------------------ reads

    async def stat(self, key: str) -> Info:
        def run() -> Info:
            with self._ms.transaction() as tx:
                id_, info, _ = tx.get_info(key)
            return self._decorate(id_, info)

        return await asyncio.to_thread(run)

    async def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        def run() -> Info:
            with self._ms.transaction(writable=True) as tx:
                updated = tx.update_info(info, fieldpaths)
                id_, _, _ = tx.get_info(updated.name)
            return self._decorate(id_, updated)

        return await asyncio.to_thread(run)

    async def usage(self, key: str) -> Usage:
        def run() -> Usage:
            with self._ms.transaction() as tx:
                id_, info, usage = tx.get_info(key)
            if info.kind is Kind.ACTIVE:
                return fsutil.disk_usage(self._data_path(id_))
            return usage

        return await asyncio.to_thread(run)

    async def mounts(self, key: str) -> list[Mount]:
        def run() -> list[Mount]:
            with self._ms.transaction() as tx:
                try:
                    snap = tx.get_snapshot(key)
                except errdefs.ContainerdError as e:
                    raise type(e)(f'failed to get mounts of snapshot "{key}": {e}') from e
                _, info, _ = tx.get_info(key)
            return self._mounts(snap, info)

        return await asyncio.to_thread(run)

    async def walk(self, filters: Sequence[str] = ()) -> AsyncIterator[Info]:
        def run() -> list[Info]:
            with self._ms.transaction() as tx:
                infos = tx.walk_info(filters)
                ids = {v: k for k, v in tx.id_map().items()}
            return [self._decorate(ids[i.name], i) for i in infos]

        for info in await asyncio.to_thread(run):
            yield info

    # ------------------------------------------------------------------ writes

    async def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return await asyncio.to_thread(self._create, Kind.ACTIVE, key, parent, labels)

    async def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return await asyncio.to_thread(self._create, Kind.VIEW, key, parent, labels)

    def _create(
        self, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None
    ) -> list[Mount]:
        verb = "prepare" if kind is Kind.ACTIVE else "view"
        tmp = ""
        path = ""
        try:
            with self._ms.transaction(writable=True) as tx:
                try:
                    snap = tx.create_snapshot(kind, key, parent, labels)
                except errdefs.ContainerdError as e:
                    raise type(e)(f'failed to {verb} snapshot "{key}": {e}') from e
                _, info, _ = tx.get_info(key)
                if self._needs_dir(kind, snap):
                    tmp = tempfile.mkdtemp(prefix="new-", dir=self.snapshots_dir)
                    os.chmod(tmp, 0o755)
                    self._populate(tmp, kind, snap, info)
                    path = self.snapshot_dir(snap.id)
                    if os.path.lexists(path):
                        # left by a crash after a rename whose record never committed
                        log.warning("removing stale snapshot directory %s", path)
                        fsutil.remove_all(path)
                    os.rename(tmp, path)
                    tmp = ""
                mounts = self._mounts(snap, info)
        except BaseException:
            for p in (tmp, path):
                if p:
                    try:
                        fsutil.remove_all(p)
                    except OSError as e:
                        log.error("failed to remove snapshot directory %s: %s", p, e)
            raise
        return mounts

    async def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        def run() -> None:
            with self._ms.transaction(writable=True) as tx:
                try:
                    id_, _, _ = tx.get_info(key)
                    usage = fsutil.disk_usage(self._data_path(id_))
                    tx.commit_active(key, name, usage, labels)
                except errdefs.ContainerdError as e:
                    raise type(e)(f'failed to commit snapshot "{key}" as "{name}": {e}') from e

        await asyncio.to_thread(run)

    async def remove(self, key: str) -> None:
        def run() -> None:
            renamed = path = ""
            try:
                with self._ms.transaction(writable=True) as tx:
                    try:
                        id_, _ = tx.remove(key)
                    except errdefs.ContainerdError as e:
                        raise type(e)(f'failed to remove snapshot "{key}": {e}') from e
                    if self.sync_remove:
                        path = self.snapshot_dir(id_)
                        if os.path.lexists(path):
                            renamed = os.path.join(self.snapshots_dir, "rm-" + id_)
                            os.rename(path, renamed)
            except BaseException:
                if renamed:
                    os.rename(renamed, path)
                raise
            # the record is gone: the data can go (a crash here leaves an orphan for cleanup)
            if renamed:
                try:
                    fsutil.remove_all(renamed)
                except OSError as e:
                    log.warning("failed to remove snapshot directory %s: %s", renamed, e)

        await asyncio.to_thread(run)
