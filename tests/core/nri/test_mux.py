"""The NRI multiplexer: wire format as containerd/nri writes it, and ttrpc over it."""

from __future__ import annotations

import asyncio
import socket
import struct

from google.protobuf import wrappers_pb2

from pycontainerd.core.nri import mux
from pycontainerd.core.ttrpc import Client, Server
from pycontainerd.core.ttrpc import service as svc


def test_header_is_conn_id_then_length_big_endian():
    assert mux.encode(2, b"abc") == b"\x00\x00\x00\x02\x00\x00\x00\x03abc"
    assert mux.PLUGIN_SERVICE_CONN == 1 and mux.RUNTIME_SERVICE_CONN == 2
    assert mux.MAX_PAYLOAD == 10 + 4 * 1024 * 1024


def test_large_writes_are_split_into_max_payload_chunks():
    data = bytes(range(256)) * 40  # 10240 bytes
    out = mux.encode(7, data, max_payload=4096)
    chunks, pos = [], 0
    while pos < len(out):
        cid, n = struct.unpack(">II", out[pos : pos + 8])
        chunks.append((cid, out[pos + 8 : pos + 8 + n]))
        pos += 8 + n
    assert [len(c) for _, c in chunks] == [4096, 4096, 2048]
    assert {cid for cid, _ in chunks} == {7}
    assert b"".join(c for _, c in chunks) == data


async def _pair() -> tuple[mux.Mux, mux.Mux]:
    a, b = socket.socketpair()
    return await mux.Mux.from_socket(a), await mux.Mux.from_socket(b)


async def test_logical_connections_are_independent_byte_streams():
    left, right = await _pair()
    l1, l2 = left.open(1), left.open(2)
    r1, r2 = right.open(1), right.open(2)
    left.start()
    right.start()
    l1[1].write(b"hello ")
    l2[1].write(b"two")
    l1[1].write(b"world")
    assert await r1[0].readexactly(11) == b"hello world"
    assert await r2[0].readexactly(3) == b"two"
    r2[1].write(b"back")
    assert await l2[0].readexactly(4) == b"back"
    await left.close()
    assert await r1[0].read() == b""  # peer gone: EOF on every logical connection
    await right.close()


async def test_chunks_for_unopened_conn_ids_are_dropped():
    a, b = socket.socketpair()
    right = await mux.Mux.from_socket(b)
    r1 = right.open(1)
    right.start()
    a.setblocking(True)
    a.sendall(mux.encode(9, b"nobody listens") + mux.encode(1, b"ok"))
    assert await asyncio.wait_for(r1[0].readexactly(2), 5) == b"ok"
    a.close()
    await right.close()


async def test_raw_frames_from_a_peer_split_mid_message_are_reassembled():
    a, b = socket.socketpair()
    right = await mux.Mux.from_socket(b)
    r1 = right.open(1)
    right.start()
    a.setblocking(True)
    # one ttrpc-sized message written as three chunks, as Go's mux does past MAX_PAYLOAD
    a.sendall(mux.encode(1, b"0123456789abcdef", max_payload=5))
    assert await asyncio.wait_for(r1[0].readexactly(16), 5) == b"0123456789abcdef"
    a.close()
    await right.close()


async def test_ttrpc_both_ways_over_one_multiplexed_socket():
    left, right = await _pair()

    async def upper(req: wrappers_pb2.StringValue) -> wrappers_pb2.StringValue:
        return wrappers_pb2.StringValue(value=req.value.upper())

    async def lower(req: wrappers_pb2.StringValue) -> wrappers_pb2.StringValue:
        return wrappers_pb2.StringValue(value=req.value.lower())

    # conn 1: right serves, left calls; conn 2: left serves, right calls (as NRI does)
    s_right, s_left = Server(require_same_user=False), Server(require_same_user=False)
    s_right.register("t.Up", {"Do": svc.unary(upper, wrappers_pb2.StringValue)})
    s_left.register("t.Down", {"Do": svc.unary(lower, wrappers_pb2.StringValue)})
    tasks = [
        asyncio.create_task(s_right.serve_connection(*right.open(1))),
        asyncio.create_task(s_left.serve_connection(*left.open(2))),
    ]
    c_left, c_right = Client(*left.open(1)), Client(*right.open(2))
    left.start()
    right.start()
    S = wrappers_pb2.StringValue
    results = await asyncio.gather(
        *(c_left.call("t.Up", "Do", S(value=f"a{i}"), S, timeout=5) for i in range(20)),
        *(c_right.call("t.Down", "Do", S(value=f"B{i}"), S, timeout=5) for i in range(20)),
    )
    assert [r.value for r in results[:20]] == [f"A{i}" for i in range(20)]
    assert [r.value for r in results[20:]] == [f"b{i}" for i in range(20)]
    big = "x" * (3 << 20)  # far beyond a socket buffer, within ttrpc's 4 MiB limit
    assert (await c_left.call("t.Up", "Do", S(value=big), S, timeout=10)).value == big.upper()
    await c_left.close()
    await c_right.close()
    await left.close()
    await right.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
