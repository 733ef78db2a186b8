"""The diff service: differs tried in configured order, the plugin's config, and the gRPC
front-end (Apply, Diff) over a real server with the walking differ."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from typing import Any

import grpc
import pytest

from pycontainerd.api.containerd.services.diff.v1 import diff_pb2 as pb
from pycontainerd.api.containerd.services.diff.v1 import diff_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import descriptor_pb2
from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.config import decode_plugin_config
from pycontainerd.core.content import Descriptor, helpers
from pycontainerd.core.diff import LABEL_UNCOMPRESSED, MEDIA_TYPE_LAYER, MEDIA_TYPE_LAYER_GZIP
from pycontainerd.core.metadata.metadata import Metadata
from pycontainerd.core.mount import with_temp_mount
from pycontainerd.core.server.grpcserver import ErrorInterceptor
from pycontainerd.core.snapshots.proxy import mounts_to_proto
from pycontainerd.plugins.content.local.store import LocalStore
from pycontainerd.plugins.diff.walking.differ import WalkingDiff
from pycontainerd.plugins.services.diff.local import DiffService
from pycontainerd.plugins.services.diff.plugin import Config
from pycontainerd.plugins.services.diff.service import DiffServicer
from pycontainerd.plugins.snapshotters.native.snapshotter import NativeSnapshotter

NS = (("containerd-namespace", "testns"),)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Refuses:
    """A differ that supports nothing."""

    def __init__(self) -> None:
        self.calls = 0

    async def apply(self, desc: Any, mounts: Any, config: Any = None) -> Any:
        self.calls += 1
        raise errdefs.NotImplemented_("not mine")

    async def compare(self, lower: Any, upper: Any, config: Any = None) -> Any:
        self.calls += 1
        raise errdefs.NotImplemented_("not mine")


def test_config_key_default_orders_the_differs() -> None:
    cfg, warnings = decode_plugin_config(
        Config,
        {"default": ["a", "walking"], "sync_fs": True},
        "io.containerd.service.v1.diff-service",
    )
    assert cfg.order == ["a", "walking"] and cfg.sync_fs and not warnings
    assert Config().order == ["walking"]


async def test_from_differs_needs_every_named_differ() -> None:
    with pytest.raises(errdefs.NotFound, match="needed differ not loaded: x"):
        DiffService.from_differs({"walking": _Refuses()}, ["x"])
    with pytest.raises(errdefs.InvalidArgument):
        DiffService.from_differs({"odd": object()}, ["odd"])
    svc = DiffService.from_differs({"a": _Refuses()}, ["a"])
    with pytest.raises(errdefs.NotImplemented_, match="not mine"):
        await svc.compare([], [])


@pytest.fixture
async def env(tmp_path):
    content = await LocalStore.open(str(tmp_path / "content"))
    native = await NativeSnapshotter.open(str(tmp_path / "native"))
    md = await Metadata.open(
        str(tmp_path / "meta.db"), content=content, snapshotters={"native": native}
    )
    refuses = _Refuses()
    local = DiffService.from_differs(
        {"no": refuses, "walking": WalkingDiff(md.content_store)}, ["no", "walking"]
    )
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    DiffServicer(local).register_grpc(server)
    sock = tmp_path / "diff.sock"
    server.add_insecure_port(f"unix:{sock}")
    await server.start()
    channel = grpc.aio.insecure_channel(f"unix:{sock}")
    yield md, pb_grpc.DiffStub(channel), refuses
    await channel.close()
    await server.stop(0)
    await md.close()
    await native.close()


@pytest.mark.root
async def test_apply_and_diff_over_grpc(env) -> None:
    md, stub, refuses = env
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("hello")
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"hi"))
    raw = buf.getvalue()
    blob = gzip.compress(raw)
    with namespaces.use("testns"):
        await helpers.write_blob(md.content_store, "r", blob, sha(blob))
        sn = md.snapshotters["native"]
        mounts = await sn.prepare("a")
    resp = await stub.Apply(
        pb.ApplyRequest(
            diff=descriptor_pb2.Descriptor(
                media_type=MEDIA_TYPE_LAYER_GZIP, digest=sha(blob), size=len(blob)
            ),
            mounts=mounts_to_proto(mounts),
        ),
        metadata=NS,
    )
    assert resp.applied.digest == sha(raw) and resp.applied.media_type == MEDIA_TYPE_LAYER
    assert refuses.calls == 1  # asked first, fell through to walking
    async with with_temp_mount(mounts) as root:
        assert open(os.path.join(root, "hello")).read() == "hi"

    out = await stub.Diff(
        pb.DiffRequest(left=[], right=mounts_to_proto(mounts), labels={"k": "v"}), metadata=NS
    )
    assert out.diff.media_type == MEDIA_TYPE_LAYER_GZIP
    with namespaces.use("testns"):
        info = await md.content_store.info(out.diff.digest)
        data = await helpers.read_blob(md.content_store, Descriptor(digest=out.diff.digest))
    assert info.labels["k"] == "v"
    assert info.labels[LABEL_UNCOMPRESSED] == sha(gzip.decompress(data))

    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.Apply(
            pb.ApplyRequest(
                diff=descriptor_pb2.Descriptor(media_type="text/plain", digest=sha(blob)),
                mounts=mounts_to_proto(mounts),
            ),
            metadata=NS,
        )
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.Apply(
            pb.ApplyRequest(
                diff=descriptor_pb2.Descriptor(media_type=MEDIA_TYPE_LAYER, digest=sha(b"x")),
                mounts=mounts_to_proto(mounts),
            ),
            metadata=NS,
        )
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
