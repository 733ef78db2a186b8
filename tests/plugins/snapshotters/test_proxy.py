"""Proxy snapshotters: the shared conformance suite through contrib/snapshot-service (a real
subprocess serving the native snapshotter over the snapshots gRPC API on a unix socket), and
the registrations made from ``[proxy_plugins]``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import grpc
import pytest

from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2 as pb
from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2_grpc as pb_grpc
from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.config import ProxyPlugin
from pycontainerd.core.plugin import types
from pycontainerd.core.snapshots import Cleaner, Info, Kind, Snapshotter, testsuite
from pycontainerd.core.snapshots.proxy import (
    ProxySnapshotter,
    info_from_proto,
    info_to_proto,
)
from pycontainerd.plugins.snapshotters.proxy.plugin import registrations_from_config

SERVICE = Path(__file__).resolve().parents[3] / "contrib" / "snapshot-service"


def start_service(root: str, sock: str, *extra: str) -> subprocess.Popen[bytes]:
    log = open(os.path.join(os.path.dirname(sock), "service.log"), "ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(SERVICE / "snapshot_service.py"),
            "--address",
            sock,
            "--root",
            root,
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc


async def wait_ready(sock: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"snapshot service exited with {proc.returncode}")
        if os.path.exists(sock):
            async with grpc.aio.insecure_channel(f"unix:{sock}") as ch:
                try:
                    await asyncio.wait_for(ch.channel_ready(), 1.0)
                    return
                except TimeoutError:
                    pass
        await asyncio.sleep(0.05)
    raise TimeoutError(f"snapshot service on {sock} did not start")


@attrs.define(eq=False)
class ServiceProxy(ProxySnapshotter):
    """A proxy that owns the service process: close() also stops it (so re-opening the
    same root in the suite restarts the service on its data)."""

    proc: Any = None

    async def close(self) -> None:
        await super().close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            await asyncio.to_thread(self.proc.wait, 10)


async def _factory(root: str) -> Snapshotter:
    sock = os.path.join(os.path.dirname(root), "sn.sock")
    proc = start_service(root, sock)
    await wait_ready(sock, proc)
    sp = ServiceProxy.connect(sock, "proxied")
    sp.proc = proc
    return sp


@pytest.mark.root
@pytest.mark.parametrize("case", testsuite.CASES, ids=testsuite.case_id)
async def test_proxy_conformance_through_contrib_service(case: testsuite.Case, tmp_path) -> None:
    await testsuite.run(case, _factory, str(tmp_path))


def test_proxy_satisfies_the_snapshotter_and_cleaner_protocols() -> None:
    assert issubclass(ProxySnapshotter, Snapshotter)
    assert issubclass(ProxySnapshotter, Cleaner)


def test_info_round_trips_through_proto() -> None:
    info = Info(name="a", kind=Kind.COMMITTED, parent="p", labels={"x": "y"})
    assert info_from_proto(info_to_proto(info)) == info
    assert info_to_proto(Info(name="v", kind=Kind.VIEW)).kind == pb.VIEW


class _Recorder(pb_grpc.SnapshotsServicer):
    """A fake remote snapshotter that records the request and metadata it receives."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []

    async def Stat(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.seen.append((request.snapshotter, dict(context.invocation_metadata())))
        if request.key == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "snapshot missing does not exist")
        return pb.StatSnapshotResponse(info=pb.Info(name=request.key, kind=pb.ACTIVE))


async def test_proxy_sends_its_name_and_the_namespace_and_maps_errors(tmp_path) -> None:
    sock = str(tmp_path / "rec.sock")
    rec = _Recorder()
    server = grpc.aio.server()
    pb_grpc.add_SnapshotsServicer_to_server(rec, server)
    server.add_insecure_port(f"unix:{sock}")
    await server.start()
    sp = ProxySnapshotter.connect(sock, "remote1")
    try:
        with namespaces.use("ns1"):
            info = await sp.stat("k")
        assert info.name == "k" and info.kind is Kind.ACTIVE
        name, md = rec.seen[-1]
        assert name == "remote1"
        assert md.get(namespaces.GRPC_HEADER) == "ns1"
        await sp.stat("k")  # no namespace in context: no header
        assert namespaces.GRPC_HEADER not in rec.seen[-1][1]
        with pytest.raises(errdefs.NotFound, match="missing does not exist"):
            await sp.stat("missing")
    finally:
        await sp.close()
        await server.stop(0)


async def test_registrations_from_config_make_lazy_snapshotter_plugins(tmp_path) -> None:
    from pycontainerd.core.plugin.context import InitContext, PluginSet

    regs = registrations_from_config(
        {
            "remote": ProxyPlugin(
                type="snapshot",
                address=str(tmp_path / "nothing-yet.sock"),
                platform="linux/arm64",
                exports={"root": "/x"},
                capabilities=("remap-ids",),
            ),
            "other": ProxyPlugin(type="io.containerd.snapshotter.v1", address="/b.sock"),
            "cs": ProxyPlugin(type="content", address="/c.sock"),
        }
    )
    assert [(r.type, r.id) for r in regs] == [
        (types.SNAPSHOTTER, "other"),
        (types.SNAPSHOTTER, "remote"),
    ]
    reg = regs[1]
    assert reg.source == "proxy_plugins.remote"
    ic = InitContext(registration=reg, config=None, properties={}, plugins=PluginSet())
    sn = await reg.init(ic)  # nothing listens yet: init does not connect
    try:
        assert isinstance(sn, ProxySnapshotter) and sn.name == "remote"
        assert ic.meta.exports == {"root": "/x", "address": str(tmp_path / "nothing-yet.sock")}
        assert [p.format() for p in ic.meta.platforms] == ["linux/arm64"]
        assert ic.meta.capabilities == ["remap-ids"]
    finally:
        await sn.close()
