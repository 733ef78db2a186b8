"""Applying layers: OCI changeset semantics, metadata, compression, diff IDs, overlay mode."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
from typing import Any

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.archive.apply import apply_layer
from pycontainerd.core.archive.compression import Compression, compress_stream


def _apply(root: Any, tar: bytes, **kw: Any) -> Any:
    return apply_layer(str(root), io.BytesIO(tar), **kw)


def _compress(data: bytes, compression: Compression) -> bytes:
    out = io.BytesIO()
    with compress_stream(out, compression) as w:
        w.write(data)
    return out.getvalue()


def test_files_dirs_symlinks_hardlinks_keep_mode_and_mtime(sandbox: Any, make_tar: Any) -> None:
    tar = make_tar(
        [
            ("bin", "dir", None, {"mode": 0o751, "mtime": 1_500_000_000}),
            ("bin/su", "file", b"#!", {"mode": 0o4755, "mtime": 1_400_000_000}),
            ("bin/sh", "symlink", "su"),
            ("bin/su2", "hardlink", "bin/su", {"mode": 0o4755, "mtime": 1_400_000_000}),
            ("run/pipe", "fifo", None, {"mode": 0o600}),
        ]
    )
    _apply(sandbox.root, tar)
    root = sandbox.root
    st = os.lstat(root / "bin")
    assert stat.S_IMODE(st.st_mode) == 0o751 and st.st_mtime == 1_500_000_000
    st = os.lstat(root / "bin" / "su")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and st.st_mtime == 1_400_000_000
    assert st.st_nlink == 2 and os.lstat(root / "bin" / "su2").st_ino == st.st_ino
    assert os.readlink(root / "bin" / "sh") == "su"
    st = os.lstat(root / "run" / "pipe")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600


def test_a_hard_link_entry_sets_the_shared_inodes_mode_and_times(
    sandbox: Any, make_tar: Any
) -> None:
    # containerd applies a link entry's metadata to the inode it shares with its target
    tar = make_tar(
        [
            ("f", "file", b"x", {"mode": 0o600, "mtime": 1_400_000_000}),
            ("g", "hardlink", "f", {"mode": 0o751, "mtime": 1_500_000_000}),
        ]
    )
    _apply(sandbox.root, tar)
    st = os.lstat(sandbox.root / "f")
    assert stat.S_IMODE(st.st_mode) == 0o751 and st.st_mtime == 1_500_000_000
    assert os.lstat(sandbox.root / "g").st_ino == st.st_ino


def test_a_hard_link_to_a_symlink_never_changes_what_the_symlink_points_at(
    sandbox: Any, make_tar: Any
) -> None:
    victim = sandbox.outside / "victim"
    victim.write_text("host file")
    victim.chmod(0o600)
    before = os.stat(victim)
    tar = make_tar(
        [
            ("s", "symlink", str(victim)),
            ("h", "hardlink", "s", {"mode": 0o777, "mtime": 1_000}),
        ]
    )
    _apply(sandbox.root, tar)
    assert os.readlink(sandbox.root / "h") == str(victim)
    after = os.stat(victim)
    assert (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)


@pytest.mark.root
def test_ownership_is_restored_as_root(sandbox: Any, make_tar: Any) -> None:
    tar = make_tar(
        [
            ("home/u", "dir", None, {"uid": 1000, "gid": 1001}),
            ("home/u/f", "file", b"x", {"uid": 1000, "gid": 1001, "mode": 0o2755}),
            ("home/u/l", "symlink", "f"),
        ]
    )
    _apply(sandbox.root, tar)
    for name in ("home/u", "home/u/f"):
        st = os.lstat(sandbox.root / name)
        assert (st.st_uid, st.st_gid) == (1000, 1001)
    # chown clears setgid: the mode is set after the owner
    assert stat.S_IMODE(os.lstat(sandbox.root / "home/u/f").st_mode) == 0o2755


def test_ownership_is_not_restored_when_same_owner_is_off(sandbox: Any, make_tar: Any) -> None:
    _apply(sandbox.root, make_tar([("f", "file", b"", {"uid": 1234})]), same_owner=False)
    assert os.lstat(sandbox.root / "f").st_uid == os.geteuid()


def test_xattrs_from_pax_records_are_set_except_trusted(sandbox: Any, make_tar: Any) -> None:
    binary = b"\x01\x00\xff\xfe"
    tar = make_tar(
        [
            ("f", "file", b"x", {"xattrs": {"user.bin": binary, "trusted.evil": b"1"}}),
            ("d", "dir", None, {"xattrs": {"user.text": b"hello"}}),
        ]
    )
    _apply(sandbox.root, tar)
    assert os.getxattr(sandbox.root / "f", "user.bin") == binary
    assert os.getxattr(sandbox.root / "d", "user.text") == b"hello"
    assert "trusted.evil" not in os.listxattr(sandbox.root / "f")


@pytest.mark.root
def test_device_nodes_are_created_as_root(sandbox: Any, make_tar: Any) -> None:
    tar = make_tar([("dev/null", "chr", (1, 3)), ("dev/loop9", "blk", (7, 9))])
    _apply(sandbox.root, tar)
    st = os.lstat(sandbox.root / "dev" / "null")
    assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
    st = os.lstat(sandbox.root / "dev" / "loop9")
    assert stat.S_ISBLK(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (7, 9)


def test_whiteout_removes_file_and_directory_from_lower(sandbox: Any, make_tar: Any) -> None:
    root = sandbox.root
    (root / "etc" / "sub").mkdir(parents=True)
    (root / "etc" / "sub" / "x").write_text("x")
    (root / "etc" / "keep").write_text("k")
    (root / "etc" / "gone").write_text("g")
    _apply(root, make_tar([("etc/.wh.gone", "file", b""), ("etc/.wh.sub", "file", b"")]))
    assert sorted(os.listdir(root / "etc")) == ["keep"]


def test_whiteout_of_symlink_removes_link_not_target(sandbox: Any, make_tar: Any) -> None:
    root = sandbox.root
    (root / "t").mkdir()
    (root / "t" / "f").write_text("f")
    os.symlink("t", root / "l")
    _apply(root, make_tar([(".wh.l", "file", b"")]))
    assert not os.path.lexists(root / "l") and (root / "t" / "f").exists()


def test_opaque_dir_hides_lower_but_keeps_this_layers_entries(sandbox: Any, make_tar: Any) -> None:
    root = sandbox.root
    (root / "d" / "old").mkdir(parents=True)
    (root / "d" / "old" / "f").write_text("o")
    (root / "d" / "lower").write_text("l")
    tar = make_tar(
        [
            ("d", "dir"),
            ("d/before", "file", b"b"),
            ("d/.wh..wh..opq", "file", b""),
            ("d/after", "file", b"a"),
        ]
    )
    _apply(root, tar)
    assert sorted(os.listdir(root / "d")) == ["after", "before"]


def test_entry_replaces_existing_unless_both_are_directories(sandbox: Any, make_tar: Any) -> None:
    root = sandbox.root
    (root / "was_dir" / "child").mkdir(parents=True)
    (root / "was_file").write_text("f")
    (root / "merged").mkdir()
    (root / "merged" / "lower").write_text("l")
    tar = make_tar(
        [
            ("was_dir", "file", b"now a file"),
            ("was_file", "dir"),
            ("was_file/x", "file", b"x"),
            ("merged", "dir", None, {"mode": 0o700}),
            ("merged/upper", "file", b"u"),
        ]
    )
    _apply(root, tar)
    assert (root / "was_dir").read_bytes() == b"now a file"
    assert os.listdir(root / "was_file") == ["x"]
    assert sorted(os.listdir(root / "merged")) == ["lower", "upper"]
    assert stat.S_IMODE(os.lstat(root / "merged").st_mode) == 0o700


def test_readonly_directory_still_receives_later_entries(sandbox: Any, make_tar: Any) -> None:
    tar = make_tar([("ro", "dir", None, {"mode": 0o555}), ("ro/f", "file", b"f")])
    _apply(sandbox.root, tar)
    assert (sandbox.root / "ro" / "f").read_bytes() == b"f"
    assert stat.S_IMODE(os.lstat(sandbox.root / "ro").st_mode) == 0o555


@pytest.mark.parametrize(
    "compression", [Compression.UNCOMPRESSED, Compression.GZIP, Compression.ZSTD]
)
def test_compressed_layers_apply_and_report_uncompressed_diff_id(
    sandbox: Any, make_tar: Any, compression: Compression
) -> None:
    tar = make_tar([("a", "file", b"a" * 10_000), ("b/c", "file", os.urandom(5000))])
    blob = _compress(tar, compression)
    result = _apply(sandbox.root, blob)
    assert result.compression is compression
    assert result.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert result.uncompressed_size == len(tar)
    assert result.compressed_size == len(blob)
    assert result.size == 15_000 and result.entries == 2
    assert (sandbox.root / "a").read_bytes() == b"a" * 10_000


def test_diff_id_covers_trailing_padding_without_validation(sandbox: Any, make_tar: Any) -> None:
    tar = make_tar([("a", "file", b"a")]) + b"\0" * 4096
    result = _apply(sandbox.root, gzip.compress(tar), validate_first=False)
    assert result.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()


class _Pipe:
    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)


def test_unseekable_compressed_stream_applies_with_validation(sandbox: Any, make_tar: Any) -> None:
    tar = make_tar([("x/y", "file", b"y")])
    result = apply_layer(str(sandbox.root), _Pipe(gzip.compress(tar)))  # type: ignore[arg-type]
    assert result.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert (sandbox.root / "x" / "y").read_bytes() == b"y"


@pytest.mark.parametrize("magic", [b"BZh91AY&SY", b"\xfd7zXZ\x00\x00\x04"])
def test_bzip2_and_xz_layers_are_refused_clearly(sandbox: Any, magic: bytes) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="unsupported layer compression"):
        _apply(sandbox.root, magic + b"\0" * 100)


def test_garbage_is_not_a_tar(sandbox: Any) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="invalid layer tar"):
        _apply(sandbox.root, b"this is not a tar archive" * 100)


def test_corrupt_header_after_first_entry_is_an_error(sandbox: Any, make_tar: Any) -> None:
    tar = bytearray(make_tar([("a", "file", b"a"), ("b", "file", b"b")]))
    tar[1024 + 148 : 1024 + 156] = b"1234567\0"  # break the second header's checksum
    with pytest.raises(errdefs.InvalidArgument, match="invalid layer tar"):
        _apply(sandbox.root, bytes(tar))


def test_truncated_gzip_is_data_loss(sandbox: Any, make_tar: Any) -> None:
    blob = gzip.compress(make_tar([("a", "file", os.urandom(50_000))]))
    with pytest.raises(errdefs.DataLoss):
        _apply(sandbox.root, blob[:-200], validate_first=False)


def test_empty_stream_is_an_empty_layer(sandbox: Any) -> None:
    result = _apply(sandbox.root, b"")
    assert result.diff_id == "sha256:" + hashlib.sha256(b"").hexdigest()
    assert result.entries == 0 and sandbox.root_listing() == []


def test_progress_reports_uncompressed_bytes(sandbox: Any, make_tar: Any) -> None:
    tar = make_tar([("a", "file", b"a" * 100_000)])
    seen: list[int] = []
    _apply(sandbox.root, gzip.compress(tar), progress=seen.append)
    assert seen and seen[-1] == len(tar)


@pytest.mark.root
def test_overlay_mode_makes_whiteout_devices_and_opaque_xattr(sandbox: Any, make_tar: Any) -> None:
    tar = make_tar(
        [
            ("d", "dir"),
            ("d/.wh..wh..opq", "file", b""),
            ("d/new", "file", b"n"),
            ("etc/.wh.passwd", "file", b"", {"uid": 0, "gid": 0}),
        ]
    )
    root = sandbox.root
    _apply(root, tar, convert_whiteouts="overlay")
    assert os.getxattr(root / "d", "trusted.overlay.opaque") == b"y"
    st = os.lstat(root / "etc" / "passwd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 and (st.st_uid, st.st_gid) == (0, 0)
    assert sorted(os.listdir(root / "d")) == ["new"]
    assert not os.path.lexists(root / "d" / ".wh..wh..opq")


def test_large_layer_applies(sandbox: Any, tmp_path: Any, make_tar: Any) -> None:
    entries: list[tuple[Any, ...]] = [("big", "dir")]
    for i in range(4):
        entries.append((f"big/blob{i}", "file", os.urandom(10 << 20)))
    for i in range(2000):
        entries.append((f"small/{i % 50}/f{i}", "file", os.urandom(5000)))
    tar = make_tar(entries)
    assert len(tar) > 50 << 20
    layer = tmp_path / "layer.tar.gz"
    with open(layer, "wb") as raw, compress_stream(raw, Compression.GZIP, level=1) as w:
        w.write(tar)
    with open(layer, "rb") as f:
        result = apply_layer(str(sandbox.root), f)
    assert result.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert (sandbox.root / "big" / "blob3").read_bytes() == entries[4][2]
    assert len(os.listdir(sandbox.root / "small")) == 50


def test_missing_parent_dirs_take_metadata_from_lower_layers(
    sandbox: Any, make_tar: Any, tmp_path: Any
) -> None:
    lower = tmp_path / "lower"
    (lower / "usr" / "bin").mkdir(parents=True)
    os.chmod(lower / "usr", 0o711)
    os.chmod(lower / "usr" / "bin", 0o750)
    os.setxattr(lower / "usr" / "bin", "user.origin", b"lower")
    os.utime(lower / "usr" / "bin", ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    _apply(
        sandbox.root,
        make_tar([("usr/bin/tool", "file", b"t"), ("opt/x", "file", b"x")]),
        parents=[str(lower)],
    )
    root = sandbox.root
    assert stat.S_IMODE(os.lstat(root / "usr").st_mode) == 0o711
    st = os.lstat(root / "usr" / "bin")
    assert stat.S_IMODE(st.st_mode) == 0o750 and st.st_mtime_ns == 1_000_000_000_000_000_000
    assert os.getxattr(root / "usr" / "bin", "user.origin") == b"lower"
    assert stat.S_IMODE(os.lstat(root / "opt").st_mode) == 0o755
