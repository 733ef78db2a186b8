"""Unix socket chores shared by every listener (gRPC, ttrpc, HTTP); no grpc import here."""

from __future__ import annotations

import contextlib
import grp
import os


def prepare_unix_socket(path: str) -> None:
    """Create the parent directory and remove a stale socket left by a previous run."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o711, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def secure_unix_socket(path: str, uid: int, gid: int, mode: int = 0o660) -> None:
    os.chmod(path, mode)
    if uid >= 0 or gid >= 0:
        os.chown(path, uid, gid)


def resolve_gid(value: int | str) -> int:
    if isinstance(value, int):
        return value
    return grp.getgrnam(value).gr_gid


def strip_unix(address: str) -> str:
    return address[len("unix://") :] if address.startswith("unix://") else address
