"""Image volumes (KEP-4639) of CRI containers, the parts without mounts: sub path checks and
resolution inside the image (symlinks followed as the image means them, never out of it),
the checks CreateContainer makes before creating anything, the GC labels that hold the views,
and removal of what a container's directory and labels name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs
import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as pb
from pycontainerd.core import errdefs
from pycontainerd.plugins.cri.container import image_volumes as iv

IMAGE_ID = "sha256:" + "ab" * 32


# --- sub paths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sub", "parts"),
    [("", ()), (".", ()), ("etc", ("etc",)), ("usr//lib/./x/", ("usr", "lib", "x"))],
)
def test_sub_path_components(sub: str, parts: tuple[str, ...]) -> None:
    assert iv.validate_sub_path(sub) == parts


@pytest.mark.parametrize(
    ("sub", "why"),
    [
        ("/etc", "relative"),
        ("..", "'..'"),
        ("etc/../../x", "'..'"),
        ("a/..", "'..'"),
        ("a\x00b", "NUL"),
    ],
)
def test_bad_sub_paths_are_invalid_argument(sub: str, why: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=why):
        iv.validate_sub_path(sub)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """An unpacked image tree next to a directory outside it."""
    root = tmp_path / "image"
    (root / "etc" / "conf.d").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "usr" / "share").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    os.symlink("usr/share", root / "share")  # relative, inside
    os.symlink("/etc", root / "abs-etc")  # absolute: the image's own /etc
    os.symlink("../outside", root / "escape")  # climbs out of the image
    os.symlink("../../../../outside", root / "etc" / "deep-escape")
    os.symlink(str(tmp_path / "outside"), root / "abs-outside")  # a host path, read in image
    os.symlink("loop-b", root / "loop-a")
    os.symlink("loop-a", root / "loop-b")
    os.symlink("etc/passwd", root / "passwd-link")
    return root


def test_sub_path_resolves_inside_the_image(image: Path) -> None:
    assert iv.resolve_sub_path(str(image), "") == str(image)
    assert iv.resolve_sub_path(str(image), "etc/conf.d") == str(image / "etc" / "conf.d")
    assert iv.resolve_sub_path(str(image), "share") == str(image / "usr" / "share")
    # an absolute link means the image's root, not the host's
    assert iv.resolve_sub_path(str(image), "abs-etc/conf.d") == str(image / "etc" / "conf.d")


def test_missing_sub_path_is_not_found(image: Path) -> None:
    with pytest.raises(errdefs.NotFound, match="not-existing"):
        iv.resolve_sub_path(str(image), "not-existing")
    with pytest.raises(errdefs.NotFound):
        iv.resolve_sub_path(str(image), "etc/passwd/x")
    # the host path an absolute link names does not exist in the image
    with pytest.raises(errdefs.NotFound):
        iv.resolve_sub_path(str(image), "abs-outside")


@pytest.mark.parametrize("sub", ["escape", "etc/deep-escape"])
def test_symlink_escaping_the_image_is_refused(image: Path, sub: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="out of the image"):
        iv.resolve_sub_path(str(image), sub)


def test_symlink_loops_and_files_are_refused(image: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="symbolic links"):
        iv.resolve_sub_path(str(image), "loop-a")
    for sub in ("etc/passwd", "passwd-link"):
        with pytest.raises(errdefs.InvalidArgument, match="not a directory"):
            iv.resolve_sub_path(str(image), sub)


# --- checks before anything is created ----------------------------------------------------


@attrs.frozen
class _Image:
    id: str
    chain_id: str = "sha256:" + "cd" * 32


class _Images:
    def __init__(self, *refs: str) -> None:
        self.refs = set(refs)

    def local_resolve(self, ref: str) -> Any:
        if ref not in self.refs:
            raise errdefs.NotFound(f"image {ref!r} not found")
        return _Image(IMAGE_ID)


class _CRI:
    def __init__(self, state_dir: str, *refs: str, snapshotters: Any = None) -> None:
        self.images = _Images(*refs)
        self.runtime = attrs.make_class("R", {"state_dir": attrs.field()})(state_dir)
        self.client = _Client(snapshotters or {})


class _Client:
    def __init__(self, snapshotters: dict[str, Any]) -> None:
        self.snapshotters = snapshotters

    def scope(self) -> Any:
        import contextlib

        return contextlib.nullcontext()


def _mount(**kw: Any) -> Any:
    image = kw.pop("image", "busybox")
    return pb.Mount(container_path="/mnt/v", image=pb.ImageSpec(image=image), **kw)


def test_check_accepts_readonly_image_mounts_and_skips_others(tmp_path: Path) -> None:
    vols = iv.ImageVolumes(_CRI(str(tmp_path), "busybox"))
    config = pb.ContainerConfig(
        mounts=[
            pb.Mount(container_path="/data", host_path="/tmp"),
            _mount(readonly=True, image_sub_path="etc"),
        ]
    )
    (req,) = vols.check(config)
    assert req.index == 1 and req.image.id == IMAGE_ID
    assert not iv.is_image_mount(config.mounts[0]) and iv.is_image_mount(config.mounts[1])


@pytest.mark.parametrize(
    ("mount", "code", "text"),
    [
        (_mount(readonly=False), errdefs.InvalidArgument, "readonly must be true"),
        (_mount(readonly=True, host_path="/x"), errdefs.InvalidArgument, "host_path"),
        (_mount(readonly=True, image_sub_path="../x"), errdefs.InvalidArgument, "'..'"),
        (_mount(readonly=True, image_sub_path="/etc"), errdefs.InvalidArgument, "relative"),
        (_mount(readonly=True, image="missing:1"), errdefs.NotFound, "'missing:1' not found"),
    ],
)
def test_check_refuses_bad_image_mounts(
    tmp_path: Path, mount: Any, code: type[Exception], text: str
) -> None:
    vols = iv.ImageVolumes(_CRI(str(tmp_path), "busybox"))
    with pytest.raises(code) as e:
        vols.check(pb.ContainerConfig(mounts=[mount]))
    assert text in str(e.value) and "/mnt/v" in str(e.value)
    assert str(e.value).startswith(iv.MOUNT_FAILED)
    assert not os.path.exists(tmp_path / iv.VOLUMES_DIR)


# --- GC labels and removal ---------------------------------------------------------------


def test_gc_labels_hold_the_views_and_name_them_back() -> None:
    labels = iv.gc_labels("overlayfs", ["/s/a", "/s/b"])
    assert labels == {
        "containerd.io/gc.ref.snapshot.overlayfs/image-volume.0": "/s/a",
        "containerd.io/gc.ref.snapshot.overlayfs/image-volume.1": "/s/b",
    }
    other = {"containerd.io/gc.ref.snapshot.overlayfs": "x", "io.cri-containerd.kind": "c"}
    assert iv.keys_from_labels("overlayfs", {**labels, **other}) == ["/s/a", "/s/b"]
    assert iv.keys_from_labels("native", labels) == []


def test_the_view_of_an_image_lives_in_the_container_directory(tmp_path: Path) -> None:
    vols = iv.ImageVolumes(_CRI(str(tmp_path)))
    assert vols.target("cid", IMAGE_ID) == str(tmp_path / "image-volumes" / "cid" / ("ab" * 32))


class _Snapshotter:
    def __init__(self, *keys: str) -> None:
        self.keys = set(keys)
        self.removed: list[str] = []

    async def remove(self, key: str) -> None:
        if key not in self.keys:
            raise errdefs.NotFound(key)
        self.keys.discard(key)
        self.removed.append(key)


async def test_remove_takes_labelled_and_listed_views_and_is_idempotent(tmp_path: Path) -> None:
    vols = iv.ImageVolumes(_CRI(str(tmp_path)))
    listed, labelled = vols.target("cid", IMAGE_ID), vols.target("cid", "sha256:" + "ef" * 32)
    os.makedirs(listed)
    sn = _Snapshotter(listed, labelled, "unrelated")
    vols.c.client.snapshotters["overlayfs"] = sn
    await vols.remove("cid", "overlayfs", [labelled])
    assert sorted(sn.removed) == sorted([listed, labelled]) and sn.keys == {"unrelated"}
    assert not os.path.exists(vols.container_dir("cid"))
    await vols.remove("cid", "overlayfs", [labelled])
    await vols.remove("other", "gone-snapshotter")


async def test_remove_never_deletes_files_of_a_view(tmp_path: Path) -> None:
    """A view directory that is not empty (its mount could not be undone) stays, with an
    error, rather than being emptied."""
    vols = iv.ImageVolumes(_CRI(str(tmp_path)))
    target = Path(vols.target("cid", IMAGE_ID))
    target.mkdir(parents=True)
    (target / "file").write_text("image data")
    with pytest.raises(errdefs.FailedPrecondition, match="failed to remove image volume"):
        await vols.remove("cid", "overlayfs")
    assert (target / "file").read_text() == "image data"


async def test_remove_unmounts_only_below_its_own_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record label naming a path elsewhere (say ``/``) never gets it unmounted, nor its
    snapshot removed."""
    unmounted: list[str] = []

    async def unmount_all(target: str, flags: int = 0) -> None:
        unmounted.append(target)

    monkeypatch.setattr(iv.mount_, "unmount_all", unmount_all)
    vols = iv.ImageVolumes(_CRI(str(tmp_path)))
    own = vols.target("cid", IMAGE_ID)
    os.makedirs(own)
    sn = _Snapshotter("/", own)
    vols.c.client.snapshotters["overlayfs"] = sn
    await vols.remove("cid", "overlayfs", ["/", str(tmp_path)])
    assert unmounted == [own] and tmp_path.is_dir()
    assert sn.removed == [own] and "/" in sn.keys
