"""The events service inside the daemon lifecycle: discovered through the pluggy loader, its
ttrpc Forward on the daemon's ttrpc socket (``io.containerd.server.v1.ttrpc``) and Subscribe
on the daemon's gRPC socket."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import any_pb2, empty_pb2, timestamp_pb2

from pycontainerd.api.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from pycontainerd.api.containerd.services.ttrpc.events.v1 import events_pb2 as tevents_pb2
from pycontainerd.api.containerd.types import event_pb2
from pycontainerd.core import config
from pycontainerd.core.plugin import Status, loader
from pycontainerd.core.server.server import Server, Settings
from pycontainerd.core.ttrpc import Client

MODULES = [
    "pycontainerd.plugins.events.plugin",
    "pycontainerd.plugins.services.events.plugin",
    "pycontainerd.plugins.server.plugin",
]


@pytest.fixture
def base() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="evd", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def test_shim_style_forward_on_the_ttrpc_socket_reaches_a_grpc_subscriber(base: str) -> None:
    registry = loader.discover(MODULES, autoload=False)
    grpc_address = os.path.join(base, "d.sock")
    settings = Settings(
        root=os.path.join(base, "root"),
        state=os.path.join(base, "state"),
        grpc_address=grpc_address,
        ttrpc_address=grpc_address + ".ttrpc",
        disabled_plugins=["io.containerd.server.v1.metrics", "io.containerd.server.v1.debug"],
        plugin_configs={
            "io.containerd.server.v1.grpc": {"uid": -1, "gid": -1},
            "io.containerd.server.v1.ttrpc": {"uid": -1, "gid": -1},
        },
    )
    daemon = Server(settings=settings, registry=registry, decode=config.decode_plugin_config)
    await daemon.start()
    try:
        status = {p.uri: p.status for p in daemon.plugins}
        assert status["io.containerd.grpc.v1.events"] is Status.OK
        assert status["io.containerd.server.v1.ttrpc"] is Status.OK, [
            p.error_text() for p in daemon.plugins
        ]
        async with grpc.aio.insecure_channel(f"unix://{grpc_address}") as channel:
            call = events_pb2_grpc.EventsStub(channel).Subscribe(events_pb2.SubscribeRequest())
            exchange = daemon.plugins.get("io.containerd.event.v1.exchange").instance  # type: ignore[union-attr]
            async with asyncio.timeout(5):
                while exchange.subscriber_count == 0:
                    await asyncio.sleep(0.01)
            env = event_pb2.Envelope(
                timestamp=timestamp_pb2.Timestamp(seconds=1_700_000_000),
                namespace="default",
                topic="/tasks/exit",
                event=any_pb2.Any(type_url="containerd.events.TaskExit", value=b"\n\x01c"),
            )
            async with await Client.connect(f"unix://{grpc_address}.ttrpc") as client:
                await client.call(
                    "containerd.services.events.ttrpc.v1.Events",
                    "Forward",
                    tevents_pb2.ForwardRequest(envelope=env),
                    empty_pb2.Empty,
                    timeout=5,
                )
            async with asyncio.timeout(5):
                assert await call.read() == env
            call.cancel()
    finally:
        errors = await daemon.stop(1)
    assert errors == []
    assert not os.path.exists(grpc_address + ".ttrpc")
