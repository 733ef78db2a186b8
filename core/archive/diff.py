"""Computing the changes between two directory trees and writing them as an OCI layer tar.

:func:`changes` walks ``lower`` and ``upper`` side by side (a double walk, as containerd's
walking differ does), directory by directory in byte order of the names, and reports what was
added, modified or deleted. Two entries are the same when their type, mode, owner, device
number, extended attributes, size, symbolic link target and modification time agree; when the
times only differ in that one of them has no sub-second part (a file that went through a tar),
the contents are compared instead.

:func:`write_diff` writes those changes as an OCI layer: changed entries with their metadata
(PAX format, ``SCHILY.xattr.*`` for extended attributes), deletions as ``.wh.<name>`` entries,
the parent directories of every change, and hard links kept as links. The output is
deterministic for a given pair of trees.

Extended attributes in the ``trusted.`` namespace and ``security.selinux`` are host-local and
neither compared nor written.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import stat
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.archive.apply import PAX_XATTR_PREFIX, WHITEOUT_PREFIX

log = logging.getLogger(__name__)

_TAR_BUFSIZE = 1 << 20
_CMP_CHUNK = 1 << 20


class ChangeKind(enum.Enum):
    ADD = "add"
    MODIFY = "modify"
    DELETE = "delete"
    #: only reported internally, for hard-linked files that did not change
    UNMODIFIED = "unmodified"


@attrs.frozen
class Change:
    """One change from lower to upper; ``path`` is absolute within the trees ("/etc/passwd")."""

    kind: ChangeKind
    path: str


def _skip_xattr(name: str) -> bool:
    return name.startswith("trusted.") or name == "security.selinux"


def read_xattrs(path: str) -> dict[str, bytes]:
    """The extended attributes of ``path`` (not following a symbolic link) that belong in a
    layer."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            return {}
        raise
    out: dict[str, bytes] = {}
    for name in sorted(names):
        if _skip_xattr(name):
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
                continue
            raise
    return out


def _same_content(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca = fa.read(_CMP_CHUNK)
            cb = fb.read(_CMP_CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True


def _same(lpath: str, upath: str, ls: os.stat_result, us: os.stat_result) -> bool:
    if ls.st_dev == us.st_dev and ls.st_ino == us.st_ino:
        return True
    if ls.st_mode != us.st_mode or ls.st_uid != us.st_uid or ls.st_gid != us.st_gid:
        return False
    mode = us.st_mode
    if (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) and ls.st_rdev != us.st_rdev:
        return False
    if read_xattrs(lpath) != read_xattrs(upath):
        return False
    if stat.S_ISDIR(mode):
        return True
    if ls.st_size != us.st_size:
        return False
    if stat.S_ISLNK(mode) and os.readlink(lpath) != os.readlink(upath):
        return False
    lns, uns = ls.st_mtime_ns, us.st_mtime_ns
    if lns == uns:
        return True
    if lns // 1_000_000_000 != uns // 1_000_000_000:
        return False
    if lns % 1_000_000_000 and uns % 1_000_000_000:
        return False
    # One side lost its sub-second time (it went through a tar): decide by content.
    if stat.S_ISREG(mode):
        return us.st_size == 0 or _same_content(lpath, upath)
    return True


def _sorted_names(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path), key=os.fsencode)
    except FileNotFoundError:
        return []


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _walk(lower: str | None, upper: str) -> Iterator[tuple[ChangeKind, str, os.stat_result | None]]:
    """Yield ``(kind, relative path, upper stat)`` in tar order, parents before children.
    UNMODIFIED is yielded only for hard-linked non-directories."""

    def added(rel: str) -> Iterator[tuple[ChangeKind, str, os.stat_result | None]]:
        for name in _sorted_names(os.path.join(upper, rel)):
            crel = _join(rel, name)
            st = os.lstat(os.path.join(upper, crel))
            yield ChangeKind.ADD, crel, st
            if stat.S_ISDIR(st.st_mode):
                yield from added(crel)

    def both(rel: str) -> Iterator[tuple[ChangeKind, str, os.stat_result | None]]:
        assert lower is not None
        lnames = _sorted_names(os.path.join(lower, rel))
        unames = _sorted_names(os.path.join(upper, rel))
        lset = set(lnames)
        uset = set(unames)
        for name in sorted(lset | uset, key=os.fsencode):
            crel = _join(rel, name)
            lpath = os.path.join(lower, crel)
            upath = os.path.join(upper, crel)
            ls = _lstat(lpath) if name in lset else None
            us = _lstat(upath) if name in uset else None
            if us is None:
                if ls is not None:
                    yield ChangeKind.DELETE, crel, None
                continue
            if ls is None:
                yield ChangeKind.ADD, crel, us
                if stat.S_ISDIR(us.st_mode):
                    yield from added(crel)
                continue
            udir = stat.S_ISDIR(us.st_mode)
            if udir and stat.S_ISDIR(ls.st_mode):
                if not _same(lpath, upath, ls, us):
                    yield ChangeKind.MODIFY, crel, us
                yield from both(crel)
            elif udir:
                yield ChangeKind.MODIFY, crel, us
                yield from added(crel)
            elif stat.S_IFMT(ls.st_mode) != stat.S_IFMT(us.st_mode) or not _same(
                lpath, upath, ls, us
            ):
                yield ChangeKind.MODIFY, crel, us
            elif us.st_nlink > 1:
                yield ChangeKind.UNMODIFIED, crel, us

    if not os.path.isdir(upper):
        raise errdefs.NotFound(f"failed to compute diff: upper {upper!r} is not a directory")
    if lower is None or not os.path.isdir(lower):
        if lower is not None and os.path.lexists(lower):
            raise errdefs.InvalidArgument(
                f"failed to compute diff: lower {lower!r} is not a directory"
            )
        yield from added("")
    else:
        yield from both("")


def changes(lower: str | None, upper: str) -> Iterator[Change]:
    """The changes that turn ``lower`` (None: an empty tree) into ``upper``, in tar order."""
    for kind, rel, _ in _walk(lower, upper):
        if kind is not ChangeKind.UNMODIFIED:
            yield Change(kind, "/" + rel)


class _ChangeWriter:
    def __init__(self, out: BinaryIO, upper: str, source_date_epoch: int | None) -> None:
        self._tf = tarfile.open(  # type: ignore[call-overload]
            fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=_TAR_BUFSIZE
        )
        self._upper = upper
        self._epoch = source_date_epoch
        self._added_dirs: set[str] = set()
        self._inode_src: dict[tuple[int, int], str] = {}
        self._inode_refs: dict[tuple[int, int], list[str]] = {}

    def close(self) -> None:
        self._tf.close()

    def _include_parents(self, rel: str) -> None:
        parent = rel.rpartition("/")[0]
        if parent and parent not in self._added_dirs:
            self._added_dirs.add(parent)
            st = os.lstat(os.path.join(self._upper, parent))
            self.handle(ChangeKind.MODIFY, parent, st)

    def handle(self, kind: ChangeKind, rel: str, st: os.stat_result | None) -> None:
        if kind is ChangeKind.DELETE:
            parent, _, base = rel.rpartition("/")
            info = tarfile.TarInfo(_join(parent, WHITEOUT_PREFIX + base))
            info.type = tarfile.REGTYPE
            info.mode = 0
            info.mtime = 0
            self._include_parents(info.name)
            self._tf.addfile(info)
            return
        assert st is not None
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            return
        path = os.path.join(self._upper, rel)
        info = tarfile.TarInfo(rel)
        info.mode = stat.S_IMODE(mode)
        info.uid = st.st_uid
        info.gid = st.st_gid
        info.uname = info.gname = ""
        mtime = st.st_mtime_ns // 1_000_000_000
        if self._epoch is not None and mtime > self._epoch:
            mtime = self._epoch
        info.mtime = mtime
        if stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISREG(mode):
            info.type = tarfile.REGTYPE
            info.size = st.st_size
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(path)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor = os.major(st.st_rdev)
            info.devminor = os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        else:
            log.warning("diff: %s has an unsupported file type, skipped", path)
            return

        extra_links: list[str] = []
        if not stat.S_ISDIR(mode) and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            src = self._inode_src.get(key)
            if src is not None:
                info.type = tarfile.LNKTYPE
                info.linkname = src
                info.size = 0
            else:
                if kind is ChangeKind.UNMODIFIED:
                    self._inode_refs.setdefault(key, []).append(rel)
                    return
                self._inode_src[key] = rel
                extra_links = self._inode_refs.pop(key, [])
        elif kind is ChangeKind.UNMODIFIED:
            return

        xattrs = read_xattrs(path)
        if xattrs:
            info.pax_headers = {
                PAX_XATTR_PREFIX + k: v.decode("utf-8", "surrogateescape")
                for k, v in xattrs.items()
            }
        self._include_parents(rel)
        if info.type == tarfile.DIRTYPE:
            self._added_dirs.add(rel)
        if info.type == tarfile.REGTYPE and info.size:
            with open(path, "rb") as f:
                self._tf.addfile(info, f)
        else:
            self._tf.addfile(info)
        for extra in extra_links:
            link = tarfile.TarInfo(extra)
            link.type = tarfile.LNKTYPE
            link.linkname = rel
            link.mode, link.uid, link.gid, link.mtime = info.mode, info.uid, info.gid, info.mtime
            link.uname = link.gname = ""
            link.pax_headers = dict(info.pax_headers)
            self._include_parents(extra)
            self._tf.addfile(link)


def write_diff(
    lower: str | None,
    upper: str,
    out: BinaryIO,
    *,
    source_date_epoch: int | None = None,
) -> None:
    """Write to ``out`` the OCI layer tar (uncompressed) that turns ``lower`` (None: an empty
    tree) into ``upper``. ``source_date_epoch`` caps the modification times written.
    ``out`` is flushed, not closed."""
    writer = _ChangeWriter(out, upper, source_date_epoch)
    try:
        for kind, rel, st in _walk(lower, upper):
            writer.handle(kind, rel, st)
    except OSError as exc:
        raise errdefs.Unknown(f"failed to write diff of {upper!r}: {exc}") from exc
    writer.close()
    out.flush()
