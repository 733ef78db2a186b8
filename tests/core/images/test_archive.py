"""Archive import/export against the real local content store and metadata: OCI and docker-save
archives, GC labels, verification of blob digests, image naming options, export round trip, and
what garbage collection keeps once the import lease is gone."""

from __future__ import annotations

import datetime
import io
import json
import tarfile

import images
import pytest

from pycontainerd.core import errdefs, leases, platforms
from pycontainerd.core.images import archive, mediatypes
from pycontainerd.core.images import image as image_

FAR = "2999-01-01T00:00:00Z"


async def do_import(md, path, lease="imp", **kw):
    try:
        await md.leases.create(lease, {"containerd.io/gc.expire": FAR})
    except errdefs.AlreadyExists:
        pass
    with leases.use(lease), open(path, "rb") as f:
        return await archive.import_images(
            md.content_store, md.images, f, archive.ImportOptions(**kw)
        )


async def blobs(md):
    return {i.digest: i async for i in md.content_store.walk()}


async def test_oci_archive_import_creates_named_image_with_gc_labels(md, busybox, tmp_path):
    got = await do_import(md, busybox.oci_archive(tmp_path / "bb.tar"))
    assert [i.name for i in got] == ["docker.io/library/busybox:latest"]
    img = await md.images.get("docker.io/library/busybox:latest")
    assert img.target.digest == busybox.manifest.digest
    assert img.target.media_type == mediatypes.OCI_MANIFEST
    info = await md.content_store.info(busybox.manifest.digest)
    assert info.labels["containerd.io/gc.ref.content.config"] == busybox.config.digest
    assert info.labels["containerd.io/gc.ref.content.l.0"] == busybox.layers[0].descriptor.digest
    present = await blobs(md)
    for d in busybox.blobs():
        assert present[d.digest].size == d.size


async def test_docker_archive_is_converted_to_a_docker_manifest_and_index(md, busybox, tmp_path):
    got = await do_import(md, busybox.docker_archive(tmp_path / "bb-docker.tar"))
    assert [i.name for i in got] == ["docker.io/library/busybox:latest"]
    target = got[0].target
    assert target.media_type == mediatypes.DOCKER_MANIFEST
    assert platforms.format(target.platform) == images.format_platform(images.host_platform())
    m = await image_.manifest(md.content_store, target)
    assert m.config.media_type == mediatypes.DOCKER_CONFIG
    assert m.config.digest == busybox.config.digest  # the config is kept byte for byte
    # docker save layers are uncompressed tars: their digest is the diff ID
    assert [la.digest for la in m.layers] == list(busybox.diff_ids)
    assert all(la.media_type == mediatypes.DOCKER_LAYER for la in m.layers)
    info = await md.content_store.info(target.digest)
    assert info.labels["containerd.io/gc.ref.content.config"] == m.config.digest
    # the v1 json/VERSION/repositories files never reach the store
    digests_in_store = set(await blobs(md))
    assert digests_in_store <= {target.digest, m.config.digest, *busybox.diff_ids} | {
        d
        for d in digests_in_store
        if (await md.content_store.info(d)).labels.get("containerd.io/gc.ref.content.m.0")
    }


async def test_corrupted_blob_fails_the_import_and_is_not_stored(md, busybox, tmp_path):
    src = busybox.oci_archive(tmp_path / "bb.tar")
    bad = tmp_path / "bad.tar"
    layer = busybox.layers[0].descriptor
    name = "blobs/sha256/" + layer.digest.split(":")[1]
    with tarfile.open(src) as tin, tarfile.open(bad, "w", format=tarfile.PAX_FORMAT) as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isreg() else None
            if m.name == name:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            tout.addfile(m, io.BytesIO(data) if data is not None else None)
    with pytest.raises(errdefs.FailedPrecondition, match=name):
        await do_import(md, bad)
    with pytest.raises(errdefs.NotFound):
        await md.content_store.info(layer.digest)
    assert await md.images.list() == []


async def test_archive_without_layout_or_manifest_is_refused(md, tmp_path):
    p = tmp_path / "junk.tar"
    with tarfile.open(p, "w") as tf:
        ti = tarfile.TarInfo("hello.txt")
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"hi"))
    with pytest.raises(errdefs.InvalidArgument, match="unrecognized image format"):
        await do_import(md, p)


async def test_missing_blob_is_not_found(md, busybox, tmp_path):
    src = busybox.oci_archive(tmp_path / "bb.tar")
    partial = tmp_path / "partial.tar"
    skip = "blobs/sha256/" + busybox.config.digest.split(":")[1]
    with tarfile.open(src) as tin, tarfile.open(partial, "w") as tout:
        for m in tin.getmembers():
            if m.name != skip:
                tout.addfile(m, tin.extractfile(m) if m.isreg() else None)
    with pytest.raises(errdefs.NotFound, match=busybox.config.digest):
        await do_import(md, partial)


async def test_index_name_digest_refs_and_labels(md, busybox, tmp_path):
    got = await do_import(
        md,
        busybox.oci_archive(tmp_path / "bb.tar"),
        index_name="example.com/whole:index",
        digest_ref=archive.digest_translator("example.com/bb"),
        labels={"team": "a"},
    )
    names = sorted(i.name for i in got)
    assert names == sorted(
        [
            "example.com/whole:index",
            "docker.io/library/busybox:latest",
            f"example.com/bb@{busybox.manifest.digest}",
        ]
    )
    whole = await md.images.get("example.com/whole:index")
    assert whole.target.media_type == mediatypes.OCI_INDEX
    assert whole.labels == {"team": "a"}


def test_ref_translators_match_containerd():
    add = archive.add_ref_prefix("foo/bar")
    assert add("latest") == "foo/bar:latest"
    assert add("docker.io/x/y:1") == "docker.io/x/y:1"
    flt = archive.filter_ref_prefix("foo/bar")
    assert flt("foo/bar:1") == "foo/bar:1"
    assert flt("foo/barbaz:1") == ""
    assert archive.oci_reference_name("docker.io/library/busybox:latest") == "latest"
    assert archive.normalize_reference("busybox") == "docker.io/library/busybox:latest"


async def test_reimport_updates_the_image_and_skips_present_blobs(md, busybox, tmp_path):
    path = busybox.oci_archive(tmp_path / "bb.tar")
    await do_import(md, path)
    seen = []
    await md.leases.create("again", {"containerd.io/gc.expire": FAR})
    with leases.use("again"), open(path, "rb") as f:
        await archive.import_images(md.content_store, md.images, f, progress=seen.append)
    statuses = {p.name: p.status for p in seen}
    assert set(statuses.values()) == {"exists"}
    assert len(await md.images.list()) == 1


async def test_only_the_host_platform_is_labelled_and_survives_gc(md, image_cache, tmp_path):
    img = images.multiplatform_image(image_cache)
    got = await do_import(md, img.oci_archive(tmp_path / "multi.tar"))
    index_info = await md.content_store.info(img.target.digest)
    refs = {
        v for k, v in index_info.labels.items() if k.startswith("containerd.io/gc.ref.content.m.")
    }
    assert refs == {img.manifest.digest}
    await md.leases.delete("imp")
    await md.garbage_collect()
    left = set(await blobs(md))
    needed = {
        got[0].target.digest,
        img.manifest.digest,
        img.config.digest,
        *(la.descriptor.digest for la in img.layers),
    }
    assert needed <= left
    others = {m.digest for m in img.manifests} - {img.manifest.digest}
    assert not (others & left)


async def test_all_platforms_keeps_every_manifest(md, image_cache, tmp_path):
    img = images.multiplatform_image(image_cache)
    await do_import(md, img.oci_archive(tmp_path / "multi.tar"), all_platforms=True)
    await md.leases.delete("imp")
    await md.garbage_collect()
    left = set(await blobs(md))
    assert {m.digest for m in img.manifests} <= left


async def test_blobs_go_once_the_image_is_deleted_but_leased_ones_stay(md, busybox, tmp_path):
    await do_import(md, busybox.oci_archive(tmp_path / "bb.tar"))
    await md.leases.delete("imp")
    await md.leases.create("keep", {})
    from pycontainerd.core.leases import Resource

    await md.leases.add_resource("keep", Resource(id=busybox.config.digest, type="content"))
    await md.images.delete("docker.io/library/busybox:latest")
    await md.garbage_collect()
    left = set(await blobs(md))
    assert left == {busybox.config.digest}


async def test_gc_after_lease_expiry_collects_unreferenced_import_content(md, busybox, tmp_path):
    await do_import(md, busybox.docker_archive(tmp_path / "d.tar"))  # writes an index blob
    await md.images.delete("docker.io/library/busybox:latest")
    later = datetime.datetime(3000, 1, 1, tzinfo=datetime.UTC)
    await md.garbage_collect(now=later)
    assert set(await blobs(md)) == set()


async def test_export_round_trip(md, busybox, tmp_path, metadata_factory):
    await do_import(md, busybox.oci_archive(tmp_path / "bb.tar"))
    img = await md.images.get("docker.io/library/busybox:latest")
    out = tmp_path / "export.tar"
    with open(out, "wb") as f:
        written = await archive.export(md.content_store, f, [img])
    assert {d.digest for d in written} == {d.digest for d in busybox.blobs()}
    images.validate_oci_archive(out)
    with tarfile.open(out) as tf:
        names = tf.getnames()
        assert names == sorted(names)
        index = json.load(tf.extractfile("index.json"))
        manifest_json = json.load(tf.extractfile("manifest.json"))
    ann = index["manifests"][0]["annotations"]
    assert ann["io.containerd.image.name"] == "docker.io/library/busybox:latest"
    assert ann["org.opencontainers.image.ref.name"] == "latest"
    assert manifest_json[0]["RepoTags"] == ["busybox:latest"]
    # and it imports again elsewhere, to the same target
    other = await metadata_factory(tmp_path / "other", overlay=False)
    try:
        got = await do_import(other, out)
        assert got[0].target.digest == busybox.manifest.digest
    finally:
        await other.close()
