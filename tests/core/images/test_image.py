"""Image graph helpers over a real content store: chain IDs, manifest selection by platform,
size, platforms, check."""

from __future__ import annotations

import hashlib

import images
import pytest

from pycontainerd.core import errdefs, leases, platforms
from pycontainerd.core.content import Descriptor
from pycontainerd.core.images import archive
from pycontainerd.core.images import image as image_


def test_chain_ids_follow_identity_chainids():
    a, b, c = ("sha256:" + hashlib.sha256(x).hexdigest() for x in (b"a", b"b", b"c"))
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert image_.chain_ids([a, b, c]) == [a, ab, abc]
    assert image_.chain_id([a]) == a
    assert image_.chain_id([]) == ""


def test_child_gc_labels_for_index_and_manifest():
    idx = Descriptor(
        media_type="application/vnd.oci.image.index.v1+json", digest="sha256:" + "0" * 64
    )
    man = Descriptor(
        media_type="application/vnd.oci.image.manifest.v1+json", digest="sha256:" + "1" * 64
    )
    cfg = Descriptor(
        media_type="application/vnd.oci.image.config.v1+json", digest="sha256:" + "2" * 64
    )
    l0 = Descriptor(
        media_type="application/vnd.oci.image.layer.v1.tar+gzip", digest="sha256:" + "3" * 64
    )
    assert image_.child_gc_labels(idx, [man]) == {"containerd.io/gc.ref.content.m.0": man.digest}
    assert image_.child_gc_labels(man, [cfg, l0]) == {
        "containerd.io/gc.ref.content.config": cfg.digest,
        "containerd.io/gc.ref.content.l.0": l0.digest,
    }


async def _import(md, path, **kw):
    await md.leases.create("imp", {"containerd.io/gc.expire": "2999-01-01T00:00:00Z"})
    with leases.use("imp"), open(path, "rb") as f:
        return await archive.import_images(
            md.content_store, md.images, f, archive.ImportOptions(**kw)
        )


async def test_manifest_selection_size_platforms_on_a_multiplatform_index(
    md, image_cache, tmp_path
):
    img = images.multiplatform_image(image_cache)
    imported = await _import(md, img.oci_archive(tmp_path / "multi.tar"), all_platforms=True)
    target = imported[0].target
    assert target.digest == img.digest
    cs = md.content_store

    m = await image_.manifest(cs, target)  # host default
    assert m.descriptor.digest == img.manifest.digest
    assert m.config.digest == img.config.digest
    assert [la.digest for la in m.layers] == [la.descriptor.digest for la in img.layers]
    assert await image_.rootfs(cs, m.config) == list(img.diff_ids)

    arm = await image_.manifest(cs, target, platforms.only(platforms.parse("linux/arm/v7")))
    assert arm.descriptor.digest == img.manifests[2].digest

    with pytest.raises(errdefs.NotFound):
        await image_.manifest(cs, target, platforms.only(platforms.parse("windows/amd64")))

    got = sorted(platforms.format(p) for p in await image_.platforms(cs, target))
    assert got == ["linux/amd64", "linux/arm/v7", "linux/arm64"]

    host_size = await image_.size(cs, target)
    expected = (
        img.target.size
        + img.manifest.size
        + img.config.size
        + sum(la.descriptor.size for la in img.layers)
    )
    assert host_size == expected
    assert await image_.size(cs, target, platforms.ALL) > host_size

    chk = await image_.check(cs, target)
    assert chk.available and not chk.missing and len(chk.present) == 1 + len(img.layers)


async def test_check_reports_missing_layers(md, busybox, tmp_path):
    imported = await _import(md, busybox.oci_archive(tmp_path / "bb.tar"))
    layer = busybox.layers[0].descriptor
    # drop the layer blob from the namespace
    await md.content_store.delete(layer.digest)
    chk = await image_.check(md.content_store, imported[0].target)
    assert chk.available
    assert [d.digest for d in chk.missing] == [layer.digest]
