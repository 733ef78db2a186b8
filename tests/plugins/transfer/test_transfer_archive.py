"""Archive import and export through the gRPC Transfer + Streaming services: the archive
travels as ``containerd.types.transfer.Data`` messages under window flow control, exactly as
containerd 2.x's ``ctr images import/export`` send and receive it."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import grpc
import images
import pytest

from pycontainerd.api.containerd.services.transfer.v1 import transfer_pb2 as tpb
from pycontainerd.api.containerd.services.transfer.v1 import transfer_pb2_grpc
from pycontainerd.api.containerd.types.transfer import importexport_pb2, streaming_pb2
from pycontainerd.cli.pyctr.commands.pull import _ClientStream
from pycontainerd.core import errdefs, namespaces, platforms
from pycontainerd.core.transfer import UnpackConfiguration
from pycontainerd.core.transfer import proto as tproto
from pycontainerd.core.transfer.imagestore import ImageReference, ImageStore
from pycontainerd.core.transfer.streaming import (
    generate_id,
    pack,
    receive_stream,
    send_stream,
    type_name,
    unpack_as,
)

pytestmark = [pytest.mark.integration, pytest.mark.root]

NAME = "docker.io/library/busybox:latest"


class Counting:
    """A client stream that records the window granted and the Data bytes received, so a test
    can check the sender never ran ahead of the window."""

    def __init__(self, inner: _ClientStream) -> None:
        self.inner = inner
        self.granted = 0
        self.received = 0
        self.overrun = False

    async def send(self, msg: Any) -> None:
        if type_name(msg) == "containerd.types.transfer.WindowUpdate":
            self.granted += unpack_as(msg, streaming_pb2.WindowUpdate).update
        await self.inner.send(msg)

    def send_nowait(self, msg: Any) -> None:
        raise NotImplementedError

    async def recv(self) -> Any:
        msg = await self.inner.recv()
        if type_name(msg) == "containerd.types.transfer.Data":
            self.received += len(unpack_as(msg, streaming_pb2.Data).data)
            self.overrun |= self.received > self.granted
        return msg

    async def close(self) -> None:
        await self.inner.close()


async def _transfer(d: Any, source: Any, destination: Any, ns: str = "default") -> list[str]:
    """One Transfer call with a progress stream; the progress events."""
    md = (("containerd-namespace", ns),)
    pid = generate_id("progress")
    pstream = await _ClientStream.open(d.channel, pid, md)
    events: list[str] = []

    async def progress() -> None:
        from pycontainerd.api.containerd.types.transfer import progress_pb2

        while True:
            try:
                msg = await pstream.recv()
            except (EOFError, grpc.aio.AioRpcError):
                return
            events.append(unpack_as(msg, progress_pb2.Progress).event)

    task = asyncio.ensure_future(progress())
    try:
        await transfer_pb2_grpc.TransferStub(d.channel).Transfer(
            tpb.TransferRequest(
                source=source,
                destination=destination,
                options=tpb.TransferOptions(progress_stream=pid),
            ),
            metadata=md,
        )
        await asyncio.wait_for(task, 5)
    except grpc.aio.AioRpcError as e:
        raise errdefs.from_grpc(e) from None
    finally:
        task.cancel()
        await pstream.close()
    return events


async def import_archive(
    d: Any, data_path: Path, store: ImageStore, ns: str = "default", media_type: str = ""
) -> tuple[list[str], int]:
    """Send ``data_path`` on an import stream and transfer it into ``store``."""
    md = (("containerd-namespace", ns),)
    sid = generate_id("import")
    stream = await _ClientStream.open(d.channel, sid, md)
    f = open(data_path, "rb")  # noqa: SIM115

    async def read(n: int) -> bytes:
        return await asyncio.to_thread(f.read, n)

    sender = asyncio.ensure_future(send_stream(read, stream))
    try:
        events = await _transfer(
            d,
            pack(importexport_pb2.ImageImportStream(stream=sid, media_type=media_type)),
            tproto.to_any(store),
            ns,
        )
        sent = await asyncio.wait_for(sender, 10)
    finally:
        sender.cancel()
        f.close()
        await stream.close()
    return events, sent


async def export_archive(d: Any, name: str, out: Path, ns: str = "default") -> Counting:
    md = (("containerd-namespace", ns),)
    sid = generate_id("export")
    stream = Counting(await _ClientStream.open(d.channel, sid, md))

    async def receive() -> None:
        with open(out, "wb") as f:
            async for chunk in receive_stream(stream, window=64 << 10):
                f.write(chunk)

    receiver = asyncio.ensure_future(receive())
    try:
        await _transfer(
            d,
            tproto.to_any(ImageStore(name=name)),
            pack(importexport_pb2.ImageExportStream(stream=sid)),
            ns,
        )
        await asyncio.wait_for(receiver, 10)
    finally:
        receiver.cancel()
        await stream.close()
    return stream


def import_store(snapshotter: str = "overlayfs") -> ImageStore:
    """What containerd 2.x's ``ctr images import`` asks for: names from the archive's
    annotations under a prefix it may overwrite, the host platform, unpacked."""
    host = platforms.default_spec()
    return ImageStore(
        extra_references=[
            ImageReference(name="import-2024-01-01", is_prefix=True, allow_overwrite=True)
        ],
        platforms=[host],
        unpacks=[UnpackConfiguration(platform=host, snapshotter=snapshotter)],
    )


async def test_import_stream_stores_unpacks_and_names_the_image(transfer_daemon, busybox, tmp_path):
    arc = busybox.oci_archive(tmp_path / "bb.tar")
    events, sent = await import_archive(transfer_daemon, arc, import_store())
    assert sent == arc.stat().st_size
    assert events[0] == "Importing" and events[-1] == "Completed import"
    assert "saved" in events and "extracted" in events
    md = transfer_daemon.metadata
    with namespaces.use("default"):
        img = await md.images.get(NAME)
        assert img.target.digest == busybox.manifest.digest
        assert "io.containerd.import.ref-source" not in img.target.annotations
        cfg = await md.content_store.info(busybox.config.digest)
        chain = busybox.diff_ids[-1]
        assert cfg.labels["containerd.io/gc.ref.snapshot.overlayfs"] == chain
        sn = md.snapshotter("overlayfs")
        assert (await sn.stat(chain)).kind.name == "COMMITTED"
        # the import's own lease is gone; the image keeps everything
        assert await md.leases.list() == []


async def test_import_of_a_gzip_compressed_archive_with_no_media_type(
    transfer_daemon, busybox, tmp_path
):
    arc = busybox.oci_archive(tmp_path / "bb.tar")
    gz = tmp_path / "bb.tar.gz"
    gz.write_bytes(gzip.compress(arc.read_bytes(), compresslevel=1))
    await import_archive(transfer_daemon, gz, import_store("native"), ns="gz")
    with namespaces.use("gz"):
        img = await transfer_daemon.metadata.images.get(NAME)
    assert img.target.digest == busybox.manifest.digest


async def test_truncated_archive_fails_and_records_nothing(transfer_daemon, busybox, tmp_path):
    arc = busybox.oci_archive(tmp_path / "bb.tar")
    cut = tmp_path / "cut.tar"
    cut.write_bytes(arc.read_bytes()[: arc.stat().st_size // 2])
    with pytest.raises(errdefs.InvalidArgument, match="unexpected end of data"):
        await import_archive(transfer_daemon, cut, import_store(), ns="cut")
    md = transfer_daemon.metadata
    with namespaces.use("cut"):
        assert await md.images.list() == []
        assert await md.leases.list() == []


async def test_export_stream_round_trips_through_import(transfer_daemon, busybox, tmp_path):
    arc = busybox.oci_archive(tmp_path / "bb.tar")
    await import_archive(transfer_daemon, arc, import_store())
    out = tmp_path / "exported.tar"
    stream = await export_archive(transfer_daemon, NAME, out)
    # flow control: the daemon never sent more than the window the client granted
    assert stream.received == out.stat().st_size > 0 and not stream.overrun
    # a valid OCI layout (every blob present and matching its digest)
    assert [d.digest for d in images.validate_oci_archive(out)] == [busybox.manifest.digest]
    with tarfile.open(out) as tf:
        blobs = {"sha256:" + n.rsplit("/", 1)[1] for n in tf.getnames() if "/sha256/" in n}
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        manifest_json = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert {busybox.manifest.digest, busybox.config.digest} <= blobs
    assert busybox.layers[0].descriptor.digest in blobs
    [entry] = index["manifests"]
    assert entry["digest"] == busybox.manifest.digest
    assert entry["annotations"]["io.containerd.image.name"] == NAME
    assert manifest_json[0]["RepoTags"] == ["busybox:latest"]
    # and what was exported imports back, into another namespace
    await import_archive(transfer_daemon, out, import_store(), ns="back")
    with namespaces.use("back"):
        img = await transfer_daemon.metadata.images.get(NAME)
    assert img.target.digest == busybox.manifest.digest


async def test_export_of_a_missing_image_is_not_found(transfer_daemon, tmp_path):
    with pytest.raises(errdefs.NotFound):
        await export_archive(transfer_daemon, "docker.io/library/nothing:here", tmp_path / "x")
    assert os.path.getsize(tmp_path / "x") == 0
