"""``transfer_daemon``: an in-process daemon (real Server, real plugins through the loader)
with content, native and overlayfs snapshotters, metadata, GC, leases, the walking differ,
the transfer and streaming plugins and their gRPC services on a unix socket."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import attrs
import grpc
import pytest

from pycontainerd.core import config
from pycontainerd.core.plugin import Status, loader
from pycontainerd.core.server.server import Server, Settings

TRANSFER_MODULES = [
    "pycontainerd.plugins.warning.plugin",
    "pycontainerd.plugins.events.plugin",
    "pycontainerd.plugins.content.local.plugin",
    "pycontainerd.plugins.snapshotters.native.plugin",
    "pycontainerd.plugins.snapshotters.overlayfs.plugin",
    "pycontainerd.plugins.metadata.plugin",
    "pycontainerd.plugins.gc.plugin",
    "pycontainerd.plugins.leases.plugin",
    "pycontainerd.plugins.diff.walking.plugin",
    "pycontainerd.plugins.transfer.plugin",
    "pycontainerd.plugins.streaming.plugin",
    "pycontainerd.plugins.services.transfer.plugin",
    "pycontainerd.plugins.services.streaming.plugin",
    "pycontainerd.plugins.server.plugin",
]


@attrs.define(eq=False)
class TransferDaemon:
    server: Server
    address: str
    channel: grpc.aio.Channel
    base: str

    def instance(self, uri: str) -> Any:
        p = self.server.plugins.get(uri)
        assert p is not None and p.status is Status.OK, p and p.error_text()
        return p.instance

    @property
    def transfer(self) -> Any:
        return self.instance("io.containerd.transfer.v1.local")

    @property
    def metadata(self) -> Any:
        return self.instance("io.containerd.metadata.v1.bolt")

    @staticmethod
    def ns(name: str = "default") -> list[tuple[str, str]]:
        return [("containerd-namespace", name)]


async def start_transfer_daemon(
    base: str, transfer_config: dict[str, Any] | None = None
) -> tuple[Server, str]:
    registry = loader.discover(TRANSFER_MODULES, autoload=False)
    address = os.path.join(base, "d.sock")
    settings = Settings(
        root=os.path.join(base, "root"),
        state=os.path.join(base, "state"),
        grpc_address=address,
        ttrpc_address=address + ".ttrpc",
        disabled_plugins=["io.containerd.server.v1.metrics", "io.containerd.server.v1.debug"],
        plugin_configs={
            "io.containerd.server.v1.grpc": {"uid": -1, "gid": -1},
            "io.containerd.server.v1.ttrpc": {"uid": -1, "gid": -1},
            "io.containerd.transfer.v1.local": dict(transfer_config or {}),
        },
    )
    server = Server(settings=settings, registry=registry, decode=config.decode_plugin_config)
    await server.start()
    return server, address


@pytest.fixture
def start_transfer() -> Any:
    """``await start_transfer(base, config)`` -> (server, address); the caller stops it."""
    return start_transfer_daemon


@pytest.fixture
def transfer_config() -> dict[str, Any]:
    """Override in a test module to configure ``io.containerd.transfer.v1.local``."""
    return {}


@pytest.fixture
async def transfer_daemon(transfer_config: dict[str, Any]) -> AsyncIterator[TransferDaemon]:
    base = tempfile.mkdtemp(prefix="xfer", dir="/tmp")
    server, address = await start_transfer_daemon(base, transfer_config)
    try:
        failed = {p.uri: p.error_text() for p in server.plugins if p.status is Status.ERROR}
        assert not failed
        async with grpc.aio.insecure_channel(f"unix://{address}") as channel:
            yield TransferDaemon(server=server, address=address, channel=channel, base=base)
    finally:
        errors = await server.stop(1)
        shutil.rmtree(base, ignore_errors=True)
    assert errors == []
