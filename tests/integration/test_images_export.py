"""Image export against the real daemon: Debian's ``ctr images export`` (containerd 1.6 builds
the archive client-side, reading the image's blobs through our Images and Content APIs) and
``pyctr images export`` produce archives that import back, with either client, and unpack to
the same snapshots."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import images
import pytest
from daemon import Daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]

NAME = "docker.io/library/busybox:latest"
LAYERED = "docker.io/library/layered-export:1"


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    if not os.path.exists("/usr/bin/ctr"):
        pytest.skip("ctr (Debian package containerd) is not installed")
    with Daemon(tmp_path_factory.mktemp("export") / "d") as daemon:
        yield daemon


@pytest.fixture(scope="module")
def layered(image_cache: Path) -> images.Image:
    return images.large_image(
        image_cache, [1 << 20, 256 << 10, 64 << 10], compressible=True, name=LAYERED
    )


def archive_index(path: Path) -> tuple[dict, list | None, set[str]]:
    with tarfile.open(path) as tf:
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        names = tf.getnames()
        mj = (
            json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
            if "manifest.json" in names
            else None
        )
    blobs = {"sha256:" + n.rsplit("/", 1)[1] for n in names if n.startswith("blobs/sha256/")}
    return index, mj, blobs


def committed(d: Daemon, ns: str, snapshotter: str = "overlayfs") -> set[str]:
    out = d.ctr("snapshots", "--snapshotter", snapshotter, "ls", namespace=ns).stdout
    return {ln.split()[0] for ln in out.splitlines()[1:] if ln.strip().endswith("Committed")}


def chain_ids(diff_ids: tuple[str, ...]) -> list[str]:
    import hashlib

    out: list[str] = []
    for x in diff_ids:
        out.append(
            x if not out else "sha256:" + hashlib.sha256(f"{out[-1]} {x}".encode()).hexdigest()
        )
    return out


@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_ctr_export_of_an_imported_image_imports_back(d, busybox, tmp_path, kind):
    ns = f"ctr-exp-{kind}"
    arc = (
        busybox.oci_archive(tmp_path / "bb.tar")
        if kind == "oci"
        else busybox.docker_archive(tmp_path / "bb.tar")
    )
    d.ctr("images", "import", str(arc), namespace=ns)
    target = d.ctr("images", "ls", namespace=ns).stdout.splitlines()[1].split()[2]
    out = tmp_path / "exported.tar"
    d.ctr("images", "export", str(out), NAME, namespace=ns)

    # a valid OCI layout whose index names the image, plus docker's manifest.json
    assert [x.digest for x in images.validate_oci_archive(out)] == [target]
    index, mj, blobs = archive_index(out)
    [entry] = index["manifests"]
    assert entry["digest"] == target
    assert entry["annotations"]["io.containerd.image.name"] == NAME
    # docker save stores the layer uncompressed: its digest is the diff ID
    layer = busybox.layers[0].descriptor.digest if kind == "oci" else busybox.diff_ids[0]
    assert {busybox.config.digest, layer} <= blobs
    assert mj is not None and mj[0]["RepoTags"] == ["busybox:latest"]

    # ctr imports it back into a fresh namespace, and it unpacks to the same chain
    back = f"{ns}-back"
    res = d.ctr("images", "import", str(out), namespace=back).stdout
    assert f"unpacking {NAME}" in res and "done" in res
    assert d.ctr("images", "ls", "-q", namespace=back).stdout.split() == [NAME]
    assert busybox.diff_ids[-1] in committed(d, back)
    # so does pyctr
    res = d.pyctr("-n", f"{ns}-py", "images", "import", "--no-progress", str(out)).stdout
    assert f"unpacking {NAME}" in res
    assert NAME in d.pyctr("-n", f"{ns}-py", "images", "ls", "-q").stdout.split()


def test_ctr_export_of_a_multi_layer_image_round_trips(d, layered, tmp_path):
    ns = "ctr-exp-layers"
    d.ctr("images", "import", str(layered.oci_archive(tmp_path / "l.tar")), namespace=ns)
    out = tmp_path / "exported.tar"
    d.ctr("images", "export", str(out), LAYERED, namespace=ns)
    index, _, blobs = archive_index(out)
    assert index["manifests"][0]["digest"] == layered.manifest.digest
    assert {la.descriptor.digest for la in layered.layers} <= blobs
    d.ctr("images", "import", str(out), namespace=f"{ns}-back")
    assert set(chain_ids(layered.diff_ids)) <= committed(d, f"{ns}-back")
    # the exported bytes of every blob are the ones the image was made of
    with tarfile.open(out) as tf:
        for la in layered.layers:
            dg = la.descriptor.digest
            data = tf.extractfile(f"blobs/sha256/{dg.split(':', 1)[1]}").read()  # type: ignore[union-attr]
            assert data == layered.blob(dg)


def test_pyctr_export_imports_back_with_ctr_and_pyctr(d, busybox, tmp_path):
    ns = "py-exp"
    d.pyctr("-n", ns, "images", "import", "--no-progress", str(busybox.oci_archive(tmp_path / "b")))
    out = tmp_path / "pyexported.tar"
    d.pyctr("-n", ns, "images", "export", str(out), NAME)
    assert [x.digest for x in images.validate_oci_archive(out)] == [busybox.manifest.digest]
    index, mj, _ = archive_index(out)
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == NAME
    assert mj is not None and mj[0]["RepoTags"] == ["busybox:latest"]
    res = d.ctr("images", "import", str(out), namespace=f"{ns}-ctr").stdout
    assert f"unpacking {NAME}" in res and "done" in res
    assert busybox.diff_ids[-1] in committed(d, f"{ns}-ctr")
    d.pyctr("-n", f"{ns}-py", "images", "import", "--no-progress", str(out))
    assert busybox.diff_ids[-1] in committed(d, f"{ns}-py")
    # exporting what is not there fails cleanly, with no archive
    missing = tmp_path / "missing.tar"
    res = d.pyctr("-n", ns, "images", "export", str(missing), "nothing:here", check=False)
    assert res.returncode != 0 and "not found" in res.stderr
    res = d.ctr(
        "images", "export", str(tmp_path / "m2.tar"), "nothing:here", namespace=ns, check=False
    )
    assert res.returncode != 0 and "not found" in res.stderr
