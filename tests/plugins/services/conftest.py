"""``md_daemon``: an in-process daemon (the real Server, real plugins discovered through the
loader) with content, native snapshotter, metadata, GC, leases, events and the metadata-backed
gRPC services on a unix socket, and a gRPC channel to it."""

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

MD_MODULES = [
    "pycontainerd.plugins.warning.plugin",
    "pycontainerd.plugins.events.plugin",
    "pycontainerd.plugins.content.local.plugin",
    "pycontainerd.plugins.snapshotters.native.plugin",
    "pycontainerd.plugins.metadata.plugin",
    "pycontainerd.plugins.gc.plugin",
    "pycontainerd.plugins.leases.plugin",
    "pycontainerd.plugins.services.namespaces.plugin",
    "pycontainerd.plugins.services.images.plugin",
    "pycontainerd.plugins.services.containers.plugin",
    "pycontainerd.plugins.services.leases.plugin",
    "pycontainerd.plugins.services.sandboxes.plugin",
    "pycontainerd.plugins.services.events.plugin",
    "pycontainerd.plugins.server.plugin",
]


@attrs.define(eq=False)
class MDDaemon:
    server: Server
    address: str
    channel: grpc.aio.Channel

    def instance(self, uri: str) -> Any:
        p = self.server.plugins.get(uri)
        assert p is not None and p.status is Status.OK, p and p.error_text()
        return p.instance

    @staticmethod
    def ns(name: str = "default", lease: str | None = None) -> list[tuple[str, str]]:
        md = [("containerd-namespace", name)]
        if lease:
            md.append(("containerd-lease", lease))
        return md


@pytest.fixture
async def md_daemon() -> AsyncIterator[MDDaemon]:
    base = tempfile.mkdtemp(prefix="mdsvc", dir="/tmp")
    registry = loader.discover(MD_MODULES, autoload=False)
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
        },
    )
    server = Server(settings=settings, registry=registry, decode=config.decode_plugin_config)
    await server.start()
    try:
        failed = {p.uri: p.error_text() for p in server.plugins if p.status is not Status.OK}
        assert not failed
        async with grpc.aio.insecure_channel(f"unix://{address}") as channel:
            yield MDDaemon(server=server, address=address, channel=channel)
    finally:
        errors = await server.stop(1)
        shutil.rmtree(base, ignore_errors=True)
    assert errors == []
