"""SPDY/3.1: framing pinned against independent encodings, then exec/attach and port-forward
over SPDY with a client that opens streams the way client-go does."""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
import zlib
from typing import Any

import aiohttp
import pytest

from pycontainerd.core.streaming import spdy
from pycontainerd.core.streaming.server import Config, StreamServer
from pycontainerd.core.streaming.types import ExecRequest, PortForwardRequest, TerminalSize

# -- framing ----------------------------------------------------------------------------------


def test_header_dictionary_is_the_spdy3_one() -> None:
    d = spdy.HEADER_DICTIONARY
    assert len(d) == 1423
    assert zlib.adler32(d) == 0xE3C6A7C2  # the dictionary id every SPDY/3 zlib stream names
    assert hashlib.sha256(d).hexdigest() == (
        "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"
    )
    assert d.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert d.endswith(b"charset=utf-8charset=iso-8859-1,utf-,*,enq=0.")


def test_header_blocks_are_zlib_with_the_dictionary_and_sync_flushed() -> None:
    comp = spdy.HeaderCompressor()
    first = comp.compress({"streamtype": ["stdout"], "port": ["80"]})
    second = comp.compress({"streamtype": ["error"]})
    # an independent zlib reader with the dictionary sees both blocks, in one stream
    z = zlib.decompressobj(zdict=spdy.HEADER_DICTIONARY)
    raw1 = z.decompress(first)
    assert raw1 == (
        b"\x00\x00\x00\x02"
        b"\x00\x00\x00\x0astreamtype\x00\x00\x00\x06stdout"
        b"\x00\x00\x00\x04port\x00\x00\x00\x0280"
    )
    assert (
        z.decompress(second) == b"\x00\x00\x00\x01\x00\x00\x00\x0astreamtype\x00\x00\x00\x05error"
    )
    assert first.endswith(b"\x00\x00\xff\xff")  # sync flush marker


def test_header_block_values_split_on_nul() -> None:
    block = spdy.encode_header_block({"x-a": ["1", "2"]})
    assert spdy.decode_header_block(block) == {"x-a": ["1", "2"]}
    d = spdy.HeaderDecompressor()
    assert d.decompress(spdy.HeaderCompressor().compress({"A": ["b"]})) == {"a": ["b"]}


def test_frame_layouts() -> None:
    assert spdy.data_frame(3, b"hi", fin=True) == b"\x00\x00\x00\x03\x01\x00\x00\x02hi"
    assert spdy.rst_frame(5, spdy.RstStatus.CANCEL) == (
        b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x05\x00\x00\x00\x05"
    )
    assert spdy.ping_frame(2) == b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x02"
    assert (
        spdy.goaway_frame(7) == b"\x80\x03\x00\x07\x00\x00\x00\x08\x00\x00\x00\x07\x00\x00\x00\x00"
    )


# -- a client-go-like SPDY client -------------------------------------------------------------


async def spdy_exec(
    url: str,
    protocols: list[str],
    *,
    stdin: bytes | None = None,
    stdout: bool = True,
    stderr: bool = True,
    resize: list[TerminalSize] | None = None,
) -> tuple[str, bytes, bytes, bytes]:
    """Open error, stdin, stdout, stderr (and resize) streams; the negotiated protocol and what
    came back on stdout, stderr and the error stream."""
    conn, proto = await spdy.dial(url, protocols)
    try:
        err_s = await conn.open_stream({"streamType": "error"})
        await err_s.close()  # the client never writes to the error stream
        in_s = await conn.open_stream({"streamType": "stdin"}) if stdin is not None else None
        out_s = await conn.open_stream({"streamType": "stdout"}) if stdout else None
        errout_s = await conn.open_stream({"streamType": "stderr"}) if stderr else None
        if resize is not None:
            rs = await conn.open_stream({"streamType": "resize"})
            for size in resize:
                await rs.write(size.to_json())
        if in_s is not None:
            assert stdin is not None
            await in_s.write(stdin)
            await in_s.close()
        out, errout, error = await asyncio.gather(
            out_s.read_all() if out_s else _empty(),
            errout_s.read_all() if errout_s else _empty(),
            err_s.read_all(),
        )
        return proto, out, errout, error
    finally:
        await conn.close()


async def _empty() -> bytes:
    return b""


def exec_req(cmd: list[str], **kw: Any) -> ExecRequest:
    kw.setdefault("stdout", True)
    kw.setdefault("stderr", not kw.get("tty", False))
    return ExecRequest(container_id="c1", cmd=cmd, **kw)


V4 = "v4.channel.k8s.io"
ALL = [V4, "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]


async def test_spdy_exec_separates_streams_and_reports_success(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["sh", "-c", "echo out; echo err >&2"]))
    proto, out, err, error = await spdy_exec(url, ALL)
    assert proto == V4
    assert (out, err) == (b"out\n", b"err\n")
    assert json.loads(error) == {"metadata": {}, "status": "Success"}


async def test_spdy_exec_v4_reports_exit_code(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["sh", "-c", "exit 42"]))
    _, _, _, error = await spdy_exec(url, [V4])
    st = json.loads(error)
    assert st["reason"] == "NonZeroExitCode"
    assert st["details"]["causes"] == [{"reason": "ExitCode", "message": "42"}]


async def test_spdy_exec_v3_reports_failure_as_text(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["sh", "-c", "exit 42"]))
    proto, _, _, error = await spdy_exec(url, ["v3.channel.k8s.io"])
    assert proto == "v3.channel.k8s.io"
    assert error.startswith(b"command terminated with non-zero exit code")
    assert error.endswith(b"exit code 42")


async def test_spdy_exec_stdin_ends_with_fin(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["sh", "-c", "wc -c; echo done"], stdin=True))
    payload = b"x" * 200_000  # several DATA frames
    _, out, _, error = await spdy_exec(url, [V4], stdin=payload)
    assert out.split() == [b"200000", b"done"]
    assert json.loads(error)["status"] == "Success"


async def test_spdy_exec_tty_resize(server: StreamServer, runtime: Any) -> None:
    url = server.get_exec(exec_req(["sh", "-c", "read line; stty size"], tty=True, stdin=True))
    conn, _ = await spdy.dial(url, [V4])
    try:
        err_s = await conn.open_stream({"streamType": "error"})
        in_s = await conn.open_stream({"streamType": "stdin"})
        out_s = await conn.open_stream({"streamType": "stdout"})
        rs = await conn.open_stream({"streamType": "resize"})
        await rs.write(TerminalSize(120, 33).to_json())
        await asyncio.wait_for(runtime.resized.wait(), 5)
        await in_s.write(b"go\r")
        out = await out_s.read_all()
        assert json.loads(await err_s.read_all())["status"] == "Success"
    finally:
        await conn.close()
    assert runtime.resizes == [TerminalSize(120, 33)]
    assert b"33 120" in out


async def test_spdy_protocol_negotiation_failure_is_403(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["true"]))
    with pytest.raises(spdy.UpgradeFailure) as info:
        await spdy.dial(url, ["v9.channel.k8s.io"])
    assert info.value.status == 403
    assert "v4.channel.k8s.io" in info.value.headers["x-accepted-stream-protocol-versions"]


async def test_spdy_without_protocol_header_is_400(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["true"]))
    with pytest.raises(spdy.UpgradeFailure) as info:
        await spdy.dial(url, [])
    assert info.value.status == 400


async def test_plain_get_without_upgrade_is_400(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["true"]))
    headers = {"X-Stream-Protocol-Version": V4}
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
        assert r.status == 400
        assert "upgrade" in await r.text()


@pytest.mark.parametrize("server_config", [Config(stream_creation_timeout=0.3)])
async def test_spdy_streams_not_created_in_time_close_the_connection(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["echo", "never"]))
    conn, _ = await spdy.dial(url, [V4])
    err_s = await conn.open_stream({"streamType": "error"})  # stdout and stderr never come
    await asyncio.wait_for(conn.wait_closed(), 5)
    assert await err_s.read_all() == b""
    await conn.close()


@pytest.mark.parametrize("server_config", [Config(stream_idle_timeout=0.3)])
async def test_spdy_idle_connection_is_closed(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["sleep", "5"]))
    conn, _ = await spdy.dial(url, [V4])
    for kind in ("error", "stdout", "stderr"):
        await conn.open_stream({"streamType": kind})
    await asyncio.wait_for(conn.wait_closed(), 4)


async def test_spdy_ping_is_answered(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["sleep", "1"]))
    conn, _ = await spdy.dial(url, [V4])
    try:
        assert await conn.ping(timeout=5) >= 0
    finally:
        await conn.close()


async def test_spdy_unknown_stream_type_is_refused(server: StreamServer) -> None:
    url = server.get_exec(exec_req(["true"]))
    conn, _ = await spdy.dial(url, [V4])
    try:
        with pytest.raises(spdy.StreamResetError):
            await conn.open_stream({"streamType": "bogus"})
    finally:
        await conn.close()


# -- SPDY port-forward ------------------------------------------------------------------------


async def test_spdy_port_forward_pairs_streams_by_request_id(
    server: StreamServer, echo_port: int
) -> None:
    url = server.get_port_forward(PortForwardRequest(pod_sandbox_id="pod1"))
    conn, proto = await spdy.dial(url, ["portforward.k8s.io"])
    try:
        assert proto == "portforward.k8s.io"

        async def one(request_id: int, payload: bytes) -> tuple[bytes, bytes]:
            hdr = {"port": str(echo_port), "requestID": str(request_id)}
            err_s = await conn.open_stream({**hdr, "streamType": "error"})
            await err_s.close()
            data_s = await conn.open_stream({**hdr, "streamType": "data"})
            await data_s.write(payload)
            await data_s.close()  # half-close: the echo server sees EOF and closes
            return await data_s.read_all(), await err_s.read_all()

        results = await asyncio.gather(one(0, b"first" * 1000), one(1, b"second"))
        assert results == [(b"first" * 1000, b""), (b"second", b"")]
    finally:
        await conn.close()


async def test_spdy_port_forward_error_goes_to_the_error_stream(
    server: StreamServer, closed_port: int
) -> None:
    url = server.get_port_forward(PortForwardRequest(pod_sandbox_id="pod1"))
    conn, _ = await spdy.dial(url, ["portforward.k8s.io"])
    try:
        hdr = {"port": str(closed_port), "requestID": "0"}
        err_s = await conn.open_stream({**hdr, "streamType": "error"})
        data_s = await conn.open_stream({**hdr, "streamType": "data"})
        msg = await asyncio.wait_for(err_s.read_all(), 10)
        assert msg.startswith(b"error forwarding port %d to pod pod1" % closed_port)
        assert await data_s.read_all() == b""
    finally:
        await conn.close()


async def test_spdy_port_forward_rejects_streams_without_a_port(server: StreamServer) -> None:
    url = server.get_port_forward(PortForwardRequest(pod_sandbox_id="pod1"))
    conn, _ = await spdy.dial(url, ["portforward.k8s.io"])
    try:
        with pytest.raises(spdy.StreamResetError):
            await conn.open_stream({"streamType": "data", "requestID": "0"})
        with pytest.raises(spdy.StreamResetError):
            await conn.open_stream({"streamType": "weird", "port": "80"})
    finally:
        await conn.close()


@pytest.mark.parametrize("server_config", [Config(stream_creation_timeout=0.3)])
async def test_spdy_port_forward_incomplete_pair_times_out(
    server: StreamServer, echo_port: int
) -> None:
    url = server.get_port_forward(PortForwardRequest(pod_sandbox_id="pod1"))
    conn, _ = await spdy.dial(url, ["portforward.k8s.io"])
    try:
        err_s = await conn.open_stream(
            {"streamType": "error", "port": str(echo_port), "requestID": "9"}
        )
        msg = await asyncio.wait_for(err_s.read_all(), 5)
        assert b"timed out waiting for streams" in msg
    finally:
        await conn.close()


async def test_spdy_port_forward_old_clients_without_request_ids(
    server: StreamServer, echo_port: int
) -> None:
    url = server.get_port_forward(PortForwardRequest(pod_sandbox_id="pod1"))
    conn, _ = await spdy.dial(url, ["portforward.k8s.io"])
    try:
        err_s = await conn.open_stream({"streamType": "error", "port": str(echo_port)})  # id 1
        data_s = await conn.open_stream({"streamType": "data", "port": str(echo_port)})  # id 3
        await data_s.write(b"legacy")
        await data_s.close()
        assert await data_s.read_all() == b"legacy"
        assert await err_s.read_all() == b""
    finally:
        await conn.close()


def test_frame_constants_match_spdy3() -> None:
    assert struct.unpack(">H", spdy.control_frame(spdy.FrameType.SETTINGS, 0, b"")[:2])[0] == 0x8003
