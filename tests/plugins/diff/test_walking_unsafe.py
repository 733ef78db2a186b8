"""The walking differ applies a layer in one streaming pass (no spooling, no second
decompression) and still checks every entry before writing it: a malicious layer applied through
the gRPC Diff API is rejected with the entry named and nothing outside the snapshot written, and
the unpacker, its caller, removes the half-applied extraction snapshot."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import grpc
import pytest

from pycontainerd.api.containerd.services.diff.v1 import diff_pb2 as pb
from pycontainerd.api.containerd.services.diff.v1 import diff_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import descriptor_pb2
from pycontainerd.core import errdefs, namespaces, platforms
from pycontainerd.core import leases as leases_
from pycontainerd.core.content import Descriptor, helpers
from pycontainerd.core.diff import MEDIA_TYPE_LAYER_GZIP
from pycontainerd.core.metadata.metadata import Metadata
from pycontainerd.core.server.grpcserver import ErrorInterceptor
from pycontainerd.core.snapshots.proxy import mounts_to_proto
from pycontainerd.core.unpack import unpack
from pycontainerd.plugins.content.local.store import LocalStore
from pycontainerd.plugins.diff.walking import differ as walking
from pycontainerd.plugins.diff.walking.differ import WalkingDiff
from pycontainerd.plugins.services.diff.local import DiffService
from pycontainerd.plugins.services.diff.service import DiffServicer
from pycontainerd.plugins.snapshotters.native.snapshotter import NativeSnapshotter

pytestmark = pytest.mark.root

NS = (("containerd-namespace", "testns"),)
CLIMB = "../" * 24


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar(entries: list[tuple[str, str, str | bytes]]) -> bytes:
    """(name, kind, data-or-linkname) with kind file/dir/symlink/hardlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, val in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            ti.mode = 0o755 if kind == "dir" else 0o644
            if kind == "file":
                assert isinstance(val, bytes)
                ti.size = len(val)
                tf.addfile(ti, io.BytesIO(val))
                continue
            ti.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
            }[kind]
            if kind in ("symlink", "hardlink"):
                assert isinstance(val, str)
                ti.linkname = val
            tf.addfile(ti)
    return buf.getvalue()


def evil_layer(kind: str, outside: Path) -> tuple[bytes, str]:
    """A layer whose first entries are fine and one later entry escapes; (layer, entry)."""
    good: list[tuple[str, str, str | bytes]] = [("ok", "file", b"fine\n"), ("d", "dir", "")]
    bad: list[tuple[str, str, str | bytes]]
    if kind == "dotdot":
        bad, entry = [(CLIMB + str(outside).lstrip("/") + "/pwned", "file", b"x")], "pwned"
    elif kind == "absolute-symlink-parent":
        bad = [("evil", "symlink", str(outside)), ("evil/pwned", "file", b"x")]
        entry = "evil/pwned"
    elif kind == "relative-symlink-parent":
        bad = [
            ("d/up", "symlink", CLIMB + str(outside).lstrip("/")),
            ("d/up/pwned", "file", b"x"),
        ]
        entry = "d/up/pwned"
    elif kind == "hardlink":
        bad = [("hl", "hardlink", CLIMB + str(outside / "secret").lstrip("/"))]
        entry = "hl"
    else:
        raise AssertionError(kind)
    return tar(good + bad), entry


@pytest.fixture
async def env(tmp_path):
    content = await LocalStore.open(str(tmp_path / "content"))
    native = await NativeSnapshotter.open(str(tmp_path / "native"))
    md = await Metadata.open(
        str(tmp_path / "meta.db"), content=content, snapshotters={"native": native}
    )
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    DiffServicer(
        DiffService.from_differs({"walking": WalkingDiff(md.content_store)}, ["walking"])
    ).register_grpc(server)
    sock = tmp_path / "diff.sock"
    server.add_insecure_port(f"unix:{sock}")
    await server.start()
    channel = grpc.aio.insecure_channel(f"unix:{sock}")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret\n")
    yield md, pb_grpc.DiffStub(channel), outside
    await channel.close()
    await server.stop(0)
    await md.close()
    await native.close()


def untouched(outside: Path) -> None:
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_bytes() == b"secret\n"
    assert os.stat(outside / "secret").st_nlink == 1


async def test_the_walking_differ_streams_each_layer_once(env, monkeypatch) -> None:
    """validate_first=False: no spool file, one decompression; the safety comes from the
    entry-by-entry checks and the caller's throw-away snapshot."""
    md, _, _ = env
    calls = []
    original = walking.apply_layer

    def spy(root, stream, **kw):  # type: ignore[no-untyped-def]
        calls.append(kw)
        return original(root, stream, **kw)

    monkeypatch.setattr(walking, "apply_layer", spy)
    raw = tar([("f", "file", b"1")])
    blob = gzip.compress(raw)
    with namespaces.use("testns"):
        await helpers.write_blob(md.content_store, "ok", blob, sha(blob))
        mounts = await md.snapshotters["native"].prepare("k")
        d = Descriptor(media_type=MEDIA_TYPE_LAYER_GZIP, digest=sha(blob), size=len(blob))
        applied = await WalkingDiff(md.content_store).apply(d, mounts)
    assert applied.digest == sha(raw)
    assert [c["validate_first"] for c in calls] == [False]


@pytest.mark.parametrize(
    "kind", ["dotdot", "absolute-symlink-parent", "relative-symlink-parent", "hardlink"]
)
async def test_malicious_layer_through_the_diff_api_is_rejected_naming_the_entry(env, kind) -> None:
    md, stub, outside = env
    raw, entry = evil_layer(kind, outside)
    blob = gzip.compress(raw)
    with namespaces.use("testns"):
        await helpers.write_blob(md.content_store, "evil", blob, sha(blob))
        sn = md.snapshotters["native"]
        mounts = await sn.prepare("extract-1 evil")
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.Apply(
            pb.ApplyRequest(
                diff=descriptor_pb2.Descriptor(
                    media_type=MEDIA_TYPE_LAYER_GZIP, digest=sha(blob), size=len(blob)
                ),
                mounts=mounts_to_proto(mounts),
            ),
            metadata=NS,
        )
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert entry in (ei.value.details() or ""), ei.value.details()
    untouched(outside)
    # the caller throws the active snapshot away, with what the layer wrote before the entry
    with namespaces.use("testns"):
        await sn.remove("extract-1 evil")
        assert [i.name async for i in sn.walk()] == []
    await md.garbage_collect()  # the backend directory goes with the next collection
    assert os.listdir(Path(md.snapshotters["native"].backend.root) / "snapshots") == []


async def _put_json(md: Metadata, doc: dict, media_type: str) -> Descriptor:
    data = json.dumps(doc).encode()
    await helpers.write_blob(md.content_store, f"j-{sha(data)}", data, sha(data))
    return Descriptor(media_type=media_type, digest=sha(data), size=len(data))


async def test_unpack_removes_the_extraction_snapshot_of_a_malicious_layer(env) -> None:
    md, _, outside = env
    good = tar([("bin", "dir", ""), ("bin/tool", "file", b"#!/bin/sh\n")])
    bad, entry = evil_layer("absolute-symlink-parent", outside)
    with namespaces.use("testns"):
        layers = []
        for raw in (good, bad):
            blob = gzip.compress(raw)
            await helpers.write_blob(md.content_store, f"l-{sha(blob)}", blob, sha(blob))
            layers.append(
                Descriptor(media_type=MEDIA_TYPE_LAYER_GZIP, digest=sha(blob), size=len(blob))
            )
        config = await _put_json(
            md,
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [sha(good), sha(bad)]},
            },
            "application/vnd.oci.image.config.v1+json",
        )
        manifest = await _put_json(
            md,
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config.to_dict(),
                "layers": [la.to_dict() for la in layers],
            },
            "application/vnd.oci.image.manifest.v1+json",
        )
        sn = md.snapshotters["native"]
        await md.leases.create("unpack", {})
        with leases_.use("unpack"), pytest.raises(errdefs.InvalidArgument) as ei:
            await unpack(
                md.content_store,
                sn,
                "native",
                WalkingDiff(md.content_store),
                manifest,
                platform=platforms.ALL,
            )
        assert entry in str(ei.value) and sha(bad) in str(ei.value)
        names = {i.name: i.kind.name async for i in sn.walk()}
    # the first layer stays committed as its chain ID; the half-applied one is gone
    assert names == {sha(good): "COMMITTED"}
    await md.garbage_collect()  # the lease keeps the applied layer; nothing else is left
    assert len(os.listdir(Path(sn.backend.root) / "snapshots")) == 1
    untouched(outside)
