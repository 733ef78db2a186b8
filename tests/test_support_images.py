"""The test images every integration test stands on: they must be valid OCI, and runnable."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import images
import peers
import pytest


def _chroot_echo(rootfs: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chroot", str(rootfs), "/bin/busybox", "echo", "ok"],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.root
def test_busybox_unpacked_with_umoci_runs_echo_in_chroot(busybox, tmp_path):
    peers.require_binary("umoci")
    rootfs = images.umoci_unpack(busybox, tmp_path / "bundle")
    res = _chroot_echo(rootfs)
    assert (res.returncode, res.stdout) == (0, "ok\n"), res.stderr
    # the applet symlinks and the shell work too
    res = subprocess.run(
        ["chroot", str(rootfs), "sh", "-c", "id -un; cat /etc/group | wc -l; ls -d /tmp"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.stdout.split() == ["root", "2", "/tmp"], res.stderr


@pytest.mark.root
def test_busybox_layer_extracted_with_plain_tar_runs_echo_in_chroot(busybox, tmp_path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    blob = busybox.blob_path(busybox.layers[0].descriptor.digest)
    with tarfile.open(blob, "r:gz") as tf:
        images.extract_all(tf, rootfs, trusted=True)
    res = _chroot_echo(rootfs)
    assert (res.returncode, res.stdout) == (0, "ok\n"), res.stderr
    assert oct((rootfs / "tmp").stat().st_mode & 0o7777) == oct(0o1777)


def test_busybox_config_runs_sh_for_the_host_platform(busybox):
    cfg = json.loads(busybox.blob(busybox.config.digest))
    assert cfg["os"] == "linux"
    assert cfg["architecture"] == images.host_platform()["architecture"]
    assert cfg["config"]["Cmd"] == ["/bin/sh"]
    assert any(e.startswith("PATH=") for e in cfg["config"]["Env"])
    assert cfg["rootfs"]["diff_ids"] == [busybox.layers[0].diff_id]
    manifest = json.loads(busybox.blob(busybox.manifest.digest))
    assert manifest["config"]["digest"] == busybox.config.digest
    assert manifest["layers"][0]["mediaType"] == images.MT_OCI_LAYER_GZIP


def test_oci_archive_has_both_name_annotations_and_blobs_matching_their_digests(busybox, tmp_path):
    archive = busybox.oci_archive(tmp_path / "busybox.tar")
    entries = images.validate_oci_archive(archive)
    assert [e.digest for e in entries] == [busybox.manifest.digest]
    assert entries[0].annotations == {
        "io.containerd.image.name": "docker.io/library/busybox:latest",
        "org.opencontainers.image.ref.name": "latest",
    }
    with tarfile.open(archive) as tf:
        names = tf.getnames()
        assert {"oci-layout", "index.json"} <= set(names)
        for name in names:
            if name.startswith("blobs/sha256/") and len(name) > len("blobs/sha256/"):
                data = tf.extractfile(name).read()  # type: ignore[union-attr]
                assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    blobs = {n.rsplit("/", 1)[1] for n in names if n.count("/") == 2 and not n.endswith("/")}
    assert blobs == {d.hex for d in busybox.blobs()}


def test_layout_validation_fails_on_a_blob_whose_content_changed(image_cache, tmp_path):
    img = images.build_image(tmp_path / "layout", "example.com/x:1", [{"a": "one"}])
    assert images.validate_layout(img.layout)
    blob = img.blob_path(img.layers[0].descriptor.digest)
    data = blob.read_bytes()
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(images.LayoutError, match="content has digest"):
        images.validate_layout(img.layout)


def test_layers_are_reproducible_byte_for_byte(tmp_path):
    tree = {"etc/hello": "hi\n", "bin/x": images.File(data=b"\x7fELF", mode=0o755)}
    a = images.build_image(tmp_path / "a", "x", [tree])
    b = images.build_image(tmp_path / "b", "x", [tree])
    assert a.target == b.target
    assert a.blob(a.layers[0].descriptor.digest) == b.blob(b.layers[0].descriptor.digest)


def test_zstd_and_plain_layers_have_the_gzip_layers_diff_id(tmp_path):
    tree = {"f": "data" * 100}
    by = {
        c: images.build_image(tmp_path / c, "x", [tree], compression=c).layers[0]
        for c in ("gzip", "zstd", "none")
    }
    assert len({la.diff_id for la in by.values()}) == 1
    assert by["none"].descriptor.digest == by["none"].diff_id
    assert by["zstd"].descriptor.media_type == images.MT_OCI_LAYER_ZSTD
    assert by["none"].descriptor.media_type == images.MT_OCI_LAYER


def test_docker_archive_holds_config_and_uncompressed_layers_matching_diff_ids(busybox, tmp_path):
    archive = busybox.docker_archive(tmp_path / "busybox-docker.tar")
    with tarfile.open(archive) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        repositories = json.load(tf.extractfile("repositories"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == ["busybox:latest"]
        config = tf.extractfile(manifest[0]["Config"]).read()  # type: ignore[union-attr]
        assert "sha256:" + hashlib.sha256(config).hexdigest() == busybox.config.digest
        diff_ids = [
            "sha256:" + hashlib.sha256(tf.extractfile(p).read()).hexdigest()  # type: ignore[union-attr]
            for p in manifest[0]["Layers"]
        ]
    assert diff_ids == list(busybox.diff_ids)
    assert repositories == {"busybox": {"latest": manifest[0]["Layers"][-1].split("/")[0]}}


def _layer_names(img, layer):
    return [m.name for m in images.iter_layer_members(img, layer)]


def test_whiteout_helpers_name_entries_as_the_oci_spec_says(image_cache):
    img = images.layered_image(
        image_cache,
        [
            {"a/x": "x", "a/y": "y", "b/z": "z"},
            {images.whiteout("a/x"): images.WHITEOUT, images.opaque("b"): images.WHITEOUT},
        ],
    )
    assert len(img.layers) == 2
    assert "a/.wh.x" in _layer_names(img, img.layers[1])
    assert "b/.wh..wh..opq" in _layer_names(img, img.layers[1])
    assert images.whiteout("/top") == ".wh.top"


@pytest.mark.root
def test_umoci_applies_whiteouts_and_opaque_dirs_of_upper_layers(image_cache, tmp_path):
    peers.require_binary("umoci")
    img = images.layered_image(
        image_cache,
        [
            {"a/x": "x", "a/y": "y", "b/z": "z"},
            {
                images.whiteout("a/x"): images.WHITEOUT,
                images.opaque("b"): images.WHITEOUT,
                "b/new": "n",
            },
        ],
        name="example.com/whiteouts:v1",
    )
    rootfs = images.umoci_unpack(img, tmp_path / "bundle")
    assert sorted(p.name for p in (rootfs / "a").iterdir()) == ["y"]
    assert sorted(p.name for p in (rootfs / "b").iterdir()) == ["new"]


def test_multiplatform_index_lists_every_platform_with_the_host_manifest_runnable(image_cache):
    img = images.multiplatform_image(image_cache, platforms=("linux/amd64", "linux/arm64"))
    index = json.loads(img.blob(img.target.digest))
    assert img.target.media_type == images.MT_OCI_INDEX
    assert [images.format_platform(m["platform"]) for m in index["manifests"]] == [
        "linux/amd64",
        "linux/arm64",
    ]
    host = images.format_platform(images.host_platform())
    if host in ("linux/amd64", "linux/arm64"):
        assert images.format_platform(img.manifest.platform) == host
        assert len(img.layers) == 2  # busybox + the /etc/platform marker
    assert images.validate_layout(img.layout)


def test_docker_media_types_give_a_docker_schema2_manifest(image_cache):
    img = images.busybox_image(image_cache, media_types="docker", name="example.com/bb:docker")
    m = json.loads(img.blob(img.manifest.digest))
    assert m["mediaType"] == images.MT_DOCKER_MANIFEST
    assert m["config"]["mediaType"] == images.MT_DOCKER_CONFIG
    assert m["layers"][0]["mediaType"] == images.MT_DOCKER_LAYER_GZIP


def test_pause_binary_sleeps_until_sigterm_and_exits_zero(pause, image_cache):
    binary = images.pause_binary(image_cache)
    proc = subprocess.Popen([str(binary)], stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    cfg = json.loads(pause.blob(pause.config.digest))
    assert cfg["config"]["Entrypoint"] == ["/pause"]
    assert pause.name == "registry.k8s.io/pause:3.10"


def test_large_image_has_one_layer_per_requested_size(image_cache):
    sizes = [1 << 20, 3 << 19]
    img = images.large_image(image_cache, sizes, compressible=True, seed=7)
    assert len(img.layers) == 2
    for la, size in zip(img.layers, sizes, strict=True):
        members = list(images.iter_layer_members(img, la))
        assert [m.size for m in members if m.isfile()] == [size]
        assert la.descriptor.size < size  # compressible text compresses
    with gzip.open(img.blob_path(img.layers[0].descriptor.digest)) as f:
        assert "sha256:" + hashlib.sha256(f.read()).hexdigest() == img.layers[0].diff_id


def test_builders_reuse_the_cached_image_when_called_again(image_cache):
    a = images.busybox_image(image_cache)
    mtime = os.stat(a.layout / "index.json").st_mtime_ns
    b = images.busybox_image(image_cache)
    assert a == b
    assert os.stat(b.layout / "index.json").st_mtime_ns == mtime


def test_reference_helpers_normalise_like_docker():
    assert images.normalize_name("busybox") == "docker.io/library/busybox:latest"
    assert images.normalize_name("foo/bar:1") == "docker.io/foo/bar:1"
    assert images.normalize_name("127.0.0.1:5000/x") == "127.0.0.1:5000/x:latest"
    assert images.ref_tag("127.0.0.1:5000/x/y:v2") == "v2"
    assert images.ref_repository("127.0.0.1:5000/x/y:v2") == "127.0.0.1:5000/x/y"
    assert images.familiar_name("docker.io/library/busybox:latest") == "busybox:latest"


def test_tree_rejects_paths_that_escape_the_layer(tmp_path):
    with pytest.raises(ValueError, match="invalid path"):
        images.write_layer_tar({"../etc/passwd": "x"}, io.BytesIO())
