"""The overlayfs snapshotter, laid out as containerd's: ``<root>/snapshots/<id>/fs`` holds a
snapshot's own changes (the overlay upperdir; a committed layer's ``fs`` is a lowerdir of its
children) and ``<root>/snapshots/<id>/work`` the overlay workdir of an active snapshot.

Mounts:

* no parent: a bind mount of ``fs`` (``rw`` for active, ``ro`` for a view);
* active with parents: ``overlay`` with ``lowerdir=`` the parents' ``fs`` (nearest first),
  ``upperdir=``, ``workdir=`` and the configured extra options;
* view of one committed layer: a read-only bind mount of that layer's ``fs``;
* view of several: ``overlay`` with only lowerdirs (read-only by construction).

With ``sync_remove`` off (the default, as containerd's), ``remove`` deletes only the record and
the directory is reclaimed by :meth:`cleanup` (which garbage collection calls) or at the next
start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Sequence

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.mount import Mount, linux
from pycontainerd.core.snapshots import Info, Kind
from pycontainerd.core.snapshots.local import LocalSnapshotter
from pycontainerd.core.snapshots.storage import Snapshot

log = logging.getLogger(__name__)

#: label overlayfs adds to every snapshot's info when ``upperdir_label`` is on
UPPERDIR_LABEL = "containerd.io/snapshot/overlay.upperdir"


def _has_option(options: Sequence[str], key: str) -> bool:
    return any(o == key or o.split("=", 1)[0] == key for o in options)


def check_supported(root: str) -> None:
    """Mount a two-layer overlay in a scratch directory under ``root``; raise
    NotImplemented_ naming ``root`` when the kernel or the backing filesystem refuses."""
    os.makedirs(root, mode=0o700, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="overlayfs-check-", dir=root)
    try:
        for d in ("lower1", "lower2", "upper", "work", "merged"):
            os.mkdir(os.path.join(scratch, d))
        opts = (
            f"lowerdir={scratch}/lower2:{scratch}/lower1",
            f"upperdir={scratch}/upper",
            f"workdir={scratch}/work",
        )
        merged = os.path.join(scratch, "merged")
        try:
            linux.mount_at(Mount(type="overlay", source="overlay", options=opts), merged)
        except errdefs.ContainerdError as e:
            raise errdefs.NotImplemented_(f"test mount of overlay failed: {e}") from e
        # Detached: a plain unmount of an overlay syncs the whole backing filesystem, which
        # costs 0.1-1 s on a busy disk at every start; the scratch mount holds nothing.
        linux.unmount_all(merged, linux.MNT_DETACH)
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


@attrs.define(eq=False)
class OverlaySnapshotter(LocalSnapshotter):
    upperdir_label: bool = False
    mount_options: tuple[str, ...] = ()

    @classmethod
    async def open(
        cls,
        root: str,
        *,
        upperdir_label: bool = False,
        sync_remove: bool = False,
        mount_options: Sequence[str] = (),
    ) -> OverlaySnapshotter:
        """Open (creating if needed) an overlayfs snapshotter in ``root`` and remove crash
        leftovers."""

        def run() -> OverlaySnapshotter:
            options = list(mount_options)
            if not _has_option(options, "index") and os.path.exists(
                "/sys/module/overlay/parameters/index"
            ):
                options.append("index=off")
            sn = cls(
                root=root,
                ms=cls._open_store(root),
                sync_remove=sync_remove,
                upperdir_label=upperdir_label,
                mount_options=tuple(options),
            )
            sn.cleanup_sync()
            return sn

        return await asyncio.to_thread(run)

    def upper_path(self, id_: str) -> str:
        return os.path.join(self.root, "snapshots", id_, "fs")

    def work_path(self, id_: str) -> str:
        return os.path.join(self.root, "snapshots", id_, "work")

    def _data_path(self, id_: str) -> str:
        return self.upper_path(id_)

    def _decorate(self, id_: str, info: Info) -> Info:
        if not self.upperdir_label:
            return info
        return attrs.evolve(info, labels={**info.labels, UPPERDIR_LABEL: self.upper_path(id_)})

    def _populate(self, tmp: str, kind: Kind, snap: Snapshot, info: Info) -> None:
        fs = os.path.join(tmp, "fs")
        os.mkdir(fs, 0o755)
        if kind is Kind.ACTIVE:
            os.mkdir(os.path.join(tmp, "work"), 0o711)
        if snap.parent_ids:
            # the new upperdir is owned like the parent's top directory
            st = os.stat(self.upper_path(snap.parent_ids[0]))
            os.lchown(fs, st.st_uid, st.st_gid)

    def _mounts(self, snap: Snapshot, info: Info) -> list[Mount]:
        if not snap.parent_ids:
            flag = "ro" if snap.kind is Kind.VIEW else "rw"
            return [Mount(type="bind", source=self.upper_path(snap.id), options=(flag, "rbind"))]
        options: list[str] = []
        if snap.kind is Kind.ACTIVE:
            options += [
                f"workdir={self.work_path(snap.id)}",
                f"upperdir={self.upper_path(snap.id)}",
            ]
        elif len(snap.parent_ids) == 1:
            return [
                Mount(
                    type="bind",
                    source=self.upper_path(snap.parent_ids[0]),
                    options=("ro", "rbind"),
                )
            ]
        lower = ":".join(self.upper_path(p) for p in snap.parent_ids)
        options.append(f"lowerdir={lower}")
        options += self.mount_options
        return [Mount(type="overlay", source="overlay", options=options)]
