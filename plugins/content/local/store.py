"""A content store on the local filesystem, laid out as containerd's local store:

    <root>/blobs/<algorithm>/<hex>            committed blobs, read-only
    <root>/ingest/<sha256 hex of ref>/ref       the ref text
                                     /data      bytes written so far
                                     /startedat /updatedat   RFC 3339 timestamps
                                     /total     expected size, when known

Ingests are resumable: opening a writer for a ref that has data continues at its end (the
existing bytes are hashed again), also after a restart. One writer per ref at a time: in this
process through a lock table, across processes through an exclusive ``flock`` on ``data``.
Commit verifies size and digest, fsyncs, makes the file read-only and renames it into
``blobs/`` atomically.

Labels normally live in the metadata store. This store keeps them only when given a
:class:`LabelStore` (e.g. :class:`MemoryLabelStore`, in memory, for tests and standalone use);
without one, commit labels are ignored and ``update`` is FailedPrecondition.

Blocking work (file I/O, hashing, fsync) runs in threads via ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import datetime
import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import stat
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core import filters as filterlib
from pycontainerd.core.content import digests
from pycontainerd.core.content.adaptors import adapt_info, adapt_status
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.content.types import Info, Status

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_FILE_MODE = 0o644
_DIR_MODE = 0o755


class LabelStore(Protocol):
    """Where the local store keeps labels when it is used on its own (no metadata store)."""

    def get(self, dgst: str) -> dict[str, str]: ...

    def set(self, dgst: str, labels: Mapping[str, str]) -> None:
        """Replace all labels of ``dgst``."""
        ...

    def update(self, dgst: str, labels: Mapping[str, str]) -> dict[str, str]:
        """Merge ``labels`` into those of ``dgst`` (an empty value removes the key); returns
        the result."""
        ...

    def delete(self, dgst: str) -> None: ...


@attrs.define(eq=False)
class MemoryLabelStore:
    """A :class:`LabelStore` in memory (lost at restart)."""

    _labels: dict[str, dict[str, str]] = attrs.Factory(dict)
    _mu: threading.Lock = attrs.Factory(threading.Lock)

    def get(self, dgst: str) -> dict[str, str]:
        with self._mu:
            return dict(self._labels.get(dgst, {}))

    def set(self, dgst: str, labels: Mapping[str, str]) -> None:
        with self._mu:
            clean = {k: v for k, v in labels.items() if v}
            if clean:
                self._labels[dgst] = clean
            else:
                self._labels.pop(dgst, None)

    def update(self, dgst: str, labels: Mapping[str, str]) -> dict[str, str]:
        with self._mu:
            current = dict(self._labels.get(dgst, {}))
            for k, v in labels.items():
                if v:
                    current[k] = v
                else:
                    current.pop(k, None)
            if current:
                self._labels[dgst] = current
            else:
                self._labels.pop(dgst, None)
            return dict(current)

    def delete(self, dgst: str) -> None:
        with self._mu:
            self._labels.pop(dgst, None)


# --- timestamps (the RFC 3339 text Go's time.MarshalText writes) -------------------------

_TS = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _format_ts(t: datetime.datetime) -> bytes:
    t = t.astimezone(datetime.UTC)
    return (t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z").encode()


def _parse_ts(text: str) -> datetime.datetime:
    m = _TS.match(text.strip())
    if not m:
        raise errdefs.DataLoss(f"could not parse timestamp {text!r}")
    base, frac, zone = m.groups()
    micro = (frac or "").ljust(6, "0")[:6]
    tz = "+00:00" if zone == "Z" else zone
    return datetime.datetime.fromisoformat(f"{base}.{micro}{tz}").astimezone(datetime.UTC)


def _from_epoch_ns(ns: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC)


def _epoch_ns(t: datetime.datetime) -> int:
    return int(t.timestamp() * 1_000_000) * 1000


def _write_file(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def _hash_file(fd: int, alg: str, length: int) -> Any:
    """A hash of the first ``length`` bytes of ``fd`` (read with pread; offset untouched)."""
    h = digests.new_hash(alg)
    pos = 0
    while pos < length:
        chunk = os.pread(fd, min(_CHUNK, length - pos), pos)
        if not chunk:
            break
        h.update(chunk)
        pos += len(chunk)
    return h


@attrs.define(eq=False)
class LocalReaderAt:
    """Random access to one committed blob through a file descriptor."""

    _fd: int | None
    _size: int

    @property
    def size(self) -> int:
        return self._size

    async def read_at(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0:
            raise errdefs.InvalidArgument(f"invalid read at offset {offset} of {n} bytes")
        if self._fd is None:
            raise errdefs.FailedPrecondition("read from closed content reader")
        if n == 0 or offset >= self._size:
            return b""
        n = min(n, self._size - offset)
        return await asyncio.to_thread(self._pread, self._fd, offset, n)

    @staticmethod
    def _pread(fd: int, offset: int, n: int) -> bytes:
        parts: list[bytes] = []
        while n > 0:
            chunk = os.pread(fd, n, offset)
            if not chunk:
                break
            parts.append(chunk)
            offset += len(chunk)
            n -= len(chunk)
        return b"".join(parts)

    async def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    async def __aenter__(self) -> LocalReaderAt:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


@attrs.define(eq=False)
class _Lock:
    since: datetime.datetime


@attrs.define(eq=False)
class LocalStore:
    """The local content store (see the module docstring). Build it with :meth:`open`."""

    _root: str
    _label_store: LabelStore | None = None
    _locks: dict[str, _Lock] = attrs.Factory(dict)
    _locks_mu: threading.Lock = attrs.Factory(threading.Lock)

    @classmethod
    async def open(cls, root: str, label_store: LabelStore | None = None) -> LocalStore:
        """Create ``root`` (and ``blobs/``, ``ingest/``) if needed; remove ingest directories
        a crash left without data."""
        store = cls(root, label_store)
        await asyncio.to_thread(store._prepare)
        return store

    @property
    def root(self) -> str:
        return self._root

    def _prepare(self) -> None:
        os.makedirs(os.path.join(self._root, "blobs"), mode=_DIR_MODE, exist_ok=True)
        ingest = os.path.join(self._root, "ingest")
        os.makedirs(ingest, mode=_DIR_MODE, exist_ok=True)
        for name in os.listdir(ingest):
            path = os.path.join(ingest, name)
            if os.path.isdir(path) and not os.path.exists(os.path.join(path, "data")):
                log.info("removing incomplete ingest directory %s", path)
                shutil.rmtree(path, ignore_errors=True)

    # --- paths ----------------------------------------------------------------------------

    def blob_path(self, dgst: str) -> str:
        alg, hexpart = digests.parse(dgst)
        return os.path.join(self._root, "blobs", alg, hexpart)

    def ingest_root(self, ref: str) -> str:
        return os.path.join(self._root, "ingest", hashlib.sha256(ref.encode()).hexdigest())

    # --- locks ----------------------------------------------------------------------------

    def _try_lock(self, ref: str) -> None:
        with self._locks_mu:
            held = self._locks.get(ref)
            if held is not None:
                since = held.since
                age = _now() - since
                raise errdefs.Unavailable(
                    f"ref {ref} locked for {age.total_seconds():.3f}s "
                    f"(since {since.isoformat()}): unavailable"
                )
            self._locks[ref] = _Lock(since=_now())

    def _unlock(self, ref: str) -> None:
        with self._locks_mu:
            self._locks.pop(ref, None)

    # --- Provider / Manager ---------------------------------------------------------------

    def _info_from_stat(self, dgst: str, st: os.stat_result) -> Info:
        labels = self._label_store.get(dgst) if self._label_store is not None else {}
        return Info(
            digest=dgst,
            size=st.st_size,
            created_at=_from_epoch_ns(st.st_mtime_ns),
            updated_at=_from_epoch_ns(st.st_atime_ns),
            labels=labels,
        )

    def _stat_blob(self, dgst: str) -> os.stat_result:
        path = self.blob_path(dgst)
        try:
            return os.stat(path)
        except FileNotFoundError:
            raise errdefs.NotFound(f"content {dgst}: not found") from None

    async def info(self, dgst: str) -> Info:
        st = await asyncio.to_thread(self._stat_blob, dgst)
        return self._info_from_stat(dgst, st)

    async def reader_at(self, desc: Descriptor) -> LocalReaderAt:
        path = self.blob_path(desc.digest)

        def _open() -> LocalReaderAt:
            try:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOATIME)
                except PermissionError:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise errdefs.NotFound(f"content {desc.digest}: blob not found") from None
            return LocalReaderAt(fd, os.fstat(fd).st_size)

        return await asyncio.to_thread(_open)

    async def update(self, info: Info, fieldpaths: Sequence[str] | None = None) -> Info:
        if self._label_store is None:
            raise errdefs.FailedPrecondition(
                "update not supported on immutable content store: no label store"
            )
        ls = self._label_store
        dgst = info.digest
        path = self.blob_path(dgst)
        replace_all = False
        labels: dict[str, str] = {}
        if fieldpaths:
            for fp in fieldpaths:
                if fp == "labels":
                    replace_all = True
                    labels = dict(info.labels)
                elif fp.startswith("labels."):
                    key = fp[len("labels.") :]
                    labels[key] = info.labels.get(key, "")
                else:
                    raise errdefs.InvalidArgument(
                        f"cannot update {fp!r} field on content info {dgst!r}"
                    )
        else:
            replace_all = True
            labels = dict(info.labels)

        def _update() -> Info:
            st = self._stat_blob(dgst)
            if replace_all:
                ls.set(dgst, labels)
            else:
                ls.update(dgst, labels)
            now = _now()
            try:
                # atime carries updated_at, mtime created_at (as containerd's local store).
                os.utime(path, ns=(_epoch_ns(now), st.st_mtime_ns))
            except OSError as exc:
                log.warning("could not change access time for %s: %s", dgst, exc)
            return attrs.evolve(self._info_from_stat(dgst, st), updated_at=now)

        return await asyncio.to_thread(_update)

    def _list_blobs(self) -> list[Info]:
        out: list[Info] = []
        blobs = os.path.join(self._root, "blobs")
        try:
            algs = sorted(os.listdir(blobs))
        except FileNotFoundError:
            return out
        for alg in algs:
            if alg not in digests.ALGORITHMS:
                continue
            algdir = os.path.join(blobs, alg)
            try:
                names = sorted(os.listdir(algdir))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name in names:
                dgst = f"{alg}:{name}"
                if not digests.is_valid(dgst):
                    log.error("invalid digest for blob path %s", os.path.join(algdir, name))
                    continue
                try:
                    st = os.stat(os.path.join(algdir, name))
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                out.append(self._info_from_stat(dgst, st))
        return out

    async def walk(self, filters: Sequence[str] = ()) -> AsyncIterator[Info]:
        flt = filterlib.parse_all(filters)
        for info in await asyncio.to_thread(self._list_blobs):
            if flt.match(adapt_info(info)):
                yield info

    async def delete(self, dgst: str) -> None:
        path = self.blob_path(dgst)

        def _delete() -> None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                raise errdefs.NotFound(f"content {dgst}: not found") from None
            if self._label_store is not None:
                self._label_store.delete(dgst)

        await asyncio.to_thread(_delete)

    # --- IngestManager --------------------------------------------------------------------

    def _status_at(self, path: str) -> Status:
        try:
            st = os.stat(os.path.join(path, "data"))
            ref = _read_text(os.path.join(path, "ref"))
        except FileNotFoundError:
            raise errdefs.NotFound(f"ingest {os.path.basename(path)}: not found") from None
        try:
            started = _parse_ts(_read_text(os.path.join(path, "startedat")))
            updated = _parse_ts(_read_text(os.path.join(path, "updatedat")))
        except FileNotFoundError:
            raise errdefs.NotFound(f"ingest ref {ref!r}: incomplete") from None
        mtime = _from_epoch_ns(st.st_mtime_ns)
        return Status(
            ref=ref,
            offset=st.st_size,
            total=self._total_at(path),
            started_at=started,
            # updatedat is written on open and close only; the data's mtime may be newer.
            updated_at=max(updated, mtime),
        )

    @staticmethod
    def _total_at(path: str) -> int:
        try:
            return int(_read_text(os.path.join(path, "total")).strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    async def status(self, ref: str) -> Status:
        path = self.ingest_root(ref)
        try:
            return await asyncio.to_thread(self._status_at, path)
        except errdefs.NotFound:
            raise errdefs.NotFound(f"ingest ref {ref!r}: not found") from None

    async def list_statuses(self, filters: Sequence[str] = ()) -> list[Status]:
        flt = filterlib.parse_all(filters)

        def _list() -> list[Status]:
            ingest = os.path.join(self._root, "ingest")
            try:
                names = sorted(os.listdir(ingest))
            except FileNotFoundError:
                return []
            out = []
            for name in names:
                try:
                    out.append(self._status_at(os.path.join(ingest, name)))
                except errdefs.NotFound:
                    continue  # committed or aborted while listing
            return out

        return [s for s in await asyncio.to_thread(_list) if flt.match(adapt_status(s))]

    async def abort(self, ref: str) -> None:
        path = self.ingest_root(ref)

        def _abort() -> None:
            if not os.path.isdir(path):
                raise errdefs.NotFound(f"ingest ref {ref!r}: not found")
            shutil.rmtree(path)

        await asyncio.to_thread(_abort)

    # --- Ingester -------------------------------------------------------------------------

    async def writer(self, ref: str, total: int = 0, expected: str = "") -> LocalWriter:
        if not ref:
            raise errdefs.InvalidArgument("ref must not be empty")
        if total < 0:
            raise errdefs.InvalidArgument(f"invalid total size {total} for ref {ref!r}")
        alg = digests.CANONICAL
        if expected:
            alg = digests.parse(expected)[0]
        self._try_lock(ref)
        try:
            return await asyncio.to_thread(self._open_writer, ref, total, expected, alg)
        except BaseException:
            self._unlock(ref)
            raise

    def _open_writer(self, ref: str, total: int, expected: str, alg: str) -> LocalWriter:
        if expected and os.path.exists(self.blob_path(expected)):
            raise errdefs.AlreadyExists(f"content {expected}: already exists")
        path = self.ingest_root(ref)
        os.makedirs(os.path.join(self._root, "ingest"), mode=_DIR_MODE, exist_ok=True)
        try:
            os.mkdir(path, _DIR_MODE)
            fresh = True
        except FileExistsError:
            fresh = False
        data = os.path.join(path, "data")
        fd = os.open(data, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise errdefs.Unavailable(
                        f"ref {ref} locked by another process: unavailable"
                    ) from None
                raise
            resumed = None if fresh else self._resume(path, fd, ref, total, alg)
            if resumed is None:
                started = _now()
                os.ftruncate(fd, 0)
                _write_file(os.path.join(path, "ref"), ref.encode())
                _write_file(os.path.join(path, "startedat"), _format_ts(started))
                _write_file(os.path.join(path, "updatedat"), _format_ts(started))
                if total > 0:
                    _write_file(os.path.join(path, "total"), str(total).encode())
                else:
                    try:
                        os.unlink(os.path.join(path, "total"))
                    except FileNotFoundError:
                        pass
                status = Status(ref=ref, total=total, started_at=started, updated_at=started)
                h = digests.new_hash(alg)
            else:
                status, h = resumed
                if total > 0 and status.total == 0:
                    _write_file(os.path.join(path, "total"), str(total).encode())
                    status = attrs.evolve(status, total=total)
            os.lseek(fd, status.offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        log.debug("opened content writer ref=%s offset=%d", ref, status.offset)
        return LocalWriter(
            store=self,
            ref=ref,
            path=path,
            fd=fd,
            offset=status.offset,
            total=status.total,
            expected=expected,
            alg=alg,
            hash=h,
            started_at=status.started_at,
            updated_at=status.updated_at,
        )

    def _resume(
        self, path: str, fd: int, ref: str, total: int, alg: str
    ) -> tuple[Status, Any] | None:
        """The status and re-computed hash of an existing ingest, or None to start over."""
        try:
            status = self._status_at(path)
        except (errdefs.NotFound, errdefs.DataLoss) as exc:
            log.info("failed to resume ingest at %s, starting over: %s", path, exc)
            return None
        if status.ref != ref:
            log.warning("ingest %s holds ref %r, not %r; starting over", path, status.ref, ref)
            return None
        if total > 0 and status.total > 0 and total != status.total:
            log.info(
                "ingest ref %r: total changed from %d to %d; starting over",
                ref,
                status.total,
                total,
            )
            return None
        size = os.fstat(fd).st_size
        return attrs.evolve(status, offset=size), _hash_file(fd, alg, size)


@attrs.define(eq=False, kw_only=True)
class LocalWriter:
    """An open ingest of a :class:`LocalStore` (holds the ref's lock until closed)."""

    _store: LocalStore
    _ref: str
    _path: str
    _fd: int | None
    _offset: int
    _total: int
    _expected: str
    _alg: str
    _hash: Any
    _started_at: datetime.datetime
    _updated_at: datetime.datetime
    _io: threading.Lock = attrs.Factory(threading.Lock)

    def _require_open(self, what: str) -> int:
        if self._fd is None:
            raise errdefs.FailedPrecondition(
                f"cannot {what} on closed writer for ref {self._ref!r}"
            )
        return self._fd

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        fd = self._require_open("write")
        n = len(memoryview(data).cast("B"))
        if n == 0:
            return 0

        def _write() -> None:
            # State changes happen in the thread, under the I/O lock, so that a cancelled
            # await can neither lose an offset update nor overlap the next operation.
            with self._io:
                _write_all(fd, data)
                self._hash.update(data)
                self._offset += n
                self._updated_at = _now()

        await asyncio.to_thread(_write)
        return n

    def digest(self) -> str:
        return digests.from_hash(self._alg, self._hash.copy())

    def status(self) -> Status:
        return Status(
            ref=self._ref,
            offset=self._offset,
            total=self._total,
            expected=self._expected,
            started_at=self._started_at,
            updated_at=self._updated_at,
        )

    async def truncate(self, size: int) -> None:
        fd = self._require_open("truncate")

        def _truncate() -> None:
            with self._io:
                if size < 0 or size > self._offset:
                    raise errdefs.InvalidArgument(
                        f"cannot truncate ref {self._ref!r} to {size}: offset is {self._offset}"
                    )
                os.ftruncate(fd, size)
                os.lseek(fd, size, os.SEEK_SET)
                self._hash = _hash_file(fd, self._alg, size)
                self._offset = size
                self._updated_at = _now()

        await asyncio.to_thread(_truncate)

    async def close(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None

        def _close() -> None:
            with self._io:
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                try:
                    _write_file(os.path.join(self._path, "updatedat"), _format_ts(self._updated_at))
                except FileNotFoundError:
                    pass  # aborted meanwhile

        try:
            await asyncio.to_thread(_close)
        finally:
            self._store._unlock(self._ref)

    async def commit(
        self, size: int = 0, expected: str = "", labels: Mapping[str, str] | None = None
    ) -> None:
        try:
            fd = self._require_open("commit")
            self._fd = None
            try:
                if expected:
                    digests.validate(expected)
            except BaseException:
                os.close(fd)
                raise
            await asyncio.to_thread(self._commit, fd, size, expected, dict(labels or {}))
        finally:
            # If the await was cancelled, the thread still finishes; the flock it holds on
            # ``data`` until after the rename keeps any new writer for the ref out meanwhile.
            self._store._unlock(self._ref)

    def _commit(self, fd: int, size: int, expected: str, labels: dict[str, str]) -> None:
        with self._io:
            try:
                dgst, st = self._commit_locked(fd, size, expected)
            finally:
                os.close(fd)
        self._tidy_after_commit(dgst, st, labels)

    def _commit_locked(self, fd: int, size: int, expected: str) -> tuple[str, os.stat_result]:
        data = os.path.join(self._path, "data")
        os.fsync(fd)
        st = os.fstat(fd)
        if size > 0 and size != st.st_size:
            raise errdefs.FailedPrecondition(
                f"unexpected commit size {st.st_size}, expected {size}"
            )
        dgst = digests.from_hash(self._alg, self._hash)
        if expected and digests.algorithm(expected) != self._alg:
            alg = digests.algorithm(expected)
            dgst = digests.from_hash(alg, _hash_file(fd, alg, st.st_size))
        if expected and expected != dgst:
            raise errdefs.FailedPrecondition(
                f"unexpected commit digest {dgst}, expected {expected}"
            )
        target = self._store.blob_path(dgst)
        os.makedirs(os.path.dirname(target), mode=_DIR_MODE, exist_ok=True)
        if os.path.exists(target):
            shutil.rmtree(self._path, ignore_errors=True)
            raise errdefs.AlreadyExists(f"content {dgst}: already exists")
        try:
            # Read-only before it becomes visible: clear write and execute bits.
            os.chmod(data, stat.S_IMODE(st.st_mode) & ~0o333)
            os.rename(data, target)
        except FileNotFoundError:
            raise errdefs.NotFound(f"ingest ref {self._ref!r}: aborted before commit") from None
        _fsync_dir(os.path.dirname(target))
        return dgst, st

    def _tidy_after_commit(self, dgst: str, st: os.stat_result, labels: dict[str, str]) -> None:
        target = self._store.blob_path(dgst)
        # From here the blob is committed; what follows only tidies up.
        try:
            os.utime(target)
        except OSError as exc:
            log.error("failed to set commit time on %s: %s", dgst, exc)
        shutil.rmtree(self._path, ignore_errors=True)
        if labels:
            if self._store._label_store is not None:
                try:
                    self._store._label_store.set(dgst, labels)
                except Exception as exc:  # committed anyway
                    log.error("failed to set labels on %s: %s", dgst, exc)
            else:
                log.debug("labels for %s dropped: store has no label store", dgst)
        log.debug("committed content ref=%s digest=%s size=%d", self._ref, dgst, st.st_size)

    async def __aenter__(self) -> LocalWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
