"""Blocking filesystem helpers for snapshotters: copying a tree with everything preserved, and
measuring disk usage."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import subprocess

from pycontainerd.core import errdefs
from pycontainerd.core.snapshots import Usage

log = logging.getLogger(__name__)


def disk_usage(path: str) -> Usage:
    """Inodes and bytes (allocated blocks) used below ``path``, each inode counted once."""
    seen: set[tuple[int, int]] = set()
    size = 0

    def visit(st: os.stat_result) -> None:
        nonlocal size
        ident = (st.st_dev, st.st_ino)
        if ident in seen:
            return
        seen.add(ident)
        size += st.st_blocks * 512

    try:
        visit(os.lstat(path))
    except FileNotFoundError:
        return Usage()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                visit(os.lstat(os.path.join(dirpath, name)))
            except FileNotFoundError:
                continue
    return Usage(inodes=len(seen), size=size)


def copy_dir(src: str, dst: str) -> None:
    """Copy the contents of directory ``src`` into existing directory ``dst`` keeping
    ownership, modes, times, hard links, special files and extended attributes (reflinks
    where the filesystem supports them). Uses ``cp -a`` where present."""
    cp = shutil.which("cp")
    if cp is not None:
        proc = subprocess.run(
            [cp, "-a", "--reflink=auto", "--", os.path.join(src, "."), dst],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            return
        raise errdefs.Internal(f"failed to copy {src} to {dst}: {proc.stderr.strip()}")
    _copy_tree(src, dst)


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        try:
            os.setxattr(
                dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False
            )
        except OSError as e:
            log.debug("failed to copy xattr %s of %s: %s", name, src, e)


def _copy_meta(src: str, dst: str, st: os.stat_result) -> None:
    os.lchown(dst, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    _copy_xattrs(src, dst)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_tree(src: str, dst: str) -> None:
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, str, os.stat_result]] = [(src, dst, os.lstat(src))]
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target_dir = dst if rel == "." else os.path.join(dst, rel)
        for name in dirnames + filenames:
            s = os.path.join(dirpath, name)
            d = os.path.join(target_dir, name)
            st = os.lstat(s)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                os.mkdir(d, 0o700)
                dirs.append((s, d, st))
                continue
            if st.st_nlink > 1:
                prev = links.get((st.st_dev, st.st_ino))
                if prev is not None:
                    os.link(prev, d)
                    continue
                links[(st.st_dev, st.st_ino)] = d
            if stat.S_ISREG(mode):
                shutil.copyfile(s, d, follow_symlinks=False)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISFIFO(mode):
                os.mkfifo(d, 0o600)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                os.mknod(d, mode, st.st_rdev)
            elif stat.S_ISSOCK(mode):
                continue
            else:
                raise errdefs.Internal(f"failed to copy {s}: unsupported file type")
            _copy_meta(s, d, st)
    # directories last, deepest first, so that their times survive the writes into them
    for s, d, st in reversed(dirs):
        _copy_meta(s, d, st)


def remove_all(path: str) -> None:
    """``rm -rf``: missing is fine."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except NotADirectoryError:
        os.unlink(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
