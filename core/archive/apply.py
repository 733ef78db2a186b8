"""Applying an OCI layer tar onto a directory.

:func:`apply_layer` unpacks a (possibly compressed) layer stream onto ``root`` with the OCI
image-spec changeset rules: ``.wh.<name>`` removes ``<name>`` from the layers below,
``.wh..wh..opq`` hides everything below its directory that this layer did not add, an entry
replaces what is at its path unless both are directories (then the metadata is merged).
Modes, ownership (when running as root), modification times, extended attributes (PAX
``SCHILY.xattr.*``), hard links, symbolic links, devices and fifos are restored. The
uncompressed digest (the layer's diff ID) is computed on the way.

Safety: no entry may create or change anything outside ``root``. Entry names are cleaned
lexically (absolute names are taken relative to ``root``; ``..`` that would climb above it
rejects the layer). Every parent path is then resolved one component at a time inside
``root``, looking at what is on disk and at what earlier entries of the same layer made. With
``strict_symlinks`` (the default) a parent path that goes through a symbolic link pointing
outside ``root`` (absolute, or climbing above it with ``..``) rejects the layer; without it such
links are followed as if ``root`` were ``/`` (containerd's and securejoin's semantics), which
can never leave ``root`` either. Hard link targets and whiteouts follow the same rules. A
rejected layer raises :class:`~pycontainerd.core.errdefs.InvalidArgument` naming the entry and
the reason.

With ``validate_first`` (the default) the whole layer is checked before anything is written,
by a first pass that simulates the layer on top of what is on disk: a seekable stream is read
twice, any other stream is spooled (compressed, as it came) to a temporary file during the
first pass. A rejected layer then writes nothing. Without it, a layer is rejected at the first
bad entry and what came before stays written; callers apply into an active snapshot and
remove it on failure either way.

Everything here is synchronous; async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat
import tarfile
import tempfile
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, Literal

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.archive.compression import (
    READ_CHUNK,
    Compression,
    DecompressReader,
    decompress_stream,
)

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = WHITEOUT_PREFIX + WHITEOUT_PREFIX
WHITEOUT_OPAQUE = WHITEOUT_META_PREFIX + ".opq"
PAX_XATTR_PREFIX = "SCHILY.xattr."
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"

#: How many symbolic links one path may go through before it is refused (as the kernel's ELOOP).
MAX_SYMLINKS = 40

_COPY_BUF = 1 << 20
_TAR_BUFSIZE = 1 << 18
_MAX_DEV = (1 << 32) - 1
_NS_LIMIT = 1 << 62

WhiteoutMode = Literal["oci", "overlay"]
Progress = Callable[[int], None]


@attrs.frozen(kw_only=True)
class ApplyResult:
    """What applying a layer did."""

    #: Sum of the entry sizes in the tar headers (what containerd's apply reports).
    size: int
    #: ``sha256:<hex>`` of the uncompressed tar stream: the layer's diff ID.
    diff_id: str
    #: Bytes of the uncompressed tar stream.
    uncompressed_size: int
    #: Bytes read from the (possibly compressed) input stream.
    compressed_size: int
    compression: Compression
    #: Number of tar entries processed (whiteouts included).
    entries: int


def apply_layer(
    root: str,
    stream: BinaryIO,
    *,
    convert_whiteouts: WhiteoutMode = "oci",
    validate_first: bool = True,
    strict_symlinks: bool = True,
    same_owner: bool | None = None,
    parents: Sequence[str] = (),
    spool_dir: str | None = None,
    progress: Progress | None = None,
) -> ApplyResult:
    """Unpack the layer tar read from ``stream`` (uncompressed, gzip or zstd) onto ``root``.

    ``convert_whiteouts="overlay"`` is for applying straight into an overlayfs upper
    directory: whiteouts become 0:0 character devices and opaque directories get the
    ``trusted.overlay.opaque=y`` attribute instead of removing anything. ``same_owner``
    (default: when running as root) restores the owners recorded in the tar. ``spool_dir`` is
    where an unseekable stream is spooled for ``validate_first``. ``progress`` is called with the
    number of uncompressed bytes applied so far. ``parents`` are the directories of the layers
    below, topmost first (for applying into an overlayfs upper directory): a directory that an
    entry needs and that is missing under ``root`` takes its mode, owner, times and extended
    attributes from the first of them that has it, instead of defaults (0755, root).
    """
    if convert_whiteouts not in ("oci", "overlay"):
        raise errdefs.InvalidArgument(f"unknown whiteout conversion {convert_whiteouts!r}")
    if not os.path.isdir(root):
        raise errdefs.NotFound(f"failed to apply layer: root {root!r} is not a directory")
    root = os.path.realpath(root)
    if same_owner is None:
        same_owner = os.geteuid() == 0
    opts = _Options(
        overlay=convert_whiteouts == "overlay",
        strict=strict_symlinks,
        same_owner=same_owner,
        parents=tuple(os.path.realpath(p) for p in parents),
    )
    if not validate_first:
        return _run(root, stream, opts, write=True, progress=progress)

    spool: BinaryIO | None = None
    try:
        start = _tell_if_seekable(stream)
        if start is not None:
            _run(root, stream, opts, write=False)
            stream.seek(start)
            return _run(root, stream, opts, write=True, progress=progress)
        spool = tempfile.TemporaryFile(dir=spool_dir, prefix="layer-spool-")
        tee = _TeeReader(stream, spool)
        _run(root, tee, opts, write=False)
        tee.drain()
        spool.seek(0)
        return _run(root, spool, opts, write=True, progress=progress)
    finally:
        if spool is not None:
            spool.close()


# ---------------------------------------------------------------------------------------------
# stream plumbing


def _tell_if_seekable(stream: Any) -> int | None:
    try:
        if not stream.seekable():
            return None
        return int(stream.tell())
    except (AttributeError, OSError, ValueError):
        return None


class _TeeReader:
    """Copies everything read from ``raw`` into ``spool``."""

    def __init__(self, raw: Any, spool: BinaryIO) -> None:
        self._raw = raw
        self._spool = spool

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._raw.read(n)
        if data:
            self._spool.write(data)
        return data

    def drain(self) -> None:
        while self.read(READ_CHUNK):
            pass


class _HashingReader:
    """Hashes and counts what the tar reader takes from the decompressed stream."""

    def __init__(self, reader: DecompressReader, progress: Progress | None) -> None:
        self._reader = reader
        self._progress = progress
        self.hasher = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._reader.read(n)
        if data:
            self.hasher.update(data)
            self.count += len(data)
            if self._progress is not None:
                self._progress(self.count)
        return data

    def drain(self) -> None:
        while self.read(READ_CHUNK):
            pass


class _CorruptTar(Exception):
    pass


_InvalidHeaderError: type[Exception] = tarfile.InvalidHeaderError  # type: ignore[attr-defined]
_TruncatedHeaderError: type[Exception] = tarfile.TruncatedHeaderError  # type: ignore[attr-defined]


class _StrictTarInfo(tarfile.TarInfo):
    """Makes a corrupt or truncated header an error instead of a quiet end of archive."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Any:
        try:
            return super().fromtarfile(tarfile_)
        except (_InvalidHeaderError, _TruncatedHeaderError) as exc:
            raise _CorruptTar(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# the trees an apply runs against: the disk, or a simulation of the layer on top of it

_ABSENT = "absent"
_DIR = "dir"
_FILE = "file"
_SYMLINK = "symlink"
_OTHER = "other"

_Kind = tuple[str, str | None]


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _parent_of(rel: str) -> str:
    return rel.rpartition("/")[0]


class _DiskTree:
    def __init__(self, root: str) -> None:
        self.root = root
        self._dirs: set[str] = {""}

    def full(self, rel: str) -> str:
        return _join(self.root, rel) if rel else self.root

    def kind(self, rel: str) -> _Kind:
        if rel in self._dirs:
            return (_DIR, None)
        full = self.full(rel)
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            return (_ABSENT, None)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            self._dirs.add(rel)
            return (_DIR, None)
        if stat.S_ISLNK(mode):
            return (_SYMLINK, os.readlink(full))
        if stat.S_ISREG(mode):
            return (_FILE, None)
        return (_OTHER, None)

    def made_dir(self, rel: str) -> None:
        self._dirs.add(rel)

    def forget(self) -> None:
        self._dirs = {""}


class _SimTree:
    """The disk as it would look after the entries seen so far, without writing anything."""

    def __init__(self, disk: _DiskTree) -> None:
        self._disk = disk
        self._made: dict[str, _Kind] = {}
        #: paths whose on-disk descendants are gone (removed, replaced or made opaque)
        self._hidden: set[str] = set()
        self._disk_cache: dict[str, _Kind] = {}

    def kind(self, rel: str) -> _Kind:
        made = self._made.get(rel)
        if made is not None:
            return made
        if self._hidden:
            p = rel
            while p:
                p = _parent_of(p)
                if p in self._hidden:
                    return (_ABSENT, None)
        cached = self._disk_cache.get(rel)
        if cached is None:
            cached = self._disk_cache[rel] = self._disk.kind(rel)
        return cached

    def put(self, rel: str, kind: _Kind) -> None:
        self._made[rel] = kind

    def hide_below(self, rel: str) -> None:
        """Hide what is on disk below ``rel``; what this layer made there stays."""
        self._hidden.add(rel)

    def remove(self, rel: str) -> None:
        """Remove ``rel`` and everything below it, on disk or made by this layer."""
        was_dir = self.kind(rel)[0] == _DIR
        self._hidden.add(rel)
        if was_dir:
            prefix = rel + "/"
            for key in [k for k in self._made if k.startswith(prefix)]:
                del self._made[key]
        self._made[rel] = (_ABSENT, None)


# ---------------------------------------------------------------------------------------------
# names and resolution


def _clean(name: str, entry: str, what: str = "path") -> list[str]:
    """The components of ``name`` cleaned lexically, relative to the root."""
    if "\x00" in name:
        raise errdefs.InvalidArgument(f"invalid layer entry {entry!r}: {what} contains a NUL byte")
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise errdefs.InvalidArgument(
                    f'invalid layer entry {entry!r}: {what} {name!r} escapes the root with ".."'
                )
            parts.pop()
            continue
        parts.append(comp)
    return parts


@attrs.frozen
class _Options:
    overlay: bool
    strict: bool
    same_owner: bool
    parents: tuple[str, ...] = ()


def _resolve_dir(
    tree: _DiskTree | _SimTree,
    comps: list[str],
    entry: str,
    strict: bool,
    *,
    missing: list[str] | None,
) -> str:
    """Resolve ``comps`` as a directory inside the root, following symbolic links in it.

    Components that do not exist are appended to ``missing`` (which the caller creates) or,
    when ``missing`` is None, make the lookup fail. Returns the resolved relative path.
    """
    resolved: list[str] = []
    todo = deque(comps)
    links = 0
    creating = False
    while todo:
        comp = todo.popleft()
        if comp in ("", "."):
            continue
        if comp == "..":
            if creating:
                raise errdefs.InvalidArgument(
                    f"invalid layer entry {entry!r}: path goes back out of a missing directory"
                )
            if not resolved:
                if strict:
                    raise errdefs.InvalidArgument(
                        f"invalid layer entry {entry!r}: path escapes the root through a "
                        "symbolic link"
                    )
                continue
            resolved.pop()
            continue
        if creating:
            resolved.append(comp)
            assert missing is not None
            missing.append("/".join(resolved))
            continue
        rel = "/".join([*resolved, comp])
        kind, target = tree.kind(rel)
        if kind == _DIR:
            resolved.append(comp)
        elif kind == _SYMLINK:
            links += 1
            if links > MAX_SYMLINKS:
                raise errdefs.InvalidArgument(
                    f"invalid layer entry {entry!r}: too many levels of symbolic links"
                )
            assert target is not None
            if target.startswith("/"):
                if strict:
                    raise errdefs.InvalidArgument(
                        f"invalid layer entry {entry!r}: parent path goes through symbolic link "
                        f"{rel!r} -> {target!r}, which points outside the root"
                    )
                resolved = []
            if strict and _climbs_out(len(resolved), target):
                raise errdefs.InvalidArgument(
                    f"invalid layer entry {entry!r}: parent path goes through symbolic link "
                    f"{rel!r} -> {target!r}, which points outside the root"
                )
            todo.extendleft(reversed(target.split("/")))
        elif kind == _ABSENT:
            if missing is None:
                raise errdefs.InvalidArgument(
                    f"invalid layer entry {entry!r}: {rel!r} does not exist"
                )
            creating = True
            resolved.append(comp)
            missing.append(rel)
        else:
            raise errdefs.InvalidArgument(
                f"invalid layer entry {entry!r}: parent {rel!r} is not a directory"
            )
    return "/".join(resolved)


def _climbs_out(depth: int, target: str) -> bool:
    for comp in target.split("/"):
        if comp == "..":
            depth -= 1
            if depth < 0:
                return True
        elif comp not in ("", "."):
            depth += 1
    return False


# ---------------------------------------------------------------------------------------------
# one pass over the tar


def _run(
    root: str,
    stream: Any,
    opts: _Options,
    *,
    write: bool,
    progress: Progress | None = None,
) -> ApplyResult:
    reader = decompress_stream(stream)
    hashing = _HashingReader(reader, progress if write else None)
    disk = _DiskTree(root)
    applier = _Applier(disk, opts) if write else _Validator(_SimTree(disk), opts)
    size = 0
    entries = 0
    try:
        try:
            tf = tarfile.open(  # type: ignore[call-overload]
                fileobj=hashing,
                mode="r|",
                bufsize=_TAR_BUFSIZE,
                tarinfo=_StrictTarInfo,
            )
        except tarfile.ReadError as exc:
            if hashing.count == 0:
                tf = None  # an empty stream is an empty layer
            else:
                raise errdefs.InvalidArgument(f"invalid layer tar: {exc}") from exc
        if tf is not None:
            with tf:
                for member in tf:
                    entries += 1
                    size += member.size
                    applier.entry(member, tf)
        applier.finish()
        hashing.drain()
    except _CorruptTar as exc:
        raise errdefs.InvalidArgument(f"invalid layer tar: {exc}") from None
    except (tarfile.ReadError, tarfile.StreamError, EOFError) as exc:
        raise errdefs.InvalidArgument(f"invalid layer tar: {exc}") from exc
    return ApplyResult(
        size=size,
        diff_id="sha256:" + hashing.hasher.hexdigest(),
        uncompressed_size=hashing.count,
        compressed_size=reader.compressed_size,
        compression=reader.compression,
        entries=entries,
    )


def _check_member(member: tarfile.TarInfo) -> None:
    if member.isreg() or member.isdir() or member.issym() or member.islnk() or member.isfifo():
        return
    if member.ischr() or member.isblk():
        if not (0 <= member.devmajor <= _MAX_DEV and 0 <= member.devminor <= _MAX_DEV):
            raise errdefs.InvalidArgument(
                f"invalid layer entry {member.name!r}: device number "
                f"{member.devmajor}:{member.devminor} out of range"
            )
        return
    raise errdefs.InvalidArgument(
        f"invalid layer entry {member.name!r}: unsupported tar entry type {member.type!r}"
    )


def _whiteout_target(member: tarfile.TarInfo, base: str) -> str:
    original = base[len(WHITEOUT_PREFIX) :]
    if original in ("", ".", ".."):
        raise errdefs.InvalidArgument(
            f"invalid layer entry {member.name!r}: whiteout names no file"
        )
    return original


class _Validator:
    """The first pass: checks every entry against a simulation of the tree."""

    def __init__(self, tree: _SimTree, opts: _Options) -> None:
        self.tree = tree
        self.opts = opts

    def _parent(self, comps: list[str], entry: str) -> str:
        missing: list[str] = []
        parent = _resolve_dir(self.tree, comps, entry, self.opts.strict, missing=missing)
        for rel in missing:
            self.tree.put(rel, (_DIR, None))
        return parent

    def entry(self, member: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        name = member.name
        comps = _clean(name, name)
        if not comps:
            return
        _check_member(member)
        parent = self._parent(comps[:-1], name)
        base = comps[-1]
        tree = self.tree
        if base == WHITEOUT_OPAQUE:
            if not self.opts.overlay:
                tree.hide_below(parent)
            return
        if base.startswith(WHITEOUT_PREFIX):
            rel = _join(parent, _whiteout_target(member, base))
            if self.opts.overlay:
                tree.remove(rel)
                tree.put(rel, (_OTHER, None))
            else:
                tree.remove(rel)
            return
        rel = _join(parent, base)
        if member.islnk():
            _link_target(tree, member, self.opts.strict)
        existing, _ = tree.kind(rel)
        if existing != _ABSENT and not (existing == _DIR and member.isdir()):
            tree.remove(rel)
        if member.isdir():
            tree.put(rel, (_DIR, None))
        elif member.issym():
            tree.put(rel, (_SYMLINK, member.linkname))
        elif member.isreg() or member.islnk():
            tree.put(rel, (_FILE, None))
        else:
            tree.put(rel, (_OTHER, None))

    def finish(self) -> None:
        pass


def _link_target(tree: _DiskTree | _SimTree, member: tarfile.TarInfo, strict: bool) -> str:
    comps = _clean(member.linkname, member.name, "hard link target")
    if not comps:
        raise errdefs.InvalidArgument(
            f"invalid layer entry {member.name!r}: hard link to the root directory"
        )
    parent = _resolve_dir(tree, comps[:-1], member.name, strict, missing=None)
    rel = _join(parent, comps[-1])
    kind, _ = tree.kind(rel)
    if kind == _ABSENT:
        raise errdefs.InvalidArgument(
            f"invalid layer entry {member.name!r}: hard link target {member.linkname!r} "
            "does not exist"
        )
    if kind == _DIR:
        raise errdefs.InvalidArgument(
            f"invalid layer entry {member.name!r}: hard link target {member.linkname!r} "
            "is a directory"
        )
    return rel


def _os_error(exc: OSError, what: str) -> errdefs.ContainerdError:
    msg = f"{what}: {exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return errdefs.ResourceExhausted(msg)
    if exc.errno in (errno.EPERM, errno.EACCES):
        return errdefs.PermissionDenied(msg)
    if exc.errno in (errno.EINVAL, errno.ENOTDIR, errno.EISDIR, errno.ELOOP):
        return errdefs.InvalidArgument(msg)
    return errdefs.Unknown(msg)


def _pax_ns(member: tarfile.TarInfo, key: str) -> int | None:
    raw = member.pax_headers.get(key)
    if raw is None:
        return None
    try:
        sec, _, frac = raw.partition(".")
        neg = sec.startswith("-")
        ns = abs(int(sec)) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
        return -ns if neg else ns
    except ValueError:
        return None


def _times_ns(member: tarfile.TarInfo) -> tuple[int, int]:
    mtime = _pax_ns(member, "mtime")
    if mtime is None:
        mtime = int(member.mtime) * 1_000_000_000
    atime = _pax_ns(member, "atime")
    if atime is None or atime < mtime:
        atime = mtime
    mtime = max(-_NS_LIMIT, min(_NS_LIMIT, mtime))
    atime = max(-_NS_LIMIT, min(_NS_LIMIT, atime))
    return atime, mtime


class _Applier:
    """The writing pass."""

    def __init__(self, tree: _DiskTree, opts: _Options) -> None:
        self.tree = tree
        self.opts = opts
        self.unpacked: set[str] = set()
        #: directories made or merged: (path, mode, atime, mtime), set when all is written
        self.dirs: list[tuple[str, int, int, int]] = []
        self._buf = bytearray(_COPY_BUF)
        self._is_root = os.geteuid() == 0

    # -- filesystem helpers --------------------------------------------------------------

    def _remove(self, rel: str, kind: str) -> None:
        full = self.tree.full(rel)
        try:
            if kind == _DIR:
                _rmtree(full)
            else:
                os.unlink(full)
        except FileNotFoundError:
            pass
        if kind in (_DIR, _SYMLINK):
            self.tree.forget()

    def _parent(self, comps: list[str], entry: str) -> str:
        missing: list[str] = []
        parent = _resolve_dir(self.tree, comps, entry, self.opts.strict, missing=missing)
        for rel in missing:
            full = self.tree.full(rel)
            os.mkdir(full, 0o755)
            os.chmod(full, 0o755)
            self.tree.made_dir(rel)
            self.unpacked.add(rel)
            if self.opts.parents:
                self._copy_parent_dir_info(rel, full)
        return parent

    def _copy_parent_dir_info(self, rel: str, full: str) -> None:
        """Give a directory made for an entry the metadata it has in the layers below."""
        for lower in self.opts.parents:
            lower_tree = _DiskTree(lower)
            try:
                found = _resolve_dir(lower_tree, rel.split("/"), rel, False, missing=None)
            except errdefs.InvalidArgument:
                continue  # not in this layer (or not a directory there): look further down
            src = lower_tree.full(found)
            st = os.lstat(src)
            if self.opts.same_owner:
                os.chown(full, st.st_uid, st.st_gid, follow_symlinks=False)
            os.chmod(full, stat.S_IMODE(st.st_mode))
            for attr in os.listxattr(src, follow_symlinks=False):
                if not attr.startswith("trusted."):
                    value = os.getxattr(src, attr, follow_symlinks=False)
                    os.setxattr(full, attr, value, follow_symlinks=False)
            self.dirs.append((rel, stat.S_IMODE(st.st_mode), st.st_atime_ns, st.st_mtime_ns))
            return
        log.debug("parent directory %r not found in lower layers: default permissions", rel)

    # -- entries -------------------------------------------------------------------------

    def entry(self, member: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        name = member.name
        comps = _clean(name, name)
        if not comps:
            log.debug("layer entry %r resolves to the root, ignored", name)
            return
        _check_member(member)
        try:
            self._entry(member, tf, comps)
        except OSError as exc:
            raise _os_error(exc, f"failed to apply layer entry {name!r}") from exc

    def _entry(self, member: tarfile.TarInfo, tf: tarfile.TarFile, comps: list[str]) -> None:
        name = member.name
        parent = self._parent(comps[:-1], name)
        base = comps[-1]
        tree = self.tree
        if base == WHITEOUT_OPAQUE:
            if self.opts.overlay:
                os.setxattr(tree.full(parent), OVERLAY_OPAQUE_XATTR, b"y")
            else:
                self._make_opaque(parent)
            return
        if base.startswith(WHITEOUT_PREFIX):
            rel = _join(parent, _whiteout_target(member, base))
            kind, _ = tree.kind(rel)
            if kind != _ABSENT:
                self._remove(rel, kind)
            if self.opts.overlay:
                full = tree.full(rel)
                os.mknod(full, stat.S_IFCHR, 0)
                if self.opts.same_owner:
                    os.chown(full, member.uid, member.gid, follow_symlinks=False)
            return

        rel = _join(parent, base)
        link_rel = _link_target(tree, member, self.opts.strict) if member.islnk() else None
        kind, _ = tree.kind(rel)
        if kind != _ABSENT and not (kind == _DIR and member.isdir()):
            if link_rel == rel:
                raise errdefs.InvalidArgument(f"invalid layer entry {name!r}: hard link to itself")
            self._remove(rel, kind)
        full = tree.full(rel)
        if member.isreg():
            self._write_file(full, member, tf)
        elif member.isdir():
            if kind != _DIR:
                os.mkdir(full, 0o700)
                tree.made_dir(rel)
            self._metadata(full, member, is_dir=True)
            atime, mtime = _times_ns(member)
            self.dirs.append((rel, member.mode & 0o7777, atime, mtime))
        elif member.issym():
            os.symlink(member.linkname, full)
            self._metadata(full, member, is_link=True)
        elif member.islnk():
            assert link_rel is not None
            os.link(tree.full(link_rel), full, follow_symlinks=False)
            # as containerd does, the link entry's owner, xattrs, mode and times go to the
            # shared inode (never through it when the target is a symlink)
            self._metadata(full, member, is_link=stat.S_ISLNK(os.lstat(full).st_mode))
        elif member.isfifo():
            os.mkfifo(full, 0o600)
            self._metadata(full, member)
        else:  # character or block device
            if not self._is_root:
                log.warning("layer entry %r is a device, which needs root: ignored", name)
                return
            kind_bit = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(full, kind_bit | 0o600, os.makedev(member.devmajor, member.devminor))
            self._metadata(full, member)
        self.unpacked.add(rel)

    def _write_file(self, full: str, member: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        fd = os.open(
            full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            if member.size:
                src = tf.extractfile(member)
                assert src is not None
                view = memoryview(self._buf)
                remaining = member.size
                while remaining:
                    n = src.readinto(view[: min(remaining, _COPY_BUF)])  # type: ignore[attr-defined]
                    if not n:
                        raise errdefs.InvalidArgument(
                            f"invalid layer tar: unexpected end of data in {member.name!r}"
                        )
                    remaining -= n
                    out = view[:n]
                    while out:
                        written = os.write(fd, out)
                        out = out[written:]
            if self.opts.same_owner:
                os.fchown(fd, member.uid, member.gid)
            self._xattrs(fd, member, regular=True)
            os.fchmod(fd, member.mode & 0o7777)
            atime, mtime = _times_ns(member)
            os.utime(fd, ns=(atime, mtime))
        finally:
            os.close(fd)

    def _metadata(
        self, full: str, member: tarfile.TarInfo, *, is_dir: bool = False, is_link: bool = False
    ) -> None:
        if self.opts.same_owner:
            os.chown(full, member.uid, member.gid, follow_symlinks=False)
        self._xattrs(full, member, regular=is_dir)
        if not is_link and not is_dir:  # directories get their mode at the end
            os.chmod(full, member.mode & 0o7777)
        if not is_dir:
            atime, mtime = _times_ns(member)
            os.utime(full, ns=(atime, mtime), follow_symlinks=False)

    def _xattrs(self, target: str | int, member: tarfile.TarInfo, *, regular: bool) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith(PAX_XATTR_PREFIX):
                continue
            attr = key[len(PAX_XATTR_PREFIX) :]
            if attr.startswith("trusted."):
                log.warning(
                    "layer entry %r: ignored xattr %s (trusted attributes are not taken from "
                    "archives)",
                    member.name,
                    attr,
                )
                continue
            data = value.encode("utf-8", "surrogateescape")
            try:
                if isinstance(target, int):
                    os.setxattr(target, attr, data)
                else:
                    os.setxattr(target, attr, data, follow_symlinks=False)
            except OSError as exc:
                if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP) or (
                    exc.errno == errno.EPERM and attr.startswith("user.") and not regular
                ):
                    log.warning(
                        "layer entry %r: ignored xattr %s: %s", member.name, attr, exc.strerror
                    )
                    continue
                raise

    def _make_opaque(self, parent: str) -> None:
        """Remove everything below ``parent`` that this layer did not add."""
        full_parent = self.tree.full(parent)
        removed = False
        stack = [parent]
        while stack:
            d = stack.pop()
            try:
                names = os.listdir(self.tree.full(d))
            except FileNotFoundError:
                continue
            for n in names:
                rel = _join(d, n)
                full = self.tree.full(rel)
                if rel in self.unpacked:
                    if os.path.isdir(full) and not os.path.islink(full):
                        stack.append(rel)
                    continue
                if os.path.isdir(full) and not os.path.islink(full):
                    _rmtree(full)
                else:
                    os.unlink(full)
                removed = True
        if removed:
            self.tree.forget()
        log.debug("made %s opaque", full_parent)

    def finish(self) -> None:
        try:
            for rel, mode, atime, mtime in self.dirs:
                full = self.tree.full(rel)
                try:
                    st = os.lstat(full)
                except (FileNotFoundError, NotADirectoryError):
                    continue  # removed by a later entry
                if stat.S_ISDIR(st.st_mode):
                    os.chmod(full, mode)
                    os.utime(full, ns=(atime, mtime), follow_symlinks=False)
        except OSError as exc:
            raise _os_error(exc, "failed to set directory metadata") from exc


def _rmtree(path: str) -> None:
    """Remove a directory tree, never following symbolic links, making unwritable directories
    writable on the way (a layer may contain mode 0500 directories)."""

    def onerror(func: Any, p: str, exc_info: Any) -> None:
        exc = exc_info[1]
        if isinstance(exc, FileNotFoundError):
            return
        if isinstance(exc, PermissionError):
            parent = os.path.dirname(p)
            os.chmod(parent, 0o700)
            func(p)
            return
        raise exc

    shutil.rmtree(path, onerror=onerror)


__all__ = [
    "ApplyResult",
    "WhiteoutMode",
    "apply_layer",
    "WHITEOUT_PREFIX",
    "WHITEOUT_OPAQUE",
    "OVERLAY_OPAQUE_XATTR",
]
