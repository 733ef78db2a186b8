"""The walking differ over the metadata content store and real snapshotters: applying layers
(uncompressed, gzip, zstd; whiteouts; overlay upperdir fast path; diff ID checks) and computing
layers that apply back to the same tree."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile

import pytest

from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.content import Descriptor, helpers
from pycontainerd.core.diff import (
    LABEL_UNCOMPRESSED,
    MEDIA_TYPE_LAYER,
    MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_LAYER_ZSTD,
    DiffConfig,
    Differ,
)
from pycontainerd.core.metadata.metadata import Metadata
from pycontainerd.core.mount import readonly_mounts, with_temp_mount
from pycontainerd.plugins.content.local.store import LocalStore
from pycontainerd.plugins.diff.walking.differ import WalkingDiff
from pycontainerd.plugins.snapshotters.native.snapshotter import NativeSnapshotter
from pycontainerd.plugins.snapshotters.overlayfs.snapshotter import OverlaySnapshotter

pytestmark = pytest.mark.root


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(entries: dict[str, bytes | None]) -> bytes:
    """A layer tar: name -> file content, or None for a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in entries.items():
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            if data is None:
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tf.addfile(ti)
            else:
                ti.size = len(data)
                ti.mode = 0o644
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def tree(root: str) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in filenames:
            with open(os.path.join(dirpath, f), "rb") as fh:
                out[os.path.relpath(os.path.join(dirpath, f), root)] = fh.read()
    return out


@pytest.fixture
async def env(tmp_path):
    content = await LocalStore.open(str(tmp_path / "content"))
    native = await NativeSnapshotter.open(str(tmp_path / "native"))
    overlay = await OverlaySnapshotter.open(str(tmp_path / "overlayfs"))
    md = await Metadata.open(
        str(tmp_path / "meta.db"),
        content=content,
        snapshotters={"native": native, "overlayfs": overlay},
    )
    with namespaces.use("test"):
        yield md, WalkingDiff(md.content_store)
    await md.close()
    await native.close()
    await overlay.close()


async def put(md: Metadata, data: bytes, labels: dict[str, str] | None = None) -> str:
    dgst = sha(data)
    await helpers.write_blob(md.content_store, f"ref-{dgst}", data, dgst, labels)
    return dgst


def test_walking_diff_is_a_differ() -> None:
    assert issubclass(WalkingDiff, Differ)


@pytest.mark.parametrize("sn", ["native", "overlayfs"])
@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
async def test_apply_unpacks_layers_and_returns_the_diff_id(env, sn, compression) -> None:
    md, differ = env
    base = layer({"etc": None, "etc/hosts": b"127.0.0.1\n", "a": b"a", "d": None, "d/x": b"x"})
    top = layer({".wh.a": b"", "d/.wh..wh..opq": b"", "d/y": b"y", "etc/new": b"n"})
    blobs = []
    for raw in (base, top):
        if compression == "gzip":
            blob, mt = gzip.compress(raw), MEDIA_TYPE_LAYER_GZIP
        elif compression == "zstd":
            zstandard = pytest.importorskip("zstandard")
            blob, mt = zstandard.ZstdCompressor().compress(raw), MEDIA_TYPE_LAYER_ZSTD
        else:
            blob, mt = raw, MEDIA_TYPE_LAYER
        blobs.append(Descriptor(media_type=mt, digest=await put(md, blob), size=len(blob)))

    snap = md.snapshotters[sn]
    mounts = await snap.prepare("l1")
    applied = await differ.apply(blobs[0], mounts)
    assert applied == Descriptor(media_type=MEDIA_TYPE_LAYER, digest=sha(base), size=len(base))
    await snap.commit("base", "l1")
    mounts = await snap.prepare("l2", "base")
    applied = await differ.apply(blobs[1], mounts)
    assert applied.digest == sha(top)
    await snap.commit("top", "l2")
    async with with_temp_mount(await snap.view("v", "top")) as root:
        assert tree(root) == {
            "etc": None,
            "etc/hosts": b"127.0.0.1\n",
            "etc/new": b"n",
            "d": None,
            "d/y": b"y",
        }


async def test_apply_checks_the_uncompressed_label_and_annotation(env) -> None:
    md, differ = env
    raw = layer({"f": b"1"})
    blob = gzip.compress(raw)
    good = await put(md, blob, {LABEL_UNCOMPRESSED: sha(raw)})
    mounts = await md.snapshotters["native"].prepare("ok")
    assert (
        await differ.apply(Descriptor(media_type=MEDIA_TYPE_LAYER_GZIP, digest=good), mounts)
    ).digest == sha(raw)
    mounts = await md.snapshotters["native"].prepare("bad")
    wrong = Descriptor(
        media_type=MEDIA_TYPE_LAYER_GZIP,
        digest=good,
        annotations={LABEL_UNCOMPRESSED: sha(b"something else")},
    )
    with pytest.raises(errdefs.InvalidArgument, match="does not match expected"):
        await differ.apply(wrong, mounts)


async def test_apply_refuses_unknown_media_types_and_missing_blobs(env) -> None:
    md, differ = env
    mounts = await md.snapshotters["native"].prepare("k")
    with pytest.raises(errdefs.NotImplemented_, match="unsupported diff media type"):
        await differ.apply(
            Descriptor(media_type="application/vnd.oci.image.config.v1+json", digest=sha(b"")),
            mounts,
        )
    with pytest.raises(errdefs.NotFound):
        await differ.apply(Descriptor(media_type=MEDIA_TYPE_LAYER, digest=sha(b"nope")), mounts)


async def test_rejected_layer_names_the_entry(env) -> None:
    md, differ = env
    evil = layer({"../escape": b"x"})
    dgst = await put(md, evil)
    mounts = await md.snapshotters["native"].prepare("k")
    with pytest.raises(errdefs.InvalidArgument, match="escape"):
        await differ.apply(Descriptor(media_type=MEDIA_TYPE_LAYER, digest=dgst), mounts)


@pytest.mark.parametrize("sn", ["native", "overlayfs"])
async def test_compare_writes_a_layer_that_applies_back_to_the_same_tree(env, sn) -> None:
    md, differ = env
    snap = md.snapshotters[sn]
    base = await put(md, layer({"keep": b"k", "change": b"old", "gone": b"g", "dir": None}))
    await differ.apply(
        Descriptor(media_type=MEDIA_TYPE_LAYER, digest=base), await snap.prepare("b")
    )
    await snap.commit("base", "b")
    upper = await snap.prepare("work", "base")
    async with with_temp_mount(upper) as root:
        with open(os.path.join(root, "change"), "wb") as f:
            f.write(b"new")
        os.unlink(os.path.join(root, "gone"))
        with open(os.path.join(root, "dir", "added"), "wb") as f:
            f.write(b"a")
        want = tree(root)
    lower = readonly_mounts(await snap.view("lower", "base"))

    desc = await differ.compare(lower, upper)
    assert desc.media_type == MEDIA_TYPE_LAYER_GZIP
    info = await md.content_store.info(desc.digest)
    assert info.size == desc.size
    data = await helpers.read_blob(md.content_store, desc)
    raw = gzip.decompress(data)
    assert info.labels[LABEL_UNCOMPRESSED] == sha(raw)
    names = {m.name for m in tarfile.open(fileobj=io.BytesIO(raw))}
    assert names == {"change", "dir", "dir/added", ".wh.gone"}

    fresh = await snap.prepare("again", "base")
    applied = await differ.apply(desc, fresh)
    assert applied.digest == sha(raw)
    async with with_temp_mount(fresh) as root:
        assert tree(root) == want

    plain = await differ.compare(
        lower, upper, DiffConfig(media_type=MEDIA_TYPE_LAYER, reference="named", labels={"x": "y"})
    )
    assert plain.digest == sha(raw) and plain.size == len(raw)
    assert (await md.content_store.info(plain.digest)).labels == {"x": "y"}
    with pytest.raises(errdefs.NotImplemented_):
        await differ.compare(lower, upper, DiffConfig(media_type="application/x-nope"))
    assert await md.content_store.list_statuses() == []


async def test_compare_against_nothing_gives_the_whole_tree(env) -> None:
    md, differ = env
    upper = await md.snapshotters["native"].prepare("k")
    async with with_temp_mount(upper) as root:
        with open(os.path.join(root, "only"), "wb") as f:
            f.write(b"1")
    desc = await differ.compare([], upper, DiffConfig(media_type=MEDIA_TYPE_LAYER))
    raw = await helpers.read_blob(md.content_store, desc)
    assert [m.name for m in tarfile.open(fileobj=io.BytesIO(raw))] == ["only"]
