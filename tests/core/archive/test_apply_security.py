"""Layers that try to reach outside the root are rejected, name the entry, and write nothing
outside the root (and, with validate_first, nothing at all)."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.archive.apply import apply_layer


def _escapes(outside: str) -> list[tuple[str, list[tuple[Any, ...]], str]]:
    """(case id, tar entries, the entry name the error must mention)"""
    return [
        ("dotdot", [("../x", "file", b"evil")], "../x"),
        ("dotdot-nested", [("a/b/../../../x", "file", b"evil")], "a/b/../../../x"),
        (
            "absolute-through-symlink",
            [("abs", "symlink", outside), ("/abs/x", "file", b"evil")],
            "/abs/x",
        ),
        ("symlink-to-slash", [("a", "symlink", "/"), ("a/etc/x", "file", b"evil")], "a/etc/x"),
        ("symlink-dotdot", [("a", "symlink", "../.."), ("a/x", "file", b"evil")], "a/x"),
        (
            "symlink-chain",
            [("b", "symlink", "../outside"), ("a", "symlink", "b"), ("a/x", "file", b"e")],
            "a/x",
        ),
        ("hardlink-dotdot", [("h", "hardlink", "../../etc/passwd")], "h"),
        ("hardlink-outside-relative", [("h", "hardlink", "../outside/secret")], "h"),
        (
            "hardlink-through-symlink",
            [("s", "symlink", outside), ("h", "hardlink", "s/secret")],
            "h",
        ),
        ("whiteout-dotdot", [("../.wh.x", "file", b"")], "../.wh.x"),
        (
            "whiteout-through-symlink",
            [("s", "symlink", outside), ("s/.wh.secret", "file", b"")],
            "s/.wh.secret",
        ),
        (
            "opaque-through-symlink",
            [("s", "symlink", outside), ("s/.wh..wh..opq", "file", b"")],
            "s/.wh..wh..opq",
        ),
        (
            "parent-replaced-by-symlink",
            [
                ("d", "dir"),
                ("d/ok", "file", b"fine"),
                ("d", "symlink", outside),
                ("d/x", "file", b"evil"),
            ],
            "d/x",
        ),
        ("whiteout-of-dot", [("d", "dir"), ("d/.wh..", "file", b"")], "d/.wh.."),
    ]


_CASE_IDS = [c[0] for c in _escapes("/x")]


def _case(sandbox: Any, case_id: str) -> tuple[list[tuple[Any, ...]], str]:
    for cid, entries, name in _escapes(str(sandbox.outside)):
        if cid == case_id:
            return entries, name
    raise KeyError(case_id)


@pytest.mark.parametrize("case_id", _CASE_IDS)
def test_escaping_layer_is_rejected_naming_entry_and_writes_nothing(
    sandbox: Any, make_tar: Any, case_id: str
) -> None:
    entries, name = _case(sandbox, case_id)
    with pytest.raises(errdefs.InvalidArgument) as info:
        apply_layer(str(sandbox.root), io.BytesIO(make_tar(entries)))
    assert repr(name) in str(info.value)
    assert sandbox.outside_untouched()
    assert sandbox.root_listing() == []


@pytest.mark.parametrize("case_id", _CASE_IDS)
def test_escaping_layer_without_validation_never_writes_outside(
    sandbox: Any, make_tar: Any, case_id: str
) -> None:
    entries, name = _case(sandbox, case_id)
    with pytest.raises(errdefs.InvalidArgument) as info:
        apply_layer(str(sandbox.root), io.BytesIO(make_tar(entries)), validate_first=False)
    assert repr(name) in str(info.value)
    assert sandbox.outside_untouched()


class _Pipe:
    """An unseekable reader, as a network or gRPC stream is."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)


def test_escaping_unseekable_stream_is_spooled_and_writes_nothing(
    sandbox: Any, make_tar: Any, tmp_path: Any
) -> None:
    entries, _ = _case(sandbox, "parent-replaced-by-symlink")
    spool = tmp_path / "spool"
    spool.mkdir()
    with pytest.raises(errdefs.InvalidArgument):
        apply_layer(str(sandbox.root), _Pipe(make_tar(entries)), spool_dir=str(spool))  # type: ignore[arg-type]
    assert sandbox.root_listing() == []
    assert sandbox.outside_untouched()
    assert os.listdir(spool) == []


def test_symlink_from_lower_layer_pointing_outside_rejects_entries_below_it(
    sandbox: Any, make_tar: Any
) -> None:
    os.symlink(str(sandbox.outside), sandbox.root / "lnk")
    with pytest.raises(errdefs.InvalidArgument, match="'lnk/x'"):
        apply_layer(str(sandbox.root), io.BytesIO(make_tar([("lnk/x", "file", b"evil")])))
    assert sandbox.outside_untouched()


def test_absolute_entry_names_land_inside_root(sandbox: Any, make_tar: Any) -> None:
    apply_layer(str(sandbox.root), io.BytesIO(make_tar([("/etc/hosts", "file", b"h")])))
    assert (sandbox.root / "etc" / "hosts").read_bytes() == b"h"


def test_dotdot_that_stays_inside_root_is_cleaned(sandbox: Any, make_tar: Any) -> None:
    apply_layer(str(sandbox.root), io.BytesIO(make_tar([("a/../b", "file", b"b")])))
    assert sandbox.root_listing() == ["b"]


def test_symlinks_inside_root_are_followed_for_parents(sandbox: Any, make_tar: Any) -> None:
    tar = make_tar(
        [("usr/lib", "dir"), ("lib", "symlink", "usr/lib"), ("lib/libc.so", "file", b"c")]
    )
    apply_layer(str(sandbox.root), io.BytesIO(tar))
    assert (sandbox.root / "usr" / "lib" / "libc.so").read_bytes() == b"c"
    assert os.readlink(sandbox.root / "lib") == "usr/lib"


def test_non_strict_symlinks_resolve_as_if_root_were_slash(sandbox: Any, make_tar: Any) -> None:
    tar = make_tar(
        [
            ("a", "symlink", "/"),
            ("a/etc/x", "file", b"x"),
            ("b", "symlink", "../.."),
            ("b/y", "file", b"y"),
        ]
    )
    apply_layer(str(sandbox.root), io.BytesIO(tar), strict_symlinks=False)
    assert (sandbox.root / "etc" / "x").read_bytes() == b"x"
    assert (sandbox.root / "y").read_bytes() == b"y"
    assert sandbox.outside_untouched()


def test_symlink_entries_themselves_may_point_anywhere(sandbox: Any, make_tar: Any) -> None:
    tar = make_tar([("etc/mtab", "symlink", "/proc/self/mounts"), ("up", "symlink", "../..")])
    apply_layer(str(sandbox.root), io.BytesIO(tar))
    assert os.readlink(sandbox.root / "etc" / "mtab") == "/proc/self/mounts"
    assert os.readlink(sandbox.root / "up") == "../.."


def test_entry_replacing_symlink_to_outside_dir_does_not_follow_it(
    sandbox: Any, make_tar: Any
) -> None:
    os.symlink(str(sandbox.outside), sandbox.root / "d")
    apply_layer(str(sandbox.root), io.BytesIO(make_tar([("d", "dir"), ("d/f", "file", b"f")])))
    assert (sandbox.root / "d").is_dir() and not (sandbox.root / "d").is_symlink()
    assert (sandbox.root / "d" / "f").read_bytes() == b"f"
    assert sandbox.outside_untouched()


def test_symlink_loop_in_parent_is_rejected(sandbox: Any, make_tar: Any) -> None:
    tar = make_tar([("a", "symlink", "b"), ("b", "symlink", "a"), ("a/x", "file", b"")])
    with pytest.raises(errdefs.InvalidArgument, match="too many levels"):
        apply_layer(str(sandbox.root), io.BytesIO(tar))
    assert sandbox.root_listing() == []
