"""The CRI ImageService over an in-process daemon and a real docker-registry: pulls by every
reference form (tag, digest, short name through a docker.io mirror), the records a pull
creates, status by every reference form, list, removal, auth, pinned images, image users,
image records created by others, and the index rebuilt at start-up."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import grpc
import images as test_images
import pytest
from cri import AsyncCRIClient, pb

from pycontainerd.core import namespaces
from pycontainerd.core.metadata.images import Image as ImageRecord
from pycontainerd.core.plugin import Status

pytestmark = [pytest.mark.integration]


def hosts_dir(base: Path, *registries: Any, mirror_docker_io: Any = None) -> Path:
    """A ``hosts.toml`` directory: plain HTTP for each registry, and optionally docker.io
    mirrored by one of them."""
    root = base / "certs.d"
    for reg in registries:
        d = root / reg.host
        d.mkdir(parents=True, exist_ok=True)
        (d / "hosts.toml").write_text(
            f'server = "http://{reg.host}"\n'
            f'[host."http://{reg.host}"]\n  capabilities = ["pull", "resolve"]\n'
        )
    if mirror_docker_io is not None:
        d = root / "docker.io"
        d.mkdir(parents=True, exist_ok=True)
        (d / "hosts.toml").write_text(
            'server = "https://registry-1.docker.io"\n'
            f'[host."http://{mirror_docker_io.host}"]\n  capabilities = ["pull", "resolve"]\n'
        )
    return root


@pytest.fixture
def cri_config(registry, tmp_path):
    certs = hosts_dir(tmp_path, registry, mirror_docker_io=registry)
    return {"io.containerd.cri.v1.images": {"registry": {"config_path": str(certs)}}}


@pytest.fixture
def pushed(registry, busybox) -> dict[str, str]:
    """busybox in the registry as cri/busybox:latest and library/busybox:latest."""
    desc = registry.push(busybox, repository="cri/busybox")
    registry.push(busybox, repository="library/busybox")
    return {
        "tag": registry.ref("cri/busybox"),
        "digest_ref": f"{registry.host}/cri/busybox@{desc.digest}",
        "manifest": desc.digest,
        "id": busybox.config.digest,
    }


async def records(d: Any) -> dict[str, ImageRecord]:
    md = d.instance("io.containerd.metadata.v1.bolt")
    with namespaces.use("k8s.io"):
        return {i.name: i for i in await md.images.list()}


async def rpc_error(coro: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await coro
    return ei.value


async def test_pull_by_tag_records_tag_digest_ref_and_id(cri_daemon, pushed):
    image_id = await cri_daemon.cri.pull(pushed["tag"])
    assert image_id == pushed["id"]
    recs = await records(cri_daemon)
    assert set(recs) == {pushed["tag"], pushed["digest_ref"], pushed["id"]}
    for rec in recs.values():
        assert rec.target.digest == pushed["manifest"]
        assert rec.labels == {"io.cri-containerd.image": "managed"}


async def test_status_by_every_reference_form(cri_daemon, pushed):
    image_id = await cri_daemon.cri.pull(pushed["tag"])
    short_id = image_id.removeprefix("sha256:")[:12]
    forms = [
        pushed["tag"],
        pushed["digest_ref"],
        image_id,
        image_id.removeprefix("sha256:"),
        short_id,
        "sha256:" + short_id,
    ]
    for form in forms:
        image = (await cri_daemon.cri.image_status(form)).image
        assert image.id == image_id, form
        assert list(image.repo_tags) == [pushed["tag"]]
        assert list(image.repo_digests) == [pushed["digest_ref"]]
        assert image.size > 0 and not image.pinned
        assert not image.HasField("uid") and image.username == ""
    missing = await cri_daemon.cri.image_status("127.0.0.1:1/nope:latest")
    assert not missing.HasField("image")


async def test_status_verbose_has_chain_id_and_config(cri_daemon, pushed, busybox):
    image_id = await cri_daemon.cri.pull(pushed["tag"])
    resp = await cri_daemon.cri.image_status(image_id, verbose=True)
    info = json.loads(resp.info["info"])
    assert info["chainID"].startswith("sha256:")
    assert info["imageSpec"]["rootfs"]["diff_ids"] == [layer.diff_id for layer in busybox.layers]
    assert info["imageSpec"]["config"]["Cmd"] == ["/bin/sh"]


async def test_pull_by_digest_and_by_short_name_through_a_mirror(cri_daemon, pushed):
    by_digest = await cri_daemon.cri.pull(pushed["digest_ref"])
    assert by_digest == pushed["id"]
    recs = await records(cri_daemon)
    assert pushed["tag"] not in recs
    assert set(recs) == {pushed["digest_ref"], pushed["id"]}
    by_name = await cri_daemon.cri.pull("busybox")
    assert by_name == pushed["id"]
    image = (await cri_daemon.cri.image_status("busybox")).image
    assert "docker.io/library/busybox:latest" in image.repo_tags
    assert set(image.repo_digests) == {
        pushed["digest_ref"],
        f"docker.io/library/busybox@{pushed['manifest']}",
    }


async def test_list_and_stream_images(cri_daemon, pushed, registry, image_cache):
    other = test_images.busybox_image(image_cache, extra={"etc/other": b"x"})
    registry.push(other, repository="cri/other")
    await cri_daemon.cri.pull(pushed["tag"])
    await cri_daemon.cri.pull(registry.ref("cri/other"))
    listed = await cri_daemon.cri.list_images()
    assert len(listed) == 2
    assert {t for i in listed for t in i.repo_tags} == {pushed["tag"], registry.ref("cri/other")}
    streamed = []
    async for resp in cri_daemon.cri.images.StreamImages(pb.StreamImagesRequest()):
        streamed.extend(resp.images)
    assert sorted(i.id for i in streamed) == sorted(i.id for i in listed)
    only = await cri_daemon.cri.list_images(pushed["tag"])
    assert [i.id for i in only] == [pushed["id"]]
    assert await cri_daemon.cri.list_images("127.0.0.1:1/nope") == []


async def test_remove_by_tag_removes_every_record_and_is_idempotent(cri_daemon, pushed):
    await cri_daemon.cri.pull(pushed["tag"])
    await cri_daemon.cri.remove(pushed["tag"])
    assert await records(cri_daemon) == {}
    assert await cri_daemon.cri.list_images() == []
    assert not (await cri_daemon.cri.image_status(pushed["id"])).HasField("image")
    await cri_daemon.cri.remove(pushed["tag"])
    await cri_daemon.cri.remove("sha256:" + "0" * 64)


async def test_remove_by_id_then_image_fs_is_empty_again(cri_daemon, pushed):
    await cri_daemon.cri.pull(pushed["tag"])
    info = (await cri_daemon.cri.image_fs_info()).image_filesystems[0]
    assert info.used_bytes.value > 0 and info.inodes_used.value > 0
    assert info.fs_id.mountpoint.endswith("io.containerd.snapshotter.v1.native")
    await cri_daemon.cri.remove(pushed["id"][:19])
    assert await records(cri_daemon) == {}
    info = (await cri_daemon.cri.image_fs_info()).image_filesystems[0]
    assert info.used_bytes.value == 0


async def test_pulled_layers_are_unpacked_in_the_snapshotter(cri_daemon, pushed):
    image_id = await cri_daemon.cri.pull(pushed["tag"])
    resp = await cri_daemon.cri.image_status(image_id, verbose=True)
    chain_id = json.loads(resp.info["info"])["chainID"]
    info = await cri_daemon.service.client.snapshot_stat("native", chain_id)
    assert info.name == chain_id


async def test_pull_errors_have_containerd_codes(cri_daemon, pushed, registry):
    err = await rpc_error(cri_daemon.cri.pull(registry.ref("cri/busybox", "missing")))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await rpc_error(cri_daemon.cri.pull("Bad/Reference::"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "failed to parse image reference" in err.details()
    err = await rpc_error(cri_daemon.cri.pull(pushed["tag"], runtime_handler="nope"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown runtime handler" in err.details()
    assert await records(cri_daemon) == {}


async def test_pull_for_the_default_handler_by_name(cri_daemon, pushed):
    assert await cri_daemon.cri.pull(pushed["tag"], runtime_handler="runc") == pushed["id"]
    sandbox = pb.PodSandboxConfig(annotations={"io.containerd.cri.runtime-handler": "runc"})
    assert await cri_daemon.cri.pull(pushed["tag"], sandbox_config=sandbox) == pushed["id"]


async def test_user_is_reported_as_uid_or_username(cri_daemon, registry, image_cache):
    numeric = test_images.busybox_image(image_cache, config={"User": "1000:100", "Cmd": ["sh"]})
    named = test_images.busybox_image(image_cache, config={"User": "nobody", "Cmd": ["sh"]})
    registry.push(numeric, repository="cri/numeric")
    registry.push(named, repository="cri/named")
    await cri_daemon.cri.pull(registry.ref("cri/numeric"))
    await cri_daemon.cri.pull(registry.ref("cri/named"))
    image = (await cri_daemon.cri.image_status(registry.ref("cri/numeric"))).image
    assert image.uid.value == 1000 and image.username == ""
    image = (await cri_daemon.cri.image_status(registry.ref("cri/named"))).image
    assert not image.HasField("uid") and image.username == "nobody"


async def test_records_made_by_others_in_k8s_io_become_managed(cri_daemon, pushed):
    """``ctr -n k8s.io images tag`` (or import) shows up in the CRI with an ID record."""
    await cri_daemon.cri.pull(pushed["tag"])
    await cri_daemon.cri.remove(pushed["digest_ref"])  # all records go
    image_id = await cri_daemon.cri.pull(pushed["tag"])
    target = (await records(cri_daemon))[pushed["tag"]].target
    md = cri_daemon.instance("io.containerd.metadata.v1.bolt")
    with namespaces.use("k8s.io"):
        await md.images.create(ImageRecord(name="example.com/retagged:v1", target=target))
    for _ in range(100):
        image = (await cri_daemon.cri.image_status("example.com/retagged:v1")).image
        if image.id:
            break
        await asyncio.sleep(0.05)
    assert image.id == image_id
    assert "example.com/retagged:v1" in image.repo_tags
    recs = await records(cri_daemon)
    assert recs["example.com/retagged:v1"].labels["io.cri-containerd.image"] == "managed"
    # and removed by others: the CRI forgets the reference
    with namespaces.use("k8s.io"):
        await md.images.delete("example.com/retagged:v1")
    for _ in range(100):
        image = (await cri_daemon.cri.image_status(image_id)).image
        if "example.com/retagged:v1" not in image.repo_tags:
            break
        await asyncio.sleep(0.05)
    assert "example.com/retagged:v1" not in image.repo_tags


async def test_index_is_rebuilt_at_start_up(start_cri, registry, pushed, tmp_path):
    base = tempfile.mkdtemp(prefix="cri", dir="/tmp")
    overrides = {
        "io.containerd.cri.v1.images": {
            "registry": {"config_path": str(hosts_dir(tmp_path, registry))}
        }
    }
    try:
        server = await start_cri(base, overrides)
        try:
            async with grpc.aio.insecure_channel(f"unix://{base}/d.sock") as ch:
                image_id = await AsyncCRIClient(ch).pull(pushed["tag"])
        finally:
            assert await server.stop(1) == []
        server = await start_cri(base, overrides)
        try:
            assert all(p.status is not Status.ERROR for p in server.plugins)
            async with grpc.aio.insecure_channel(f"unix://{base}/d.sock") as ch:
                image = (await AsyncCRIClient(ch).image_status(pushed["tag"])).image
        finally:
            assert await server.stop(1) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert image.id == image_id
    assert list(image.repo_digests) == [pushed["digest_ref"]]


class TestPinned:
    @pytest.fixture
    def cri_config(self, registry, tmp_path):
        certs = hosts_dir(tmp_path, registry)
        return {
            "io.containerd.cri.v1.images": {
                "registry": {"config_path": str(certs)},
                "pinned_images": {"sandbox": registry.ref("cri/busybox")},
            }
        }

    async def test_pinned_image_is_labelled_and_reported(self, cri_daemon, pushed):
        image_id = await cri_daemon.cri.pull(pushed["tag"])
        assert (await cri_daemon.cri.image_status(image_id)).image.pinned
        # every record of the pull carries the pinned label, as containerd's
        for rec in (await records(cri_daemon)).values():
            assert rec.labels["io.cri-containerd.pinned"] == "pinned"
        # pinned images can still be removed through the CRI, as in containerd
        await cri_daemon.cri.remove(image_id)
        assert await records(cri_daemon) == {}


class TestAuth:
    @pytest.fixture
    def private(self, registry_factory, busybox):
        reg = registry_factory(auth="basic")
        reg.push(busybox, repository="private/busybox")
        return reg

    @pytest.fixture
    def cri_config(self, private, tmp_path):
        certs = hosts_dir(tmp_path, private)
        return {"io.containerd.cri.v1.images": {"registry": {"config_path": str(certs)}}}

    async def test_credentials_from_the_request(self, cri_daemon, private, busybox):
        ref = private.ref("private/busybox")
        err = await rpc_error(cri_daemon.cri.pull(ref))
        assert err.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
        wrong = pb.AuthConfig(username=private.username, password="wrong")
        err = await rpc_error(cri_daemon.cri.pull(ref, auth=wrong))
        assert err.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
        good = pb.AuthConfig(username=private.username, password=private.password)
        assert await cri_daemon.cri.pull(ref, auth=good) == busybox.config.digest
        await cri_daemon.cri.remove(ref)
        encoded = base64.b64encode(f"{private.username}:{private.password}".encode()).decode()
        other_host = pb.AuthConfig(auth=encoded, server_address="https://elsewhere.example")
        err = await rpc_error(cri_daemon.cri.pull(ref, auth=other_host))
        assert err.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
        mine = pb.AuthConfig(auth=encoded, server_address=f"http://{private.host}")
        assert await cri_daemon.cri.pull(ref, auth=mine) == busybox.config.digest
