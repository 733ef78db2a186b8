"""Persistent network namespaces, as containerd's ``pkg/netns``.

A namespace is created by a short-lived dedicated thread that unshares ``CLONE_NEWNET`` (only
that thread moves; the event loop's thread never does), bind-mounts its
``/proc/self/task/<tid>/ns/net`` onto an empty file named ``cni-<uuid>`` under a base directory
(``/var/run/netns`` by default, ``<state>/netns`` when ``netns_mounts_under_state_dir`` is set),
switches back and exits. The bind mount keeps the namespace alive with no process in it; CNI
plugins and runc join it by path.

:meth:`NetNS.run_in` runs a function inside the namespace, again in a dedicated thread that
``setns``-es in and back out (a thread whose restore fails simply ends with it).

Everything here blocks briefly (a thread start, a mount); async callers use the ``a``-prefixed
wrappers, which run it off the event loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno as _errno
import fcntl
import logging
import os
import socket
import struct
import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from pycontainerd.core import errdefs

log = logging.getLogger(__name__)

T = TypeVar("T")

#: containerd's default base directory (``ip netns`` looks here too).
DEFAULT_BASE_DIR = "/var/run/netns"

CLONE_NEWNET = 0x40000000
_NS_GET_NSTYPE = 0xB703  # ioctl on an nsfs file: the namespace's CLONE_* type
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        lib.unshare.argtypes = [ctypes.c_int]
        lib.unshare.restype = ctypes.c_int
        lib.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.setns.restype = ctypes.c_int
        _libc = lib
    return _libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _unshare_net() -> None:
    _check(_lib().unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")


def _setns(fd: int) -> None:
    _check(_lib().setns(fd, CLONE_NEWNET), "setns(CLONE_NEWNET)")


def _thread_netns_path() -> str:
    return f"/proc/self/task/{threading.get_native_id()}/ns/net"


def _run_in_thread(fn: Callable[[], T], name: str) -> T:
    """Run ``fn`` in a fresh, dedicated thread and return its result (or raise its error)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as e:  # handed back to the caller's thread
            box["error"] = e

    t = threading.Thread(target=target, name=name, daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]


def _in_netns(path: str, fn: Callable[[], T]) -> T:
    """Body of a dedicated thread: setns into ``path``, run ``fn``, setns back."""
    orig = os.open(_thread_netns_path(), os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise errdefs.NotFound(f'network namespace "{path}" does not exist') from None
        try:
            _setns(target)
        except OSError as e:
            raise errdefs.InvalidArgument(
                f'failed to enter network namespace "{path}": {e.strerror}'
            ) from None
        finally:
            os.close(target)
        try:
            return fn()
        finally:
            try:
                _setns(orig)
            except OSError:  # the thread ends right after; nothing else runs in it
                log.error(
                    "failed to restore the network namespace of thread %d",
                    threading.get_native_id(),
                )
    finally:
        os.close(orig)


def is_netns(path: str) -> bool:
    """Whether ``path`` is a network namespace file (an nsfs bind mount or /proc ns link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        return fcntl.ioctl(fd, _NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False
    finally:
        os.close(fd)


def new_name() -> str:
    """A random namespace name, ``cni-<uuid>`` as containerd spells it."""
    return f"cni-{uuid.uuid4()}"


def _create(base_dir: str, pid: int) -> str:
    from pycontainerd.core.mount import Mount, linux

    os.makedirs(base_dir, mode=0o755, exist_ok=True)
    path = os.path.join(base_dir, new_name())
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    os.close(fd)
    try:
        if pid:
            source = f"/proc/{pid}/ns/net"
            linux.mount_at(Mount(type="none", source=source, options=("bind",)), path)
            return path

        def body() -> None:
            orig = os.open(_thread_netns_path(), os.O_RDONLY | os.O_CLOEXEC)
            try:
                _unshare_net()
                try:
                    linux.mount_at(
                        Mount(type="none", source=_thread_netns_path(), options=("bind",)), path
                    )
                finally:
                    try:
                        _setns(orig)
                    except OSError:
                        log.error("failed to restore the network namespace of a netns thread")
            finally:
                os.close(orig)

        _run_in_thread(body, "netns-create")
        return path
    except BaseException as e:
        try:
            os.unlink(path)
        except OSError:
            pass
        if isinstance(e, errdefs.ContainerdError):
            raise
        if isinstance(e, OSError):
            raise _categorise(e, f'failed to create network namespace at "{path}"') from e
        raise


def _categorise(e: OSError, message: str) -> errdefs.ContainerdError:
    text = f"{message}: {e.strerror or e}"
    if e.errno in (_errno.EPERM, _errno.EACCES):
        return errdefs.PermissionDenied(text)
    if e.errno == _errno.ENOENT:
        return errdefs.NotFound(text)
    if e.errno == _errno.EINVAL:
        return errdefs.InvalidArgument(text)
    return errdefs.Internal(text)


def _set_link_up(ifname: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH22x", ifname.encode(), 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req))[1]
        if not flags & _IFF_UP:
            req = struct.pack("16sH22x", ifname.encode(), flags | _IFF_UP)
            fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, req)


@attrs.define(eq=False)
class NetNS:
    """A network namespace pinned by a bind mount at :attr:`path`."""

    path: str

    @classmethod
    def create(cls, base_dir: str = DEFAULT_BASE_DIR, *, pid: int = 0) -> NetNS:
        """Create a new namespace under ``base_dir`` (or pin the one of process ``pid``)."""
        path = _create(base_dir, pid)
        log.debug("created network namespace %s", path)
        return cls(path)

    @classmethod
    def load(cls, path: str) -> NetNS:
        """Refer to an existing namespace (e.g. a path recorded before a restart)."""
        return cls(path)

    @classmethod
    async def acreate(cls, base_dir: str = DEFAULT_BASE_DIR, *, pid: int = 0) -> NetNS:
        return await asyncio.to_thread(cls.create, base_dir, pid=pid)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def closed(self) -> bool:
        """Whether the namespace is gone. A leftover plain file (no namespace mounted on it,
        as after a reboot) is removed and counts as closed, as containerd does."""
        if not os.path.lexists(self.path):
            return True
        if is_netns(self.path):
            return False
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise _categorise(e, f'failed to remove stale netns file "{self.path}"') from e
        return True

    def remove(self) -> None:
        """Unmount and delete the namespace file; a namespace already gone is no error."""
        from pycontainerd.core.mount import linux

        if not os.path.lexists(self.path):
            return
        path = os.path.realpath(self.path)
        linux.unmount_all(path, linux.MNT_DETACH)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise _categorise(e, f'failed to remove netns "{path}"') from e
        log.debug("removed network namespace %s", path)

    def run_in(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` inside the namespace, in a dedicated thread, and return its result."""
        return _run_in_thread(lambda: _in_netns(self.path, fn), "netns-run")

    def loopback_up(self) -> None:
        """Bring ``lo`` up inside the namespace (what ``use_internal_loopback`` does instead of
        calling the loopback CNI plugin)."""
        try:
            self.run_in(lambda: _set_link_up("lo"))
        except OSError as e:
            raise _categorise(e, f'failed to set lo up in "{self.path}"') from e

    async def aremove(self) -> None:
        await asyncio.to_thread(self.remove)

    async def arun_in(self, fn: Callable[[], T]) -> T:
        return await asyncio.to_thread(self.run_in, fn)

    async def aloopback_up(self) -> None:
        await asyncio.to_thread(self.loopback_up)
