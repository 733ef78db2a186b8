"""Snapshot usage for ImageFsInfo and container stats (containerd's CRI snapshot store and
syncer): sizes and inode counts of the snapshots in ``k8s.io``, recomputed only for active
snapshots and new ones, every ``stats_collect_period`` seconds and on demand."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.snapshots import Kind
from pycontainerd.plugins.cri import constants

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class Snapshot:
    key: str
    snapshotter: str
    kind: Kind
    size: int
    inodes: int
    #: when the usage was last seen (ns since the epoch)
    timestamp: int


@attrs.define(eq=False)
class SnapshotStore:
    """``snapshotters()`` returns the snapshotters to watch by name."""

    _snapshotters: Callable[[], Mapping[str, Any]]
    _items: dict[tuple[str, str], Snapshot] = attrs.Factory(dict)
    _lock: asyncio.Lock = attrs.Factory(asyncio.Lock)
    _last_sync: float = 0.0

    def get(self, key: str, snapshotter: str) -> Snapshot:
        try:
            return self._items[(snapshotter, key)]
        except KeyError:
            raise errdefs.NotFound(f"snapshot {key!r} of {snapshotter}: not found") from None

    def list(self, snapshotter: str | None = None) -> list[Snapshot]:
        return [s for (sn, _), s in sorted(self._items.items()) if snapshotter in (None, sn)]

    def invalidate(self) -> None:
        """Make the next :meth:`sync` with a ``max_age`` run (snapshots were added/removed)."""
        self._last_sync = 0.0

    async def sync(self, max_age: float = 0.0) -> None:
        """Refresh the usage, unless the last refresh is younger than ``max_age`` seconds."""
        async with self._lock:
            if max_age and time.monotonic() - self._last_sync < max_age:
                return
            with namespaces.use(constants.K8S_NAMESPACE):
                for name, sn in dict(self._snapshotters()).items():
                    await self._sync_one(name, sn)
            self._last_sync = time.monotonic()

    async def _sync_one(self, name: str, sn: Any) -> None:
        seen: set[str] = set()
        async for info in sn.walk():
            seen.add(info.name)
            now = time.time_ns()
            old = self._items.get((name, info.name))
            if old is not None and old.kind == info.kind and info.kind != Kind.ACTIVE:
                self._items[(name, info.name)] = attrs.evolve(old, timestamp=now)
                continue
            try:
                usage = await sn.usage(info.name)
            except errdefs.NotFound:
                continue
            except Exception as e:  # noqa: BLE001 - one bad snapshot does not stop the sync
                log.warning("failed to get usage of snapshot %s (%s): %s", info.name, name, e)
                continue
            self._items[(name, info.name)] = Snapshot(
                key=info.name,
                snapshotter=name,
                kind=info.kind,
                size=usage.size,
                inodes=usage.inodes,
                timestamp=now,
            )
        for key in [k for k in self._items if k[0] == name and k[1] not in seen]:
            del self._items[key]

    async def run(self, period: float) -> None:
        """Sync every ``period`` seconds until cancelled."""
        while True:
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                log.warning("failed to sync snapshot stats: %s", e)
            await asyncio.sleep(period)
