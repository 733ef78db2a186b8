"""Unpacking into the real native and overlayfs snapshotters through the metadata view:
chain IDs committed, labels, the unpacked busybox runs, layers with whiteouts, failures and
cancellation leave no extraction snapshot, crash leftovers are collected once the lease goes."""

from __future__ import annotations

import asyncio
import datetime
import os
import subprocess

import images
import pytest

from pycontainerd.core import errdefs, leases
from pycontainerd.core.content import Descriptor
from pycontainerd.core.images import archive
from pycontainerd.core.images import image as image_
from pycontainerd.core.mount import with_temp_mount
from pycontainerd.core.snapshots import Kind
from pycontainerd.core.unpack import LocalApplier, unpack
from pycontainerd.core.unpack.unpacker import is_unpack_key

FAR = "2999-01-01T00:00:00Z"
SNAPSHOTTERS = ["native", pytest.param("overlayfs", marks=pytest.mark.root)]


async def imported(md, image, tmp_path, lease="imp"):
    await md.leases.create(lease, {"containerd.io/gc.expire": FAR})
    with leases.use(lease), open(image.oci_archive(tmp_path / "img.tar"), "rb") as f:
        return (await archive.import_images(md.content_store, md.images, f))[0]


async def snapshots(sn):
    return {i.name: i async for i in sn.walk()}


@pytest.mark.parametrize("name", SNAPSHOTTERS)
async def test_busybox_unpacks_and_runs(md, busybox, tmp_path, name):
    if name not in md.snapshotters:
        pytest.skip(f"{name} not available here")
    img = await imported(md, busybox, tmp_path)
    sn = md.snapshotters[name]
    with leases.use("imp"):
        res = await unpack(md.content_store, sn, name, LocalApplier(md.content_store), img.target)
    chain = image_.chain_ids(busybox.diff_ids)
    assert res.chain_id == chain[-1] and res.applied == 1 and res.skipped == 0
    info = await sn.stat(chain[-1])
    assert info.kind is Kind.COMMITTED
    assert info.labels["containerd.io/snapshot.ref"] == chain[-1]
    assert not [k for k in await snapshots(sn) if is_unpack_key(k)]
    cfg = await md.content_store.info(busybox.config.digest)
    assert cfg.labels[f"containerd.io/gc.ref.snapshot.{name}"] == chain[-1]
    layer = await md.content_store.info(busybox.layers[0].descriptor.digest)
    assert layer.labels["containerd.io/uncompressed"] == busybox.diff_ids[0]

    # a container's view of it: prepare a child, mount, run busybox inside
    mounts = await sn.prepare("ctr", chain[-1])
    if os.geteuid() == 0:
        async with with_temp_mount(mounts) as root:
            out = subprocess.run(
                ["chroot", root, "/bin/busybox", "echo", "ok"],
                capture_output=True,
                text=True,
                check=True,
            )
            assert out.stdout == "ok\n"
    await sn.remove("ctr")

    # again: everything is there already
    with leases.use("imp"):
        again = await unpack(md.content_store, sn, name, LocalApplier(md.content_store), img.target)
    assert again.applied == 0 and again.skipped == 1


@pytest.mark.parametrize("name", SNAPSHOTTERS)
async def test_layers_with_whiteouts_stack_correctly(md, image_cache, tmp_path, name):
    if name not in md.snapshotters:
        pytest.skip(f"{name} not available here")
    tree = images.layered_image(
        image_cache,
        [
            {"a/keep": "k", "a/gone": "g", "d/x": "x", "d/y": "y"},
            {
                images.whiteout("a/gone"): images.WHITEOUT,
                images.opaque("d"): images.WHITEOUT,
                "d/z": "z",
            },
            {"a/new": "n"},
        ],
    )
    img = await imported(md, tree, tmp_path)
    sn = md.snapshotters[name]
    with leases.use("imp"):
        res = await unpack(md.content_store, sn, name, LocalApplier(md.content_store), img.target)
    assert res.applied == 3
    chain = image_.chain_ids(tree.diff_ids)
    parents = {k: i.parent for k, i in (await snapshots(sn)).items()}
    assert parents[chain[2]] == chain[1] and parents[chain[1]] == chain[0]
    if os.geteuid() != 0:
        return
    await sn.view("v", chain[-1])
    async with with_temp_mount(await sn.mounts("v"), readonly=True) as root:
        files = sorted(
            os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
        )
    await sn.remove("v")
    assert files == ["a/keep", "a/new", "d/z"]


async def test_wrong_diff_id_commits_nothing(md, busybox, tmp_path):
    img = await imported(md, busybox, tmp_path)
    sn = md.snapshotters["native"]

    class Liar:
        async def apply(self, desc, mounts, config=None):
            await LocalApplier(md.content_store).apply(desc, mounts, config)
            return Descriptor(media_type=desc.media_type, digest="sha256:" + "0" * 64, size=1)

    with leases.use("imp"), pytest.raises(errdefs.FailedPrecondition, match="wrong diff id"):
        await unpack(md.content_store, sn, "native", Liar(), img.target)
    assert await snapshots(sn) == {}
    cfg = await md.content_store.info(busybox.config.digest)
    assert "containerd.io/gc.ref.snapshot.native" not in cfg.labels


async def test_cancelled_unpack_removes_its_extraction_snapshot(md, image_cache, tmp_path):
    big = images.large_image(image_cache, [8 << 20, 8 << 20], name="docker.io/library/big:1")
    img = await imported(md, big, tmp_path)
    sn = md.snapshotters["native"]
    started = asyncio.Event()

    class Slow:
        async def apply(self, desc, mounts, config=None):
            started.set()
            await asyncio.sleep(30)

    with leases.use("imp"):
        task = asyncio.ensure_future(unpack(md.content_store, sn, "native", Slow(), img.target))
        await started.wait()
        assert [k for k in await snapshots(sn) if is_unpack_key(k)]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await snapshots(sn) == {}


async def test_crash_leftovers_are_never_committed_and_gc_collects_them(md, busybox, tmp_path):
    img = await imported(md, busybox, tmp_path)
    sn = md.snapshotters["native"]
    chain = image_.chain_ids(busybox.diff_ids)
    # what a process killed mid-apply leaves: an extraction snapshot under its lease
    with leases.use("imp"):
        await sn.prepare(f"extract-1-abcd {chain[0]}", "", {"containerd.io/snapshot.ref": chain[0]})
    with pytest.raises(errdefs.NotFound):
        await sn.stat(chain[0])
    # a new unpack does not trip over it
    await md.leases.create("second", {"containerd.io/gc.expire": FAR})
    with leases.use("second"):
        await unpack(md.content_store, sn, "native", LocalApplier(md.content_store), img.target)
    assert (await sn.stat(chain[0])).kind is Kind.COMMITTED
    # the leftover goes once its lease has expired; the image's snapshot stays
    await md.leases.delete("second")
    await md.garbage_collect(now=datetime.datetime(3000, 1, 1, tzinfo=datetime.UTC))
    assert set(await snapshots(sn)) == {chain[0]}
    backend = {i.name async for i in sn.backend.walk()}
    assert len(backend) == 1


async def test_prefetch_runs_before_each_apply(md, image_cache, tmp_path):
    lay = images.layered_image(
        image_cache, [{"a": "1"}, {"b": "2"}, {"c": "3"}], name="docker.io/library/pf:1"
    )
    img = await imported(md, lay, tmp_path)
    order: list[str] = []

    async def fetch(desc):
        order.append("fetch " + desc.digest)

    class Recording(LocalApplier):
        async def apply(self, desc, mounts, config=None):
            assert "fetch " + desc.digest in order
            order.append("apply " + desc.digest)
            return await super().apply(desc, mounts, config)

    with leases.use("imp"):
        await unpack(
            md.content_store,
            md.snapshotters["native"],
            "native",
            Recording(md.content_store),
            img.target,
            fetch=fetch,
            fetch_concurrency=2,
        )
    applies = [o for o in order if o.startswith("apply")]
    assert applies == ["apply " + la.descriptor.digest for la in lay.layers]
