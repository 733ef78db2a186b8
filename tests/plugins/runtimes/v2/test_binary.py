"""Shim binary resolution, the start reply, bootstrap.json, the shim log FIFO and the
legacy publish path (no real shim needed)."""

from __future__ import annotations

import asyncio
import io
import logging
import os

import pytest
from google.protobuf import any_pb2

from pycontainerd.core import errdefs
from pycontainerd.core.events.exchange import Exchange
from pycontainerd.core.runtime.bundle import new_bundle
from pycontainerd.core.server.grpcserver import GRPCServer
from pycontainerd.plugins.runtimes.v2 import binary, publish
from pycontainerd.plugins.services.events.service import EventsService


def test_binary_name() -> None:
    assert binary.binary_name("io.containerd.runc.v2") == "containerd-shim-runc-v2"
    assert binary.binary_name("io.containerd.pyrunc.v2") == "containerd-shim-pyrunc-v2"
    assert binary.binary_name("runc.v1") == "containerd-shim-runc-v1"
    assert binary.binary_name("runc") == ""


def test_resolve_runtime_path(tmp_path, monkeypatch) -> None:
    shim = tmp_path / "containerd-shim-fake-v7"
    shim.write_text("#!/bin/sh\n")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ.get('PATH', '')}")
    r = binary.RuntimeResolver()
    assert r.resolve("io.containerd.fake.v7") == str(shim)
    assert r.resolve(str(shim)) == str(shim)  # absolute path as is
    with pytest.raises(errdefs.NotFound, match="invalid custom binary path"):
        r.resolve(str(tmp_path / "missing"))
    with pytest.raises(errdefs.InvalidArgument, match="invalid runtime name"):
        r.resolve("rel/shim")
    with pytest.raises(errdefs.InvalidArgument, match="invalid runtime name"):
        r.resolve("runc")
    with pytest.raises(errdefs.InvalidArgument, match="no runtime name"):
        r.resolve("")
    with pytest.raises(errdefs.NotFound, match="binary not installed"):
        r.resolve("io.containerd.nope.v9")


def test_parse_start_response() -> None:
    plain = binary.parse_start_response(b"unix:///run/containerd/s/abc\n")
    assert (plain.version, plain.address, plain.protocol) == (
        2,
        "unix:///run/containerd/s/abc",
        "ttrpc",
    )
    js = binary.parse_start_response(b'{"version": 3, "address": "unix:///s", "protocol": "ttrpc"}')
    assert (js.version, js.address, js.protocol) == (3, "unix:///s", "ttrpc")
    assert js.endpoint == "ttrpc+unix:///s"
    old = binary.parse_start_response('{"version": 1, "address": "x"}')
    assert old.version == 2 and old.address == '{"version": 1, "address": "x"}'
    g = binary.parse_start_response('{"version": 3, "address": "unix:///g", "protocol": "grpc"}')
    assert g.protocol == "grpc"
    with pytest.raises(errdefs.NotImplemented_):
        binary.parse_start_response('{"version": 4, "address": "unix:///s"}')
    with pytest.raises(errdefs.NotImplemented_):
        binary.parse_start_response('{"version": 3, "address": "unix:///s", "protocol": "x"}')
    with pytest.raises(errdefs.FailedPrecondition):
        binary.parse_start_response(b"  \n")


def test_bootstrap_round_trip_and_legacy_address(tmp_path) -> None:
    b = new_bundle(str(tmp_path / "r"), str(tmp_path / "s"), "ns", "t", None)
    with open(b.file("address"), "w") as f:
        f.write("unix:///legacy")
    assert binary.read_bootstrap(b).address == "unix:///legacy"
    params = binary.BootstrapParams(version=3, address="unix:///new", protocol="ttrpc")
    binary.write_bootstrap(b, params)
    assert binary.read_bootstrap(b) == params


async def test_shim_log_fifo_is_copied_to_the_daemon_log(tmp_path, caplog) -> None:
    b = new_bundle(str(tmp_path / "r"), str(tmp_path / "s"), "ns", "t", None)
    caplog.set_level(logging.INFO, logger="pycontainerd.shim")
    shim_log = await binary.ShimLog.open(b)
    fd = os.open(b.file("log"), os.O_WRONLY)
    os.write(fd, b'level=info msg="one"\nlevel=warning msg="two"\n')
    os.close(fd)
    for _ in range(100):
        if "two" in caplog.text:
            break
        await asyncio.sleep(0.01)
    shim_log.close()
    assert 'shim id=t namespace=ns: level=info msg="one"' in caplog.text
    assert 'msg="two"' in caplog.text


async def test_publish_sends_an_any_from_stdin(tmp_path) -> None:
    exchange = Exchange()
    server = GRPCServer(address=str(tmp_path / "p.sock"))
    await server.start([EventsService(exchange)])
    sub = exchange.subscribe()
    try:
        event = any_pb2.Any(type_url="containerd.events.TaskOOM", value=b"\n\x02c1")
        stdin = io.BytesIO(event.SerializeToString())
        rc = await asyncio.to_thread(publish.run, server.address, "ns1", "/tasks/oom", stdin)
        assert rc == 0
        async with asyncio.timeout(5):
            env = await sub.__anext__()
        assert (env.namespace, env.topic) == ("ns1", "/tasks/oom")
        assert env.event.type_url == "containerd.events.TaskOOM" and env.event.value == b"\n\x02c1"
        # bad input: not an Any, a bad namespace
        assert publish.run(server.address, "ns1", "/tasks/oom", io.BytesIO(b"\xff\xff")) == 1
        assert publish.run(server.address, "bad ns", "/tasks/oom", io.BytesIO(b"")) == 1
    finally:
        await sub.aclose()
        await server.stop(0)
