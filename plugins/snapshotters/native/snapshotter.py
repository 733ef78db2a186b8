"""The native snapshotter: ``<root>/snapshots/<id>`` holds a snapshot's whole tree.

Preparing on a parent copies the parent's directory (``cp -a --reflink=auto``: owners, modes,
times, hard links, device nodes and xattrs survive; copy-on-write where the filesystem can).
Active snapshots are read-write bind mounts of their own directory; views of a parent are
read-only bind mounts of the parent's directory itself (nothing is copied); a view with no
parent gets an empty directory.
"""

from __future__ import annotations

import asyncio
import logging

import attrs

from pycontainerd.core.mount import Mount
from pycontainerd.core.snapshots import Info, Kind, fsutil
from pycontainerd.core.snapshots.local import LocalSnapshotter
from pycontainerd.core.snapshots.storage import Snapshot

log = logging.getLogger(__name__)


@attrs.define(eq=False)
class NativeSnapshotter(LocalSnapshotter):
    @classmethod
    async def open(cls, root: str) -> NativeSnapshotter:
        """Open (creating if needed) a native snapshotter in ``root`` and remove crash
        leftovers."""

        def run() -> NativeSnapshotter:
            sn = cls(root=root, ms=cls._open_store(root))
            sn.cleanup_sync()
            return sn

        return await asyncio.to_thread(run)

    def _needs_dir(self, kind: Kind, snap: Snapshot) -> bool:
        return kind is Kind.ACTIVE or not snap.parent_ids

    def _populate(self, tmp: str, kind: Kind, snap: Snapshot, info: Info) -> None:
        if kind is Kind.ACTIVE and snap.parent_ids:
            fsutil.copy_dir(self.snapshot_dir(snap.parent_ids[0]), tmp)

    def _mounts(self, snap: Snapshot, info: Info) -> list[Mount]:
        if snap.kind is Kind.VIEW and snap.parent_ids:
            source = self.snapshot_dir(snap.parent_ids[0])
        else:
            source = self.snapshot_dir(snap.id)
        flag = "ro" if snap.kind is Kind.VIEW else "rw"
        return [Mount(type="bind", source=source, options=("rbind", flag))]
