from __future__ import annotations

import errno
import os

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.mount import (
    Mount,
    linux,
    mount_all,
    readonly_mounts,
    unmount_all,
    with_temp_mount,
)


def test_options_split_into_flags_and_data() -> None:
    opt = linux.parse_mount_options(["rbind", "ro", "nosuid", "lowerdir=/a", "index=off"])
    assert opt.flags == linux.MS_BIND | linux.MS_REC | linux.MS_RDONLY | linux.MS_NOSUID
    assert opt.data == ("lowerdir=/a", "index=off")
    # later options win, as mount(8)
    assert linux.parse_mount_options(["ro", "rw"]).flags & linux.MS_RDONLY == 0
    assert linux.parse_mount_options(["rprivate"]).flags == linux.MS_PRIVATE | linux.MS_REC


def test_internal_options_are_refused() -> None:
    with pytest.raises(errdefs.InvalidArgument):
        linux.parse_mount_options(["X-containerd.mkdir.path=/x"])


def test_compacting_lowerdirs_makes_them_relative_to_the_common_parent() -> None:
    opts = ["workdir=/r/s/3/work", "lowerdir=/r/s/12/fs:/r/s/1/fs", "upperdir=/r/s/3/fs"]
    chdir, out = linux.compact_lowerdir_option(opts)
    assert chdir == "/r/s/"
    assert out == ["workdir=/r/s/3/work", "upperdir=/r/s/3/fs", "lowerdir=12/fs:1/fs"]
    assert linux.compact_lowerdir_option(["lowerdir=/a/fs"]) == ("", ["lowerdir=/a/fs"])


def test_readonly_mounts_turn_the_upperdir_into_a_lowerdir() -> None:
    ov = Mount(
        type="overlay",
        source="overlay",
        options=["workdir=/w", "upperdir=/u", "lowerdir=/l1:/l2", "index=off"],
    )
    bind = Mount(type="bind", source="/s", options=["rbind", "rw"])
    ro_ov, ro_bind = readonly_mounts([ov, bind])
    assert ro_ov.options == ("lowerdir=/u:/l1:/l2", "index=off") and ro_ov.readonly
    assert ro_bind.options == ("rbind", "ro") and ro_bind.readonly
    assert not ov.readonly and not bind.readonly


def test_mountinfo_escapes_are_decoded() -> None:
    assert linux._unescape(r"/a\040b\134c") == "/a b\\c"


@pytest.mark.root
async def test_read_only_bind_mount_refuses_writes_and_is_removed_after(tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    async with with_temp_mount([Mount(type="bind", source=str(src), options=["rbind", "ro"])]) as p:
        assert open(os.path.join(p, "f")).read() == "x"
        assert linux.is_mount_point(p)
        with pytest.raises(OSError) as info:
            open(os.path.join(p, "g"), "w")
        assert info.value.errno == errno.EROFS
    assert not os.path.exists(p)
    assert not (src / "g").exists()


@pytest.mark.root
async def test_temp_mount_is_undone_when_the_body_raises(tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(RuntimeError):
        async with with_temp_mount([Mount(type="bind", source=str(src), options=["rbind"])]) as p:
            raise RuntimeError("boom")
    assert not os.path.exists(p)
    assert not linux.mount_points(p)


@pytest.mark.root
async def test_mount_all_places_mounts_at_their_targets_and_unmount_all_clears_them(
    tmp_path,
) -> None:
    a, b, target = tmp_path / "a", tmp_path / "b", tmp_path / "t"
    for d in (a, b, target):
        d.mkdir()
    (a / "sub").mkdir()
    (b / "inner").write_text("b")
    await mount_all(
        [
            Mount(type="bind", source=str(a), options=["rbind"]),
            Mount(type="bind", source=str(b), target="sub", options=["rbind", "ro"]),
        ],
        str(target),
    )
    try:
        assert (target / "sub" / "inner").read_text() == "b"
    finally:
        await unmount_all(str(target / "sub"))
        await unmount_all(str(target))
    assert linux.mount_points(str(target)) == []


@pytest.mark.root
async def test_overlay_mount_merges_layers(tmp_path) -> None:
    lower1, lower2, upper, work = (tmp_path / n for n in ("l1", "l2", "u", "w"))
    for d in (lower1, lower2, upper, work):
        d.mkdir()
    (lower1 / "a").write_text("1")
    (lower2 / "a").write_text("2")
    (lower1 / "b").write_text("b")
    m = Mount(
        type="overlay",
        source="overlay",
        options=[f"lowerdir={lower2}:{lower1}", f"upperdir={upper}", f"workdir={work}"],
    )
    try:
        async with with_temp_mount([m]) as p:
            assert open(os.path.join(p, "a")).read() == "2"
            open(os.path.join(p, "c"), "w").write("c")
    except errdefs.NotImplemented_ as e:
        pytest.skip(f"no overlayfs in this kernel: {e}")
    assert (upper / "c").read_text() == "c"


@pytest.mark.root
async def test_overlay_with_lowerdirs_longer_than_a_page_mounts_through_the_helper(
    tmp_path,
) -> None:
    base = tmp_path / ("long-directory-name-" * 4)
    layers = []
    for i in range(60):
        d = base / f"{i}" / "fs"
        d.mkdir(parents=True)
        (d / f"f{i}").write_text(str(i))
        layers.append(str(d))
    upper, work = base / "u", base / "w"
    upper.mkdir()
    work.mkdir()
    opts = [f"lowerdir={':'.join(reversed(layers))}", f"upperdir={upper}", f"workdir={work}"]
    assert sum(len(o) + 1 for o in opts) > os.sysconf("SC_PAGESIZE")
    try:
        async with with_temp_mount([Mount(type="overlay", source="overlay", options=opts)]) as p:
            assert sorted(os.listdir(p)) == sorted(f"f{i}" for i in range(60))
    except errdefs.NotImplemented_ as e:
        pytest.skip(f"no overlayfs in this kernel: {e}")


@pytest.mark.root
async def test_mount_failure_names_the_target_and_leaves_no_temp_dir(tmp_path) -> None:
    before = set(os.listdir(tmp_path))
    with pytest.raises(errdefs.NotFound, match="failed to mount"):
        async with with_temp_mount(
            [Mount(type="bind", source=str(tmp_path / "missing"), options=["rbind"])],
            temp_dir=str(tmp_path),
        ):
            pass
    assert set(os.listdir(tmp_path)) == before
