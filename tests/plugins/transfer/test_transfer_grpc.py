"""The gRPC Transfer + Streaming services against a real docker-registry, with pyctr's client
(:func:`pycontainerd.cli.pyctr.commands.pull.transfer`) as the gRPC test client."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import images
import pytest

from pycontainerd.cli.pyctr.commands.pull import Display, transfer
from pycontainerd.core import errdefs, namespaces, platforms
from pycontainerd.core.transfer import Progress, UnpackConfiguration
from pycontainerd.core.transfer.imagestore import ImageStore
from pycontainerd.core.transfer.registry import OCIRegistry

pytestmark = [pytest.mark.integration, pytest.mark.root]


class Collect(Display):
    def __init__(self) -> None:
        super().__init__(open(os.devnull, "w"), enabled=False)  # noqa: SIM115
        self.events: list[Progress] = []

    def add(self, p: Progress) -> None:
        self.events.append(p)
        super().add(p)


def store(name: str, snapshotter: str = "native") -> ImageStore:
    host = platforms.default_spec()
    return ImageStore(
        name=name,
        platforms=[host],
        unpacks=[UnpackConfiguration(platform=host, snapshotter=snapshotter)],
    )


def blob_data(reg: Any, digest: str) -> Path:
    hexd = digest.split(":", 1)[1]
    return reg.storage_dir / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


async def pull(d: Any, ref: str, **kw: Any) -> Collect:
    c = Collect()
    with namespaces.use("default"):
        await transfer(
            d.address,
            OCIRegistry(reference=ref, default_scheme=kw.pop("scheme", "http"), **kw),
            store(ref),
            display=c,
        )
    return c


async def test_pull_by_digest_streams_progress(transfer_daemon, registry, busybox):
    registry.push(busybox, repository="grpc/busybox")
    ref = f"{registry.host}/grpc/busybox@{busybox.digest}"
    c = await pull(transfer_daemon, ref)
    events = [e.event for e in c.events]
    assert events[0] == f"Resolving from OCI Registry ({ref})"
    assert "waiting" in events and "saved" in events and events[-1].startswith("Completed pull")
    layer = busybox.layers[0].descriptor
    done = [e for e in c.events if e.name == f"layer-{layer.digest}" and e.event == "extracted"]
    assert done and done[0].total == layer.size
    assert c.view.done == c.view.total > 0
    with namespaces.use("default"):
        img = await transfer_daemon.metadata.images.get(ref)
    assert img.target.digest == busybox.digest


async def test_multi_platform_index_selects_the_host_platform(
    transfer_daemon, registry, image_cache
):
    multi = images.multiplatform_image(image_cache)
    registry.push(multi, repository="grpc/multi")
    ref = registry.ref("grpc/multi")
    await pull(transfer_daemon, ref)
    md = transfer_daemon.metadata
    with namespaces.use("default"):
        img = await md.images.get(ref)
        assert img.target.digest == multi.digest
        idx = await md.content_store.info(multi.digest)
        assert idx.labels["containerd.io/gc.ref.content.m.0"] == multi.manifest.digest
        await md.content_store.info(multi.config.digest)
        for m in multi.manifests:
            if m.digest != multi.manifest.digest:
                with pytest.raises(errdefs.NotFound):
                    await md.content_store.info(m.digest)


async def test_wrong_password_is_unauthenticated_with_the_registry_message(
    transfer_daemon, registry_factory, busybox
):
    reg = registry_factory(auth="basic")
    reg.push(busybox, repository="private/busybox")
    ref = reg.ref("private/busybox")
    with namespaces.use("default"), pytest.raises(errdefs.Unauthenticated) as info:
        await transfer(
            transfer_daemon.address,
            OCIRegistry(reference=ref, default_scheme="http"),
            store(ref),
            credentials=("testuser", "wrong"),
        )
    assert "401" in str(info.value) and "UNAUTHORIZED" in str(info.value)
    with namespaces.use("default"):
        await transfer(
            transfer_daemon.address,
            OCIRegistry(reference=ref, default_scheme="http"),
            store(ref),
            credentials=("testuser", "testpassword"),
        )
        assert (await transfer_daemon.metadata.images.get(ref)).target.digest == busybox.digest


async def test_corrupted_blob_is_a_digest_error_and_no_image_is_recorded(
    transfer_daemon, registry_factory, busybox
):
    reg = registry_factory()
    reg.push(busybox, repository="bad/busybox")
    layer = busybox.layers[0].descriptor
    path = blob_data(reg, layer.digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    ref = reg.ref("bad/busybox")
    with pytest.raises(errdefs.FailedPrecondition) as info:
        await pull(transfer_daemon, ref)
    assert "digest mismatch" in str(info.value) and layer.digest in str(info.value)
    with namespaces.use("default"):
        with pytest.raises(errdefs.NotFound):
            await transfer_daemon.metadata.images.get(ref)
        with pytest.raises(errdefs.NotFound):
            await transfer_daemon.metadata.content_store.info(layer.digest)


async def test_mirror_from_config_path(registry, busybox, tmp_path, start_transfer):
    registry.push(busybox, repository="mirrored/busybox")
    cfg = tmp_path / "certs.d"
    (cfg / "registry.invalid").mkdir(parents=True)
    (cfg / "registry.invalid" / "hosts.toml").write_text(
        'server = "https://registry.invalid"\n'
        f'[host."http://{registry.host}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    base = tempfile.mkdtemp(prefix="xfer", dir="/tmp")
    server, address = await start_transfer(base, {"config_path": str(cfg)})
    try:

        class D:
            pass

        d = D()
        d.address = address  # type: ignore[attr-defined]
        ref = "registry.invalid/mirrored/busybox:latest"
        c = await pull(d, ref, scheme="")
        assert any(e.event == "saved" for e in c.events)
        mirrored = [e for e in registry.access_log() if "ns=registry.invalid" in e.path]
        assert mirrored, "requests to the mirror carry ?ns=<upstream>"
    finally:
        await server.stop(1)
        shutil.rmtree(base, ignore_errors=True)


async def test_concurrent_pulls_share_one_fetch_and_unpack(
    transfer_daemon, registry_factory, image_cache
):
    reg = registry_factory()
    img = images.large_image(
        image_cache, [8 << 20, 4 << 20], seed=7, name="docker.io/library/shared:latest"
    )
    reg.push(img, repository="shared/img")
    ref = reg.ref("shared/img")
    before = len(reg.access_log())
    a, b = Collect(), Collect()
    with namespaces.use("default"):
        src = lambda: OCIRegistry(reference=ref, default_scheme="http")  # noqa: E731
        await asyncio.gather(
            transfer(transfer_daemon.address, src(), store(ref), display=a),
            transfer(transfer_daemon.address, src(), store(ref + "-b"), display=b),
        )
        md = transfer_daemon.metadata
        assert (await md.images.get(ref)).target.digest == img.digest
        assert (await md.images.get(ref + "-b")).target.digest == img.digest
    entries = reg.wait_for_log(
        lambda es: len([e for e in es[before:] if e.method == "GET" and "/blobs/" in e.path]) >= 3
    )[before:]
    gets = [e.path for e in entries if e.method == "GET" and "/blobs/" in e.path]
    assert len(gets) == len(set(gets)) == 3  # config + 2 layers, each once
    assert any(e.event.startswith("Waiting for the pull") for e in a.events + b.events)


def _kill_when_ingesting(d: Any, reg: Any, threshold: int, action: str) -> threading.Thread:
    root = Path(d.base) / "root" / "io.containerd.content.v1.content" / "ingest"

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for data in root.glob("*/data"):
                try:
                    if data.stat().st_size >= threshold:
                        if action == "kill":
                            reg.proc.kill()
                        else:
                            reg.proc.send_signal(signal.SIGSTOP)
                        return
                except (FileNotFoundError, AttributeError):
                    pass
            time.sleep(0.0005)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


async def test_interrupted_pull_resumes_fetching_only_the_missing_bytes(
    transfer_daemon, registry_factory, image_cache
):
    reg = registry_factory()
    img = images.large_image(
        image_cache, [64 << 20], seed=11, name="docker.io/library/resume:latest"
    )
    reg.push(img, repository="resume/img")
    ref = reg.ref("resume/img")
    layer = img.layers[0].descriptor
    watcher = _kill_when_ingesting(transfer_daemon, reg, 4 << 20, "kill")
    with pytest.raises(errdefs.Unavailable):
        await pull(transfer_daemon, ref)
    watcher.join(5)
    md = transfer_daemon.metadata
    with namespaces.use("default"):
        status = await md.content_store.status(f"layer-{layer.digest}")
    assert 0 < status.offset < layer.size
    reg.proc.wait()
    reg.proc = None
    reg.start()  # same port, same storage
    before = len(reg.access_log())
    await pull(transfer_daemon, ref)
    entries = reg.wait_for_log(
        lambda es: any(layer.digest in e.path and e.method == "GET" for e in es[before:])
    )[before:]
    gets = [e for e in entries if e.method == "GET" and layer.digest in e.path]
    assert len(gets) == 1 and gets[0].status == 206
    assert gets[0].size == layer.size - status.offset


@pytest.mark.parametrize("transfer_config", [{"progress_timeout": "2s"}])
async def test_stalled_pull_fails_after_the_progress_timeout_naming_the_layer(
    transfer_daemon, registry_factory, image_cache
):
    reg = registry_factory()
    img = images.large_image(
        image_cache, [64 << 20], seed=12, name="docker.io/library/stall:latest"
    )
    reg.push(img, repository="stall/img")
    layer = img.layers[0].descriptor
    watcher = _kill_when_ingesting(transfer_daemon, reg, 4 << 20, "stop")
    t0 = time.monotonic()
    try:
        with pytest.raises(errdefs.DeadlineExceeded) as info:
            await pull(transfer_daemon, reg.ref("stall/img"))
    finally:
        watcher.join(5)
        reg.proc.send_signal(signal.SIGCONT)
    assert f"layer-{layer.digest}" in str(info.value)
    assert "no progress for 2s" in str(info.value)
    assert time.monotonic() - t0 < 30
