"""The CRI ImageService and the runtime basics of the real daemon, through the generated
``runtime.v1`` stubs on its socket: Version, Status, RuntimeConfig; busybox pushed to a local
docker-registry and pulled by tag, digest and short name (a docker.io mirror in the
``hosts.toml`` directory of ``registry.config_path``); ImageStatus for every reference form;
ListImages; RemoveImage by tag and by ID; ImageFsInfo; error codes; the layers unpacked in
overlayfs; and ``ctr -n k8s.io images ls`` showing the CRI's records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import peers
import pytest
from cri import CRIClient, pb
from daemon import Daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]


def _hosts(base: Path, registry: Any) -> Path:
    root = base / "certs.d"
    d = root / registry.host
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts.toml").write_text(
        f'server = "http://{registry.host}"\n'
        f'[host."http://{registry.host}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    mirror = root / "docker.io"
    mirror.mkdir(parents=True, exist_ok=True)
    (mirror / "hosts.toml").write_text(
        'server = "https://registry-1.docker.io"\n'
        f'[host."http://{registry.host}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    return root


@pytest.fixture(scope="module")
def pushed(registry: Any, busybox: Any) -> dict[str, str]:
    desc = registry.push(busybox, repository="cri/busybox")
    registry.push(busybox, repository="library/busybox")
    return {
        "tag": registry.ref("cri/busybox"),
        "digest_ref": f"{registry.host}/cri/busybox@{desc.digest}",
        "manifest": desc.digest,
        "id": busybox.config.digest,
        "chain_id": busybox.layers[0].diff_id,
    }


@pytest.fixture
def daemon(tmp_path: Path, registry: Any) -> Iterator[Daemon]:
    certs = _hosts(tmp_path, registry)
    config = f"""version = 3
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
[plugins."io.containerd.cri.v1.images".registry]
  config_path = "{certs}"
[plugins."io.containerd.cri.v1.runtime".cni]
  conf_dir = "{tmp_path / "net.d"}"
"""
    d = Daemon(tmp_path / "d", config=config)
    d.start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def cri(daemon: Daemon) -> Iterator[CRIClient]:
    with CRIClient(daemon.address) as c:
        yield c


def _code(fn: Any, *args: Any, **kw: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as ei:
        fn(*args, **kw)
    return ei.value


def test_version_status_and_runtime_config(cri, daemon):
    v = cri.version()
    assert (v.version, v.runtime_name, v.runtime_api_version) == ("0.1.0", "pycontainerd", "v1")
    conds = {c.type: c for c in cri.status().status.conditions}
    assert conds["RuntimeReady"].status
    assert not conds["NetworkReady"].status
    assert conds["NetworkReady"].reason == "NetworkPluginNotReady"
    assert "ContainerdHasNoDeprecationWarnings" in conds
    assert "" in [h.name for h in cri.status().runtime_handlers]
    assert "config" in cri.status(verbose=True).info
    assert cri.runtime_config().linux.cgroup_driver == pb.CGROUPFS


def test_pull_status_list_remove(cri, daemon, pushed):
    image_id = cri.pull(pushed["tag"])
    assert image_id == pushed["id"]
    short = image_id.removeprefix("sha256:")[:12]
    for form in (pushed["tag"], pushed["digest_ref"], image_id, short, "sha256:" + short):
        image = cri.image_status(form).image
        assert image.id == image_id, form
        assert list(image.repo_tags) == [pushed["tag"]]
        assert list(image.repo_digests) == [pushed["digest_ref"]]
        assert image.size > 0
    listed = cri.list_images()
    assert [i.id for i in listed] == [image_id]
    assert cri.stream_images()[0].id == image_id

    # the CRI's records, as ctr sees them
    names = daemon.ctr("images", "ls", "-q", namespace="k8s.io").stdout.split()
    assert sorted(names) == sorted([pushed["tag"], pushed["digest_ref"], image_id])
    out = daemon.ctr("images", "ls", namespace="k8s.io").stdout
    assert "io.cri-containerd.image=managed" in out

    # the layer is unpacked in overlayfs
    info = daemon.ctr(
        "snapshots", "--snapshotter", "overlayfs", "info", pushed["chain_id"], namespace="k8s.io"
    ).stdout
    assert json.loads(info)["Kind"] in ("Committed", 3)
    fs = cri.image_fs_info().image_filesystems[0]
    assert fs.used_bytes.value > 0 and fs.inodes_used.value > 0
    assert fs.fs_id.mountpoint.endswith("io.containerd.snapshotter.v1.overlayfs")

    cri.remove(pushed["tag"])
    assert cri.list_images() == []
    assert not cri.image_status(image_id).HasField("image")
    assert daemon.ctr("images", "ls", "-q", namespace="k8s.io").stdout.split() == []
    cri.remove(pushed["tag"])  # idempotent


def test_pull_by_digest_and_short_name_then_remove_by_id(cri, daemon, pushed):
    assert cri.pull(pushed["digest_ref"]) == pushed["id"]
    image = cri.image_status(pushed["id"]).image
    assert list(image.repo_tags) == [] and list(image.repo_digests) == [pushed["digest_ref"]]
    assert cri.pull("busybox") == pushed["id"]
    image = cri.image_status("busybox").image
    assert list(image.repo_tags) == ["docker.io/library/busybox:latest"]
    assert len(image.repo_digests) == 2
    assert len(cri.list_images()) == 1
    cri.remove(pushed["id"])
    assert cri.list_images() == []
    assert daemon.ctr("images", "ls", "-q", namespace="k8s.io").stdout.split() == []


def test_errors(cri, pushed, registry):
    assert _code(cri.pull, registry.ref("cri/busybox", "missing")).code() == (
        grpc.StatusCode.NOT_FOUND
    )
    assert _code(cri.pull, "Invalid//Ref").code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(cri.pull, pushed["tag"], runtime_handler="nope").code() == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert cri.list_images() == []


def test_images_imported_with_ctr_into_k8s_io_are_seen_by_the_cri(cri, daemon, busybox, tmp_path):
    peers.require_binary("ctr")
    import images as test_images

    archive = test_images.write_oci_archive(busybox, tmp_path / "busybox.tar")
    daemon.ctr(
        "images",
        "import",
        "--snapshotter",
        "overlayfs",
        str(archive),
        namespace="k8s.io",
        timeout=120,
    )
    image = cri.image_status(busybox.name).image
    assert image.id == busybox.config.digest
    assert busybox.name in image.repo_tags
    names = daemon.ctr("images", "ls", "-q", namespace="k8s.io").stdout.split()
    assert busybox.config.digest in names  # the CRI added the ID record
