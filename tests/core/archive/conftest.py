"""Builders for layer tars and a sandbox (root + outside) to apply them into."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def _entry(spec: tuple[Any, ...]) -> tuple[tarfile.TarInfo, bytes | None]:
    name, kind, *rest = spec
    opts: dict[str, Any] = rest[1] if len(rest) > 1 else {}
    info = tarfile.TarInfo(name)
    info.mtime = opts.get("mtime", 1_600_000_000)
    info.uid = opts.get("uid", 0)
    info.gid = opts.get("gid", 0)
    data: bytes | None = None
    if kind == "dir":
        info.type = tarfile.DIRTYPE
        info.mode = opts.get("mode", 0o755)
    elif kind == "file":
        data = rest[0] if rest else b""
        info.type = tarfile.REGTYPE
        info.mode = opts.get("mode", 0o644)
        info.size = len(data)
    elif kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = rest[0]
        info.mode = 0o777
    elif kind == "hardlink":
        info.type = tarfile.LNKTYPE
        info.linkname = rest[0]
        info.mode = opts.get("mode", 0o644)
    elif kind == "fifo":
        info.type = tarfile.FIFOTYPE
        info.mode = opts.get("mode", 0o644)
    elif kind in ("chr", "blk"):
        info.type = tarfile.CHRTYPE if kind == "chr" else tarfile.BLKTYPE
        info.devmajor, info.devminor = rest[0]
        info.mode = opts.get("mode", 0o666)
    else:
        raise ValueError(kind)
    if "xattrs" in opts:
        info.pax_headers = {
            "SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape")
            for k, v in opts["xattrs"].items()
        }
    return info, data


def build_tar(entries: list[tuple[Any, ...]]) -> bytes:
    """A PAX tar of ``entries``: ``(name, kind, [payload], [opts])`` with kind one of
    dir, file (payload: bytes), symlink/hardlink (payload: target), fifo, chr/blk
    (payload: (major, minor)); opts: mode, uid, gid, mtime, xattrs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for spec in entries:
            info, data = _entry(spec)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


@pytest.fixture
def make_tar() -> Callable[[list[tuple[Any, ...]]], bytes]:
    return build_tar


class Sandbox:
    """``root`` to apply into, ``outside`` beside it that must never change."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.outside = base / "outside"
        self.root.mkdir()
        self.outside.mkdir()
        (self.outside / "secret").write_bytes(b"secret")

    def outside_untouched(self) -> bool:
        names = sorted(os.listdir(self.outside))
        secret = self.outside / "secret"
        st = os.lstat(secret)
        return names == ["secret"] and secret.read_bytes() == b"secret" and st.st_nlink == 1

    def root_listing(self) -> list[str]:
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            for n in dirnames + filenames:
                out.append(os.path.relpath(os.path.join(dirpath, n), self.root))
        return sorted(out)


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)
