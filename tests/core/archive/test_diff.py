"""Diffs between trees: changes reported, and write_diff + apply_layer reproduce upper."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.archive.apply import apply_layer
from pycontainerd.core.archive.diff import Change, ChangeKind, changes, write_diff


def tree_state(root: Path) -> dict[str, Any]:
    """Everything a layer must carry, per path: type, mode, owner, size, content, link
    target, device, xattrs, mtime (seconds), and which paths share an inode."""
    out: dict[str, Any] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            entry: dict[str, Any] = {
                "mode": st.st_mode,
                "uid": st.st_uid,
                "gid": st.st_gid,
                "mtime": int(st.st_mtime),
            }
            if stat.S_ISREG(st.st_mode):
                entry["sha"] = hashlib.sha256(Path(full).read_bytes()).hexdigest()
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                entry["link"] = os.readlink(full)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                entry["rdev"] = st.st_rdev
            if not stat.S_ISLNK(st.st_mode):
                entry["xattrs"] = {k: os.getxattr(full, k) for k in sorted(os.listxattr(full))}
            if stat.S_ISDIR(st.st_mode):
                del entry["mtime"]  # directory times move when entries are added
            out[rel] = entry
    out["<hardlinks>"] = sorted(sorted(v) for v in inodes.values())
    return out


def _lower(base: Path) -> Path:
    lower = base / "lower"
    (lower / "etc" / "conf.d").mkdir(parents=True)
    (lower / "etc" / "passwd").write_text("root:x:0:0\n")
    (lower / "etc" / "conf.d" / "a.conf").write_text("a")
    (lower / "etc" / "conf.d" / "b.conf").write_text("b")
    (lower / "usr" / "bin").mkdir(parents=True)
    (lower / "usr" / "bin" / "tool").write_text("v1")
    os.chmod(lower / "usr" / "bin" / "tool", 0o755)
    os.link(lower / "usr" / "bin" / "tool", lower / "usr" / "bin" / "tool-alias")
    (lower / "var" / "cache" / "deep").mkdir(parents=True)
    (lower / "var" / "cache" / "deep" / "junk").write_text("junk")
    (lower / "will-be-dir").write_text("f")
    (lower / "will-be-file").mkdir()
    (lower / "will-be-file" / "child").write_text("c")
    os.symlink("etc/passwd", lower / "link")
    (lower / "same").write_text("unchanged")
    return lower


def _upper(base: Path, lower: Path) -> Path:
    upper = base / "upper"
    shutil.copytree(lower, upper, symlinks=True)
    # copytree does not keep hard links: restore the lower's
    os.unlink(upper / "usr" / "bin" / "tool-alias")
    os.link(upper / "usr" / "bin" / "tool", upper / "usr" / "bin" / "tool-alias")
    (upper / "etc" / "passwd").write_text("root:x:0:0\nuser:x:1000:1000\n")
    os.remove(upper / "etc" / "conf.d" / "b.conf")
    shutil.rmtree(upper / "var" / "cache")
    os.chmod(upper / "etc" / "conf.d" / "a.conf", 0o600)
    (upper / "usr" / "bin" / "tool").write_text("v2")  # both names of the inode change
    os.remove(upper / "will-be-dir")
    (upper / "will-be-dir").mkdir()
    (upper / "will-be-dir" / "inner").write_text("i")
    shutil.rmtree(upper / "will-be-file")
    (upper / "will-be-file").write_text("now a file")
    os.unlink(upper / "link")
    os.symlink("usr/bin/tool", upper / "link")
    (upper / "new" / "sub").mkdir(parents=True)
    (upper / "new" / "sub" / "file").write_bytes(os.urandom(3000))
    os.link(upper / "new" / "sub" / "file", upper / "new" / "file-link")
    os.setxattr(upper / "new" / "sub" / "file", "user.note", b"\xffbinary\x00")
    os.setxattr(upper / "etc" / "passwd", "user.tag", b"t")
    os.mkfifo(upper / "new" / "fifo")
    os.chmod(upper / "new" / "sub", 0o750)
    return upper


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    lower = _lower(tmp_path)
    return lower, _upper(tmp_path, lower)


def test_changes_reports_adds_modifies_and_deletes_in_tar_order(
    trees: tuple[Path, Path],
) -> None:
    lower, upper = trees
    got = list(changes(str(lower), str(upper)))
    assert got == [
        Change(ChangeKind.MODIFY, "/etc/conf.d/a.conf"),
        Change(ChangeKind.DELETE, "/etc/conf.d/b.conf"),
        Change(ChangeKind.MODIFY, "/etc/passwd"),
        Change(ChangeKind.MODIFY, "/link"),
        Change(ChangeKind.ADD, "/new"),
        Change(ChangeKind.ADD, "/new/fifo"),
        Change(ChangeKind.ADD, "/new/file-link"),
        Change(ChangeKind.ADD, "/new/sub"),
        Change(ChangeKind.ADD, "/new/sub/file"),
        Change(ChangeKind.MODIFY, "/usr/bin/tool"),
        Change(ChangeKind.MODIFY, "/usr/bin/tool-alias"),
        Change(ChangeKind.DELETE, "/var/cache"),
        Change(ChangeKind.MODIFY, "/will-be-dir"),
        Change(ChangeKind.ADD, "/will-be-dir/inner"),
        Change(ChangeKind.MODIFY, "/will-be-file"),
    ]


def test_diff_applied_onto_copy_of_lower_reproduces_upper(
    trees: tuple[Path, Path], tmp_path: Path
) -> None:
    lower, upper = trees
    target = tmp_path / "target"
    shutil.copytree(lower, target, symlinks=True)
    os.unlink(target / "usr" / "bin" / "tool-alias")
    os.link(target / "usr" / "bin" / "tool", target / "usr" / "bin" / "tool-alias")
    assert tree_state(target) == tree_state(lower)
    buf = io.BytesIO()
    write_diff(str(lower), str(upper), buf)
    buf.seek(0)
    apply_layer(str(target), buf)
    assert tree_state(target) == tree_state(upper)
    assert list(changes(str(upper), str(target))) == []


def test_diff_from_nothing_applied_onto_empty_dir_reproduces_upper(
    trees: tuple[Path, Path], tmp_path: Path
) -> None:
    _, upper = trees
    target = tmp_path / "target"
    target.mkdir()
    buf = io.BytesIO()
    write_diff(None, str(upper), buf)
    buf.seek(0)
    apply_layer(str(target), buf)
    assert tree_state(target) == tree_state(upper)


def test_deletions_are_whiteouts_after_their_parent_directory(
    trees: tuple[Path, Path],
) -> None:
    lower, upper = trees
    buf = io.BytesIO()
    write_diff(str(lower), str(upper), buf)
    buf.seek(0)
    members = {m.name: m for m in tarfile.open(fileobj=buf)}
    names = list(members)
    assert "etc/conf.d/.wh.b.conf" in names and "var/.wh.cache" in names
    assert names.index("etc") < names.index("etc/conf.d") < names.index("etc/conf.d/.wh.b.conf")
    assert names.index("var") < names.index("var/.wh.cache")
    wh = members["var/.wh.cache"]
    assert wh.isreg() and wh.size == 0 and wh.mtime == 0
    assert "var/cache/deep/junk" not in names and "same" not in names


def test_hard_links_are_written_once_then_linked(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    buf = io.BytesIO()
    write_diff(str(lower), str(upper), buf)
    buf.seek(0)
    members = {m.name: m for m in tarfile.open(fileobj=buf)}
    assert members["new/file-link"].isreg() and members["new/file-link"].size == 3000
    assert members["new/sub/file"].islnk()
    assert members["new/sub/file"].linkname == "new/file-link"
    assert members["usr/bin/tool-alias"].linkname == "usr/bin/tool"


def test_write_diff_is_deterministic(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    a, b = io.BytesIO(), io.BytesIO()
    write_diff(str(lower), str(upper), a)
    write_diff(str(lower), str(upper), b)
    assert a.getvalue() == b.getvalue()


def test_unchanged_trees_produce_an_empty_layer(trees: tuple[Path, Path]) -> None:
    lower, _ = trees
    assert list(changes(str(lower), str(lower))) == []
    buf = io.BytesIO()
    write_diff(str(lower), str(lower), buf)
    buf.seek(0)
    assert tarfile.open(fileobj=buf).getmembers() == []


def test_truncated_mtime_with_same_content_is_unchanged_but_different_content_is_not(
    tmp_path: Path,
) -> None:
    lower, upper = tmp_path / "l", tmp_path / "u"
    lower.mkdir()
    upper.mkdir()
    for d, content in ((lower, "same"), (upper, "same")):
        (d / "f").write_text(content)
    (lower / "g").write_text("old!")
    (upper / "g").write_text("new!")
    os.utime(lower / "f", ns=(0, 1_000_000_000_500))
    os.utime(upper / "f", ns=(0, 1_000_000_000_000))
    os.utime(lower / "g", ns=(0, 1_000_000_000_500))
    os.utime(upper / "g", ns=(0, 1_000_000_000_000))
    assert list(changes(str(lower), str(upper))) == [Change(ChangeKind.MODIFY, "/g")]


def test_source_date_epoch_caps_written_mtimes(tmp_path: Path) -> None:
    upper = tmp_path / "u"
    upper.mkdir()
    (upper / "f").write_text("x")
    buf = io.BytesIO()
    write_diff(None, str(upper), buf, source_date_epoch=1000)
    buf.seek(0)
    assert [m.mtime for m in tarfile.open(fileobj=buf)] == [1000]


def test_missing_upper_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(errdefs.NotFound):
        write_diff(None, str(tmp_path / "nope"), io.BytesIO())


@pytest.mark.root
def test_ownership_and_devices_round_trip_as_root(tmp_path: Path) -> None:
    lower, upper, target = tmp_path / "l", tmp_path / "u", tmp_path / "t"
    for d in (lower, upper, target):
        d.mkdir()
    (upper / "owned").write_text("o")
    os.chown(upper / "owned", 1000, 2000)
    os.mknod(upper / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    buf = io.BytesIO()
    write_diff(str(lower), str(upper), buf)
    buf.seek(0)
    apply_layer(str(target), buf)
    assert tree_state(target) == tree_state(upper)
