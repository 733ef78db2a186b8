"""``cri_daemon``: an in-process daemon (real Server, real plugins through the loader) with
content, the native snapshotter, metadata, GC, leases, the walking differ, transfer, the local
services, and the three CRI plugins, serving CRI on a unix socket. The CRI images use the
native snapshotter (override ``cri_config`` in a module to change plugin configs)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import attrs
import grpc
import pytest
from cri import AsyncCRIClient

from pycontainerd.core import config
from pycontainerd.core.plugin import Status, loader
from pycontainerd.core.server.server import Server, Settings

CRI_MODULES = [
    "pycontainerd.plugins.warning.plugin",
    "pycontainerd.plugins.events.plugin",
    "pycontainerd.plugins.content.local.plugin",
    "pycontainerd.plugins.snapshotters.native.plugin",
    "pycontainerd.plugins.metadata.plugin",
    "pycontainerd.plugins.gc.plugin",
    "pycontainerd.plugins.leases.plugin",
    "pycontainerd.plugins.diff.walking.plugin",
    "pycontainerd.plugins.transfer.plugin",
    "pycontainerd.plugins.services.content.plugin",
    "pycontainerd.plugins.services.snapshots.plugin",
    "pycontainerd.plugins.services.namespaces.plugin",
    "pycontainerd.plugins.services.images.plugin",
    "pycontainerd.plugins.services.containers.plugin",
    "pycontainerd.plugins.services.sandboxes.plugin",
    "pycontainerd.plugins.services.introspection.plugin",
    "pycontainerd.plugins.cri.runtime.plugin",
    "pycontainerd.plugins.cri.images.plugin",
    "pycontainerd.plugins.cri.plugin",
    "pycontainerd.plugins.server.plugin",
]


@attrs.define(eq=False)
class CRIDaemon:
    server: Server
    address: str
    base: str
    channel: grpc.aio.Channel
    cri: AsyncCRIClient

    def instance(self, uri: str) -> Any:
        p = self.server.plugins.get(uri)
        assert p is not None and p.status is Status.OK, p and p.error_text()
        return p.instance

    @property
    def service(self) -> Any:
        return self.instance("io.containerd.grpc.v1.cri")


def base_configs(base: str) -> dict[str, Any]:
    return {
        "io.containerd.server.v1.grpc": {"uid": -1, "gid": -1},
        "io.containerd.server.v1.ttrpc": {"uid": -1, "gid": -1},
        "io.containerd.transfer.v1.local": {
            "unpack_config": [{"snapshotter": "native", "differ": "walking"}],
            "default_snapshotter": "native",
        },
        "io.containerd.cri.v1.images": {"snapshotter": "native"},
        "io.containerd.cri.v1.runtime": {"cni": {"conf_dir": os.path.join(base, "net.d")}},
    }


@pytest.fixture
def cri_config() -> dict[str, Any]:
    """Plugin configs merged over the defaults of :func:`base_configs` (per URI)."""
    return {}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base``, tables recursively."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


async def start_cri_daemon(base: str, overrides: dict[str, Any]) -> Server:
    registry = loader.discover(CRI_MODULES, autoload=False)
    configs = merge(base_configs(base), overrides)
    settings = Settings(
        root=os.path.join(base, "root"),
        state=os.path.join(base, "state"),
        grpc_address=os.path.join(base, "d.sock"),
        ttrpc_address=os.path.join(base, "d.sock.ttrpc"),
        disabled_plugins=["io.containerd.server.v1.metrics", "io.containerd.server.v1.debug"],
        plugin_configs=configs,
    )
    server = Server(settings=settings, registry=registry, decode=config.decode_plugin_config)
    await server.start()
    return server


@pytest.fixture
def start_cri() -> Any:
    """``await start_cri(base, overrides)`` -> a started Server; the caller stops it."""
    return start_cri_daemon


@pytest.fixture
async def cri_daemon(cri_config: dict[str, Any]) -> AsyncIterator[CRIDaemon]:
    base = tempfile.mkdtemp(prefix="cri", dir="/tmp")
    server = await start_cri_daemon(base, cri_config)
    address = os.path.join(base, "d.sock")
    try:
        failed = {p.uri: p.error_text() for p in server.plugins if p.status is Status.ERROR}
        assert not failed
        async with grpc.aio.insecure_channel(f"unix://{address}") as channel:
            yield CRIDaemon(
                server=server,
                address=address,
                base=base,
                channel=channel,
                cri=AsyncCRIClient(channel),
            )
    finally:
        errors = await server.stop(1)
        shutil.rmtree(base, ignore_errors=True)
    assert errors == []
