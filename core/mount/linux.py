"""Mounting on Linux with mount(2)/umount2(2) through ctypes (blocking; callers in async code
use the wrappers in :mod:`pycontainerd.core.mount`, which run these in a thread).

Options are split as mount(8) does: names of VFS flags become ``MS_*`` bits, everything else is
filesystem data joined by commas. A bind mount with ``ro`` is bound first and then remounted
read-only (the kernel ignores ``MS_RDONLY`` on the initial bind). Propagation options
(``private``, ``rshared``, ...) are applied by a separate call.

Overlay option strings longer than the kernel accepts (one page) are shortened the way
containerd does it: the lowerdirs are made relative to their common parent directory and the
mount is made by a short-lived child process whose working directory is that parent. When even
the compacted string is too long, mounting fails with InvalidArgument.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as _errno
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from pycontainerd.core import errdefs

if TYPE_CHECKING:
    from pycontainerd.core.mount import Mount

log = logging.getLogger(__name__)

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

_PROPAGATION = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE

# option -> (clear, flag)
_FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS),
    "private": (False, MS_PRIVATE),
    "rprivate": (False, MS_PRIVATE | MS_REC),
    "shared": (False, MS_SHARED),
    "rshared": (False, MS_SHARED | MS_REC),
    "slave": (False, MS_SLAVE),
    "rslave": (False, MS_SLAVE | MS_REC),
    "unbindable": (False, MS_UNBINDABLE),
    "runbindable": (False, MS_UNBINDABLE | MS_REC),
}

# statvfs f_flag bits -> MS_* bits that a read-only bind remount must keep (they may be locked
# when running in a user namespace).
_ST_TO_MS = (
    (os.ST_RDONLY, MS_RDONLY),
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)

_PAGESIZE = os.sysconf("SC_PAGESIZE") if hasattr(os, "sysconf") else 4096


@attrs.frozen(kw_only=True)
class MountOptions:
    """Options split into mount(2) flags and the filesystem data string's parts."""

    flags: int = 0
    data: tuple[str, ...] = ()


def parse_mount_options(options: Sequence[str]) -> MountOptions:
    flags = 0
    data: list[str] = []
    for o in options:
        if o.startswith("X-containerd."):
            raise errdefs.InvalidArgument(f'internal mount option "{o}" was not consumed')
        entry = _FLAGS.get(o)
        if entry is not None:
            clear, flag = entry
            if clear:
                flags &= ~flag
            else:
                flags |= flag
        elif o == "loop" or o.startswith(("uidmap=", "gidmap=")):
            raise errdefs.NotImplemented_(f'mount option "{o}" is not supported')
        else:
            data.append(o)
    return MountOptions(flags=flags, data=tuple(data))


def _options_size(options: Sequence[str]) -> int:
    return sum(len(o) + 1 for o in options)


def _find_lowerdirs(options: Sequence[str]) -> tuple[int, list[str]]:
    for i, o in enumerate(options):
        if o.startswith("lowerdir="):
            return i, o[len("lowerdir=") :].split(":")
    return -1, []


def compact_lowerdir_option(options: Sequence[str]) -> tuple[str, list[str]]:
    """(common parent dir, options with lowerdirs relative to it); ("", options) when the
    lowerdirs share no useful parent."""
    idx, dirs = _find_lowerdirs(options)
    if idx == -1 or len(dirs) == 1:
        return "", list(options)
    common = os.path.commonprefix(dirs)
    common = os.path.dirname(common) if not common.endswith("/") else common.rstrip("/")
    if common in ("", "/", "."):
        return "", list(options)
    prefix = common + "/"
    rel: list[str] = []
    for d in dirs:
        if len(d) <= len(prefix) or not d.startswith(prefix):
            return "", list(options)
        rel.append(d[len(prefix) :])
    out = [o for i, o in enumerate(options) if i != idx]
    out.append("lowerdir=" + ":".join(rel))
    return prefix, out


_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        lib.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        ]
        lib.mount.restype = ctypes.c_int
        lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.umount2.restype = ctypes.c_int
        _libc = lib
    return _libc


def _categorise(err: int, message: str) -> errdefs.ContainerdError:
    text = f"{message}: {os.strerror(err)}"
    cls: type[errdefs.ContainerdError]
    if err == _errno.ENOENT:
        cls = errdefs.NotFound
    elif err in (_errno.EPERM, _errno.EACCES):
        cls = errdefs.PermissionDenied
    elif err == _errno.EINVAL:
        cls = errdefs.InvalidArgument
    elif err == _errno.EBUSY:
        cls = errdefs.Unavailable
    elif err == _errno.ENODEV:
        cls = errdefs.NotImplemented_
    else:
        cls = errdefs.Internal
    exc = cls(text)
    exc.errno = err  # type: ignore[attr-defined]
    return exc


def _sys_mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    rc = _lib().mount(
        source.encode() if source else None,
        target.encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise _categorise(err, f'failed to mount "{source or fstype}" on "{target}"')


# Run by the short-lived helper: mount(2) from inside a working directory, so that relative
# overlay lowerdirs resolve against it. Arguments: source target fstype flags data.
_HELPER = """
import ctypes, ctypes.util, os, sys
lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
lib.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
s, t, f, fl, d = sys.argv[1:6]
if lib.mount(s.encode() or None, t.encode(), f.encode() or None, int(fl), d.encode() or None):
    e = ctypes.get_errno()
    sys.stderr.write(str(e))
    sys.exit(1)
"""


def _mount_in_dir(chdir: str, source: str, target: str, fstype: str, flags: int, data: str):
    target = os.path.abspath(target)
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _HELPER, source, target, fstype, str(flags), data],
        cwd=chdir,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        try:
            err = int(proc.stderr.strip())
        except ValueError:
            raise errdefs.Internal(
                f'failed to mount "{source}" on "{target}": helper failed: {proc.stderr.strip()}'
            ) from None
        raise _categorise(err, f'failed to mount "{source}" on "{target}"')


def _kept_flags(path: str) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    out = 0
    for st_bit, ms_bit in _ST_TO_MS:
        if st.f_flag & st_bit:
            out |= ms_bit
    return out & ~MS_RDONLY


def _mount_with_binary(m: Mount, target: str) -> None:
    args = ["mount", "-t", m.type]
    if m.options:
        args += ["-o", ",".join(m.options)]
    args += [m.source, target]
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise errdefs.Internal(
            f'failed to mount "{m.source}" on "{target}" with mount(8): {proc.stderr.strip()}'
        )


def mount_at(m: Mount, target: str) -> None:
    """Mount ``m`` exactly at ``target`` (``m.target`` is not consulted)."""
    if m.type.startswith(("fuse.", "fuse3.")):
        _mount_with_binary(m, target)
        return
    options = list(m.options)
    chdir = ""
    if m.type == "overlay" and _options_size(options) >= _PAGESIZE - 512:
        chdir, options = compact_lowerdir_option(options)
    opt = parse_mount_options(options)
    oflags = opt.flags & ~_PROPAGATION
    data = ",".join(opt.data)
    if len(data) >= _PAGESIZE:
        raise errdefs.InvalidArgument(
            f'failed to mount "{m.source}" on "{target}": mount options are too long '
            f"({len(data)} bytes, limit {_PAGESIZE - 1})"
        )
    if not opt.flags & MS_REMOUNT or data:
        if chdir:
            _mount_in_dir(chdir, m.source, target, m.type, oflags, data)
        else:
            _sys_mount(m.source, target, m.type, oflags, data)
    if opt.flags & _PROPAGATION:
        pflags = opt.flags & (_PROPAGATION | MS_REC | MS_SILENT)
        _sys_mount("", target, "", pflags, "")
    if oflags & (MS_BIND | MS_RDONLY) == MS_BIND | MS_RDONLY:
        _sys_mount("", target, "", oflags | _kept_flags(target) | MS_REMOUNT, "")


def root_path(root: str, sub: str) -> str:
    """``sub`` joined to ``root`` with symlinks resolved inside ``root`` (never escaping it)."""
    if not sub or sub == "/":
        return root
    parts = [p for p in sub.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, p)
        if os.path.islink(candidate):
            hops += 1
            if hops > 255:
                raise errdefs.InvalidArgument(f'too many symlinks resolving "{sub}" in "{root}"')
            link = os.readlink(candidate)
            if link.startswith("/"):
                resolved = []
            parts = [x for x in link.split("/") if x and x != "."] + parts
            continue
        resolved.append(p)
    return os.path.join(root, *resolved)


def mount_all(mounts: Sequence[Mount], target: str) -> None:
    for m in mounts:
        mount_at(m, root_path(target, m.target))


def unmount(target: str, flags: int = 0) -> None:
    """Unmount once; "not a mount point" (EINVAL) is not an error. Retries while busy."""
    for _ in range(50):
        rc = _lib().umount2(target.encode(), flags)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err == _errno.EINVAL:
            return
        if err == _errno.EBUSY:
            time.sleep(0.05)
            continue
        raise _categorise(err, f'failed to unmount "{target}"')
    raise _categorise(_errno.EBUSY, f'failed to unmount "{target}"')


def unmount_all(target: str, flags: int = 0) -> None:
    """Unmount every mount stacked on ``target`` until none is left."""
    if not target or not os.path.lexists(target):
        return
    for _ in range(1000):
        rc = _lib().umount2(target.encode(), flags)
        if rc == 0:
            continue
        err = ctypes.get_errno()
        if err in (_errno.EINVAL, _errno.ENOENT):
            return
        if err == _errno.EBUSY:
            unmount(target, flags)
            continue
        raise _categorise(err, f'failed to unmount "{target}"')
    raise errdefs.Internal(f'failed to unmount "{target}": too many stacked mounts')


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points(prefix: str = "") -> list[str]:
    """Mount points in this mount namespace, optionally only ``prefix`` and below."""
    out: list[str] = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" ")
            if len(fields) < 5:
                continue
            mp = _unescape(fields[4])
            if not prefix or mp == prefix or mp.startswith(prefix.rstrip("/") + "/"):
                out.append(mp)
    return out


def is_mount_point(path: str) -> bool:
    return os.path.realpath(path) in mount_points(os.path.realpath(path))


def unmount_recursive(target: str, flags: int = 0) -> None:
    """Unmount ``target`` and every mount below it, deepest first."""
    if not target or not os.path.lexists(target):
        return
    target = os.path.realpath(target)
    points = sorted(set(mount_points(target)), key=len, reverse=True)
    for i, p in enumerate(points):
        try:
            unmount_all(p, flags)
        except errdefs.ContainerdError:
            if i == len(points) - 1:
                raise
            log.warning("failed to unmount %s", p, exc_info=True)


def unmount_mounts(mounts: Sequence[Mount], target: str, flags: int = 0) -> None:
    """Undo :func:`mount_all`: unmount each mount's target, last first."""
    for i in range(len(mounts) - 1, -1, -1):
        point = root_path(target, mounts[i].target)
        try:
            unmount_all(point, flags)
        except errdefs.ContainerdError:
            if i == len(mounts) - 1:
                raise
            log.warning("failed to unmount %s", point, exc_info=True)
