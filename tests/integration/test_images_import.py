"""Images end to end against the real daemon: Debian's ``ctr`` (containerd 1.6, client-side
import through our Content/Images/Leases/Snapshots/Diff services) and ``pyctr``."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

import images
import pytest
from daemon import Daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]

NAME = "docker.io/library/busybox:latest"
REQUIRED = (
    "io.containerd.grpc.v1.images",
    "io.containerd.grpc.v1.leases",
    "io.containerd.grpc.v1.namespaces",
    "io.containerd.grpc.v1.diff",
)


@pytest.fixture
def d(tmp_path):
    with Daemon(tmp_path / "d") as daemon:
        ids = daemon.ctr("plugins", "ls", "-q").stdout.split()
        missing = [p for p in REQUIRED if p.rsplit(".", 1)[1] not in ids]
        if missing:
            pytest.skip(f"services not built in yet: {', '.join(missing)}")
        yield daemon


def _run_busybox(d, snapshotter, namespace, chain_id, key):
    """Prepare a child of ``chain_id``, mount what ``ctr snapshots mounts`` prints, chroot."""
    d.ctr("snapshots", "--snapshotter", snapshotter, "prepare", key, chain_id, namespace=namespace)
    mnt = tempfile.mkdtemp(prefix="imgtest-")
    try:
        out = d.ctr(
            "snapshots", "--snapshotter", snapshotter, "mounts", mnt, key, namespace=namespace
        ).stdout
        for line in out.strip().splitlines():
            subprocess.run(line.split(), check=True)
        try:
            res = subprocess.run(
                ["chroot", mnt, "/bin/busybox", "echo", "ok"],
                capture_output=True,
                text=True,
                check=True,
            )
            assert res.stdout == "ok\n"
        finally:
            subprocess.run(["umount", mnt], check=False)
    finally:
        os.rmdir(mnt)
        d.ctr("snapshots", "--snapshotter", snapshotter, "rm", key, namespace=namespace)


@pytest.mark.parametrize("kind", ["oci", "docker"])
@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
def test_ctr_import_ls_content_snapshots_run(d, busybox, tmp_path, kind, snapshotter):
    arc = (
        busybox.oci_archive(tmp_path / "bb.tar")
        if kind == "oci"
        else busybox.docker_archive(tmp_path / "bb.tar")
    )
    out = d.ctr("images", "import", "--snapshotter", snapshotter, str(arc)).stdout
    assert f"unpacking {NAME}" in out and "done" in out

    ls = d.ctr("images", "ls").stdout.splitlines()
    assert ls[0].split() == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    row = next(r for r in ls[1:] if r.startswith(NAME))
    assert re.search(r"\d+\.\d (KiB|MiB)", row)
    assert images.format_platform(images.host_platform()) in row

    digests = d.ctr("content", "ls", "-q").stdout.split()
    assert busybox.config.digest in digests
    got = subprocess.run(
        ["ctr", "-a", d.address, "content", "get", busybox.config.digest],
        capture_output=True,
        check=True,
        env={**os.environ, "CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS": "1"},
    ).stdout
    assert got == busybox.blob(busybox.config.digest)

    chain = busybox.diff_ids[-1]  # one layer: chain id == diff id
    snaps = d.ctr("snapshots", "--snapshotter", snapshotter, "ls").stdout
    assert chain in snaps and "Committed" in snaps
    assert "extract-" not in snaps
    _run_busybox(d, snapshotter, None, chain, "c1")


def test_images_rm_then_gc_removes_blobs_and_snapshots_but_keeps_leased(d, busybox, tmp_path):
    d.ctr("images", "import", str(busybox.oci_archive(tmp_path / "bb.tar")))
    d.ctr("leases", "create", "--id", "keep")
    d.ctr("leases", "ls")
    # hold the layer blob in a lease through the API (the config would keep the snapshot too,
    # through its gc.ref.snapshot label)
    import asyncio

    from pycontainerd.cli.pyctr import remote
    from pycontainerd.core import namespaces

    layer = busybox.layers[0].descriptor.digest

    async def add() -> None:
        ch = remote.dial(d.address)
        try:
            from pycontainerd.api.containerd.services.leases.v1 import leases_pb2 as lpb
            from pycontainerd.api.containerd.services.leases.v1 import leases_pb2_grpc

            with namespaces.use("default"):
                await leases_pb2_grpc.LeasesStub(ch).AddResource(
                    lpb.AddResourceRequest(
                        id="keep", resource=lpb.Resource(id=layer, type="content")
                    ),
                    metadata=remote._metadata(),
                )
        finally:
            await ch.close()

    asyncio.run(add())
    d.ctr("images", "rm", "--sync", NAME)
    assert d.ctr("images", "ls", "-q").stdout.strip() == ""
    left = d.ctr("content", "ls", "-q").stdout.split()
    assert left == [layer]
    assert (
        d.ctr("snapshots", "--snapshotter", "overlayfs", "ls").stdout.strip().splitlines()[1:] == []
    )


def test_pyctr_import_with_progress(d, busybox, tmp_path):
    arc = busybox.oci_archive(tmp_path / "bb.tar")
    res = d.pyctr("-n", "py", "images", "import", str(arc))
    assert "stored" in res.stdout and "elapsed:" in res.stdout
    assert f"unpacking {NAME}" in res.stdout and "done" in res.stdout
    ls = d.pyctr("-n", "py", "images", "ls").stdout
    assert NAME in ls and images.format_platform(images.host_platform()) in ls
    # ctr sees what pyctr did, and the other way round
    assert NAME in d.ctr("images", "ls", "-q", namespace="py").stdout
    snaps = d.pyctr("-n", "py", "snapshots", "ls").stdout
    assert busybox.diff_ids[-1] in snaps
    _run_busybox(d, "overlayfs", "py", busybox.diff_ids[-1], "c2")
    assert busybox.config.digest in d.pyctr("-n", "py", "content", "ls", "-q").stdout
    assert "py" in d.pyctr("namespaces", "ls", "-q").stdout.split()
    assert d.pyctr("-n", "py", "leases", "ls", "-q").stdout.strip() == ""  # lease deleted
    out = tmp_path / "export.tar"
    d.pyctr("-n", "py", "images", "export", str(out), NAME)
    images.validate_oci_archive(out)
    assert d.pyctr("-n", "py", "images", "rm", "--sync", NAME).stdout.strip() == NAME


def test_pyctr_import_docker_archive_from_stdin(d, busybox, tmp_path):
    arc = busybox.docker_archive(tmp_path / "bbd.tar")

    with open(arc, "rb") as f:
        res = subprocess.run(
            d.pyctr_cmd(
                "images",
                "import",
                "--no-progress",
                "-",
            ),
            stdin=f,
            capture_output=True,
            text=True,
            env=d.env,
            timeout=60,
        )
    assert res.returncode == 0, res.stderr
    assert f"unpacking {NAME}" in res.stdout
    assert "application/vnd.docker.distribution.manifest.v2+json" in d.ctr("images", "ls").stdout
