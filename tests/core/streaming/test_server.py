"""The streaming server over real sockets: tokens, URLs, WebSocket remotecommand (v1/v4/v5,
base64), attach, WebSocket port-forward, TLS and the idle timeout."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import ssl
import struct
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.streaming import status
from pycontainerd.core.streaming.server import Config, StreamServer
from pycontainerd.core.streaming.tokens import RequestCache
from pycontainerd.core.streaming.types import (
    AttachRequest,
    ExecRequest,
    PortForwardRequest,
    TerminalSize,
)


def exec_req(cmd: list[str], **kw: Any) -> ExecRequest:
    kw.setdefault("stdout", True)
    kw.setdefault("stderr", not kw.get("tty", False))
    return ExecRequest(container_id="c1", cmd=cmd, **kw)


class WsResult:
    def __init__(self) -> None:
        self.channels: dict[int, bytes] = {}
        self.first: tuple[int, bytes] | None = None
        self.kinds: set[aiohttp.WSMsgType] = set()

    def add(self, channel: int, data: bytes) -> None:
        if self.first is None:
            self.first = (channel, data)
        self.channels[channel] = self.channels.get(channel, b"") + data

    def status(self) -> dict[str, Any]:
        return json.loads(self.channels[3])


async def ws_collect(ws: aiohttp.ClientWebSocketResponse, *, b64: bool = False) -> WsResult:
    res = WsResult()
    async for msg in ws:
        res.kinds.add(msg.type)
        raw = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
        if b64:
            res.add(raw[0] - ord("0"), base64.b64decode(raw[1:]))
        else:
            res.add(raw[0], raw[1:])
    return res


# -- tokens -----------------------------------------------------------------------------------


def test_tokens_are_8_url_safe_characters_and_single_use() -> None:
    cache = RequestCache()
    token = cache.insert("req")
    assert re.fullmatch(r"[A-Za-z0-9_-]{8}", token)
    assert cache.consume(token) == "req"
    assert cache.consume(token) is None
    assert cache.consume("unknown1") is None


def test_tokens_expire_after_their_ttl() -> None:
    now = [100.0]
    cache = RequestCache(ttl=60, clock=lambda: now[0])
    token = cache.insert("req")
    now[0] += 60.5
    assert cache.consume(token) is None


def test_too_many_tokens_in_flight_is_resource_exhausted_until_some_expire() -> None:
    now = [0.0]
    cache = RequestCache(ttl=60, max_in_flight=3, clock=lambda: now[0])
    for _ in range(3):
        cache.insert("r")
    with pytest.raises(errdefs.ResourceExhausted, match="in-flight"):
        cache.insert("r")
    now[0] = 61
    cache.insert("r")  # the expired ones were collected
    assert len(cache) == 1


# -- URLs and request validation --------------------------------------------------------------


async def test_urls_name_the_kind_and_a_token_under_the_base_url(server: StreamServer) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.base_url)
    assert not server.base_url.endswith(":0")
    url = server.get_exec(exec_req(["true"]))
    assert re.fullmatch(re.escape(server.base_url) + r"/exec/[A-Za-z0-9_-]{8}", url)
    url = server.get_attach(AttachRequest(container_id="c1", stdout=True))
    assert "/attach/" in url
    url = server.get_port_forward(PortForwardRequest(pod_sandbox_id="p1", ports=[80]))
    assert "/portforward/" in url


class ProtoLike:
    """Shaped like CRI's generated messages (the plugin passes those straight in)."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


async def test_cri_shaped_requests_are_accepted(server: StreamServer) -> None:
    server.get_exec(
        ProtoLike(container_id="c", cmd=["ls"], tty=False, stdin=False, stdout=True, stderr=False)
    )
    server.get_port_forward(ProtoLike(pod_sandbox_id="p", port=[8080]))


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (ExecRequest(container_id="", cmd=["x"], stdout=True), "container_id"),
        (ExecRequest(container_id="c", cmd=["x"], tty=True, stderr=True), "tty and stderr"),
        (ExecRequest(container_id="c", cmd=["x"]), "one of stdin, stdout, or stderr"),
    ],
)
async def test_invalid_exec_requests_are_rejected(
    server: StreamServer, req: ExecRequest, message: str
) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=message):
        server.get_exec(req)


async def test_port_forward_needs_a_sandbox(server: StreamServer) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="pod_sandbox_id"):
        server.get_port_forward(PortForwardRequest(pod_sandbox_id=""))


@pytest.mark.parametrize("server_config", [Config(max_in_flight=2)])
async def test_max_in_flight_urls(server: StreamServer) -> None:
    server.get_exec(exec_req(["true"]))
    server.get_exec(exec_req(["true"]))
    with pytest.raises(errdefs.ResourceExhausted):
        server.get_exec(exec_req(["true"]))


# -- tokens over HTTP -------------------------------------------------------------------------


async def test_unknown_token_is_404(server: StreamServer) -> None:
    async with aiohttp.ClientSession() as s, s.post(f"{server.base_url}/exec/AAAAAAAA") as r:
        assert r.status == 404


async def test_a_token_works_once(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["true"]))
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url, protocols=["v4.channel.k8s.io"]) as ws:
            res = await ws_collect(ws)
        assert res.status()["status"] == "Success"
        async with s.post(url) as r:
            assert r.status == 404
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await s.ws_connect(url, protocols=["v4.channel.k8s.io"])


async def test_a_token_of_another_kind_is_404(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["true"]))
    async with aiohttp.ClientSession() as s, s.get(url.replace("/exec/", "/attach/")) as r:
        assert r.status == 404


@pytest.mark.parametrize("server_config", [Config(token_ttl=0.05)])
async def test_an_expired_token_is_404(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["true"]))
    await asyncio.sleep(0.1)
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 404


# -- WebSocket remotecommand ------------------------------------------------------------------


@pytest.mark.parametrize("proto", ["v4.channel.k8s.io", "v5.channel.k8s.io"])
async def test_ws_exec_separates_streams_and_reports_success(
    server: StreamServer, proto: str
) -> None:
    url = server.get_exec(exec_req(["sh", "-c", "echo out; echo err >&2"]))
    async with aiohttp.ClientSession() as s, s.ws_connect(url, protocols=[proto]) as ws:
        assert ws.protocol == proto
        res = await ws_collect(ws)
    assert res.first == (1, b"")  # the "streams are ready" message on stdout
    assert res.channels[1] == b"out\n"
    assert res.channels[2] == b"err\n"
    assert res.status() == {"metadata": {}, "status": "Success"}
    assert res.kinds == {aiohttp.WSMsgType.BINARY}


async def test_ws_exec_reports_a_non_zero_exit_code(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["sh", "-c", "exit 3"]))
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(url, protocols=["v4.channel.k8s.io"]) as ws,
    ):
        res = await ws_collect(ws)
    st = res.status()
    assert st["status"] == "Failure"
    assert st["reason"] == "NonZeroExitCode"
    assert st["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert status.exit_code(st) == 3


async def test_ws_exec_runtime_failure_is_an_internal_error(server: StreamServer) -> None:
    url = server.get_exec(ExecRequest(container_id="broken", cmd=["true"], stdout=True))
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(url, protocols=["v4.channel.k8s.io"]) as ws,
    ):
        res = await ws_collect(ws)
    st = res.status()
    assert st["reason"] == "InternalError" and st["code"] == 500
    assert 'container "broken" is not running' in st["message"]


async def test_ws_client_order_decides_the_protocol(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["true"]))
    offered = ["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"]
    async with aiohttp.ClientSession() as s, s.ws_connect(url, protocols=offered) as ws:
        assert ws.protocol == "v5.channel.k8s.io"
        await ws_collect(ws)


async def test_ws_unsupported_protocol_is_refused(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["true"]))
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await s.ws_connect(url, protocols=["v9.channel.k8s.io"])
    assert info.value.status == 403


async def test_ws_v5_close_signal_half_closes_stdin(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["sh", "-c", "cat; echo eof-seen"], stdin=True))
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(url, protocols=["v5.channel.k8s.io"]) as ws,
    ):
        await ws.send_bytes(b"\x00hello ")
        await ws.send_bytes(b"\x00world\n")
        await ws.send_bytes(bytes([255, 0]))  # CLOSE stdin
        res = await ws_collect(ws)
    assert res.channels[1] == b"hello world\neof-seen\n"
    assert res.status()["status"] == "Success"


async def test_ws_base64_protocol_uses_digit_channels_and_text(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["sh", "-c", "cat; echo bye >&2; exit 1"], stdin=True))
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(url, protocols=["v4.base64.channel.k8s.io"]) as ws,
    ):
        await ws.send_str("0" + base64.b64encode(b"\x00\xffbin\n").decode())
        # v4 has no close signal: stdin ends when the client stops; wait for the echo first
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.TEXT and msg.data == "1"  # ready, empty payload
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.TEXT
        assert msg.data == "1" + base64.b64encode(b"\x00\xffbin\n").decode()
        await ws.close()
    # the connection ended; exec goes on to its exit (stdin EOF): nothing left to assert here


async def test_ws_base64_status_is_base64_json(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["sh", "-c", "echo x; exit 2"]))
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(url, protocols=["base64.channel.k8s.io", "v4.base64.channel.k8s.io"]) as ws,
    ):
        assert ws.protocol == "base64.channel.k8s.io"  # the client's first choice
        res = await ws_collect(ws, b64=True)
    assert res.kinds == {aiohttp.WSMsgType.TEXT}
    assert res.channels[1] == b"x\n"
    # unversioned protocol: the error channel carries the message text, not JSON
    assert res.channels[3].startswith(b"command terminated with non-zero exit code")


async def test_ws_unversioned_success_writes_nothing_on_the_error_channel(
    server: StreamServer,
) -> None:
    url = server.get_exec(exec_req(["true"]))
    async with aiohttp.ClientSession() as s, s.ws_connect(url, protocols=["channel.k8s.io"]) as ws:
        res = await ws_collect(ws)
    assert res.channels.get(3, b"") == b""


async def test_ws_no_protocol_is_binary_unversioned(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["sh", "-c", "echo plain"]))
    async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
        assert not ws.protocol
        res = await ws_collect(ws)
    assert res.channels[1] == b"plain\n"


async def test_ws_tty_applies_resize_messages(server: StreamServer, runtime: Any) -> None:
    url = server.get_exec(exec_req(["sh", "-c", "read line; stty size"], tty=True, stdin=True))
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(url, protocols=["v5.channel.k8s.io"]) as ws,
    ):
        await ws.send_bytes(b"\x04" + TerminalSize(100, 40).to_json())
        await asyncio.wait_for(runtime.resized.wait(), 5)
        await ws.send_bytes(b"\x00go\r")
        res = await ws_collect(ws)
    assert runtime.resizes == [TerminalSize(100, 40)]
    assert b"40 100" in res.channels[1]
    assert 2 not in res.channels  # a tty has no stderr
    assert res.status()["status"] == "Success"


async def test_ws_attach_streams_to_the_container(server: StreamServer, runtime: Any) -> None:
    url = server.get_attach(AttachRequest(container_id="c9", stdin=True, stdout=True))
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(url, protocols=["v5.channel.k8s.io"]) as ws,
    ):
        await ws.send_bytes(b"\x00attached\n")
        await ws.send_bytes(bytes([255, 0]))
        res = await ws_collect(ws)
    assert ("attach", "c9") in runtime.calls
    assert res.channels[1] == b"attached\n"
    assert res.status()["status"] == "Success"


# -- WebSocket port-forward -------------------------------------------------------------------


async def test_ws_port_forward_prefixes_ports_and_relays(
    server: StreamServer, echo_port: int
) -> None:
    url = server.get_port_forward(PortForwardRequest(pod_sandbox_id="pod1", ports=[echo_port]))
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(url, protocols=["v4.channel.k8s.io"]) as ws,
    ):
        port_le = struct.pack("<H", echo_port)
        first = {(await ws.receive()).data for _ in range(2)}
        assert first == {b"\x00" + port_le, b"\x01" + port_le}
        await ws.send_bytes(b"\x00hello port")
        got = b""
        while got != b"hello port":
            msg = await asyncio.wait_for(ws.receive(), 5)
            assert msg.data[0] == 0
            got += msg.data[1:]
        await ws.close()


async def test_ws_port_forward_takes_ports_from_the_query(
    server: StreamServer, echo_port: int, closed_port: int
) -> None:
    url = server.get_port_forward(PortForwardRequest(pod_sandbox_id="pod1"))
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(
            f"{url}?port={echo_port},{closed_port}", protocols=["v4.channel.k8s.io"]
        ) as ws,
    ):
        res = WsResult()
        while True:  # until the error for the closed port arrives
            msg = await asyncio.wait_for(ws.receive(), 10)
            res.add(msg.data[0], msg.data[1:])
            if len(res.channels.get(3, b"")) > 2:
                break
        assert res.channels[0] == struct.pack("<H", echo_port)
        assert res.channels[2] == struct.pack("<H", closed_port)
        assert b"error forwarding port %d to pod pod1" % closed_port in res.channels[3]
        await ws.close()


async def test_ws_port_forward_without_ports_is_400(server: StreamServer) -> None:
    url = server.get_port_forward(PortForwardRequest(pod_sandbox_id="pod1"))
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await s.ws_connect(url)
    assert info.value.status == 400


# -- TLS, idle timeout ------------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[str, str]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


async def test_tls_streaming(runtime: Any, tls_files: tuple[str, str]) -> None:
    cert, key = tls_files
    async with StreamServer(Config(tls_cert_file=cert, tls_key_file=key), runtime) as srv:
        assert srv.base_url.startswith("https://127.0.0.1:")
        url = srv.get_exec(exec_req(["echo", "secure"]))
        ctx = ssl.create_default_context(cafile=cert)
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(url, protocols=["v4.channel.k8s.io"], ssl=ctx) as ws,
        ):
            res = await ws_collect(ws)
    assert res.channels[1] == b"secure\n"


async def test_tls_needs_both_files(runtime: Any) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="both"):
        await StreamServer(Config(tls_cert_file="/x"), runtime).start()


@pytest.mark.parametrize("server_config", [Config(stream_idle_timeout=0.3)])
async def test_idle_websocket_is_closed(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["sleep", "5"]))
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(url, protocols=["v4.channel.k8s.io"]) as ws,
    ):
        await asyncio.wait_for(ws_collect(ws), 4)
    assert loop.time() - start < 3


async def test_stop_ends_streams_in_progress(runtime: Any) -> None:
    srv = StreamServer(Config(), runtime)
    await srv.start()
    url = srv.get_exec(exec_req(["sleep", "30"]))
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(url, protocols=["v4.channel.k8s.io"]) as ws,
    ):
        await ws.receive()  # the ready message: exec is running
        collect = asyncio.create_task(ws_collect(ws))
        await asyncio.wait_for(srv.stop(), 5)
        await asyncio.wait_for(collect, 5)
    assert ws.closed
