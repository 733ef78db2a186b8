"""Mounts as snapshotters hand them out, and mounting them.

A :class:`Mount` is data (type, source, target below the mount root, options), exactly what the
snapshots and tasks APIs carry. The async functions here run the blocking syscalls of
:mod:`pycontainerd.core.mount.linux` in a thread; code already in a thread may call those
directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Sequence

import attrs

log = logging.getLogger(__name__)

#: umount2 flags
MNT_FORCE = 1
MNT_DETACH = 2


def _options(value: Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        raise TypeError("mount options must be a sequence of strings, not a string")
    return tuple(value)


@attrs.frozen(kw_only=True)
class Mount:
    """One mount: ``type`` and ``source`` as mount(8) takes them, ``options`` as the ``-o``
    list, ``target`` a path below the root the mounts are applied to ("" = the root)."""

    type: str
    source: str
    target: str = ""
    options: tuple[str, ...] = attrs.field(default=(), converter=_options)

    @property
    def readonly(self) -> bool:
        """Whether the mount gives no write access."""
        typ = self.type.rsplit("/", 1)[-1]
        if typ == "erofs":
            return True
        if typ == "overlay":
            opts = ",".join(self.options).split(",")
            return "ro" in opts or not any(o.startswith("upperdir=") for o in opts)
        return "ro" in self.options

    def mount(self, target: str) -> None:
        """Mount at ``target`` (joined with :attr:`target`), blocking."""
        from pycontainerd.core.mount import linux

        linux.mount_all([self], target)


def readonly_mounts(mounts: Sequence[Mount]) -> list[Mount]:
    """The same mounts made read-only (overlay: the upperdir becomes the top lowerdir)."""
    out: list[Mount] = []
    for m in mounts:
        if m.type == "overlay":
            upper = ""
            opts: list[str] = []
            for o in m.options:
                if o.startswith("upperdir="):
                    upper = o[len("upperdir=") :]
                elif not o.startswith(("workdir=", "uidmap=", "gidmap=")):
                    opts.append(o)
            if upper:
                opts = [
                    "lowerdir=" + upper + ":" + o[len("lowerdir=") :]
                    if o.startswith("lowerdir=")
                    else o
                    for o in opts
                ]
            out.append(attrs.evolve(m, options=opts))
        else:
            opts = [o for o in m.options if o not in ("rw", "ro")]
            out.append(attrs.evolve(m, options=[*opts, "ro"]))
    return out


def remove_volatile_option(mounts: Sequence[Mount]) -> list[Mount]:
    """Overlay mounts without ``volatile`` (for short-lived mounts whose data must persist)."""
    return [
        attrs.evolve(m, options=[o for o in m.options if o not in ("volatile", "fsync=volatile")])
        if m.type == "overlay"
        else m
        for m in mounts
    ]


async def mount_all(mounts: Sequence[Mount], target: str) -> None:
    """Mount each of ``mounts`` in order onto ``target``."""
    from pycontainerd.core.mount import linux

    await asyncio.to_thread(linux.mount_all, list(mounts), target)


async def unmount(target: str, flags: int = 0) -> None:
    """Unmount ``target`` once (not being a mount point is fine)."""
    from pycontainerd.core.mount import linux

    await asyncio.to_thread(linux.unmount, target, flags)


async def unmount_all(target: str, flags: int = 0) -> None:
    """Unmount every mount stacked on ``target``."""
    from pycontainerd.core.mount import linux

    await asyncio.to_thread(linux.unmount_all, target, flags)


async def unmount_recursive(target: str, flags: int = 0) -> None:
    """Unmount ``target`` and everything mounted below it."""
    from pycontainerd.core.mount import linux

    await asyncio.to_thread(linux.unmount_recursive, target, flags)


async def unmount_mounts(mounts: Sequence[Mount], target: str, flags: int = 0) -> None:
    """Undo :func:`mount_all` of ``mounts`` on ``target``."""
    from pycontainerd.core.mount import linux

    await asyncio.to_thread(linux.unmount_mounts, list(mounts), target, flags)


def temp_mount_location() -> str:
    return os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()


@contextlib.asynccontextmanager
async def with_temp_mount(
    mounts: Sequence[Mount], *, readonly: bool = False, temp_dir: str | None = None
) -> AsyncIterator[str]:
    """Mount ``mounts`` on a fresh temporary directory and yield its path; on exit unmount
    and remove the directory. ``readonly`` mounts a read-only variant."""
    from pycontainerd.core.mount import linux

    mounts = remove_volatile_option(mounts)
    if readonly:
        mounts = readonly_mounts(mounts)
    root = await asyncio.to_thread(
        tempfile.mkdtemp, prefix="pycontainerd-mount", dir=temp_dir or temp_mount_location()
    )
    try:
        try:
            await asyncio.to_thread(linux.mount_all, mounts, root)
        except BaseException:
            await asyncio.to_thread(linux.unmount_mounts, mounts, root, 0)
            raise
        try:
            yield root
        finally:
            await asyncio.to_thread(linux.unmount_mounts, mounts, root, 0)
    finally:
        try:
            await asyncio.to_thread(os.rmdir, root)
        except OSError as e:
            log.error("failed to remove mount temp dir %s: %s", root, e)


__all__ = [
    "MNT_DETACH",
    "MNT_FORCE",
    "Mount",
    "mount_all",
    "readonly_mounts",
    "remove_volatile_option",
    "temp_mount_location",
    "unmount",
    "unmount_all",
    "unmount_mounts",
    "unmount_recursive",
    "with_temp_mount",
]
