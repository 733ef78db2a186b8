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


def test_a_large_message_goes_out_as_go_ttrpc_writes_it():
    data = b"h" * 10 + b"p" * 9000
    out = mux.encode(1, data)
    first = struct.unpack(">II", out[:8])
    second = struct.unpack(">II", out[8 + 4096 : 16 + 4096])
    assert first == (1, 4096) and second == (1, len(data) - 4096)
    assert len(out) == 16 + len(data)


class _GoConn:
    """Go's multiplexed conn: one whole chunk per Read, ENOMEM if the buffer is smaller."""

    def __init__(self, trunk: bytes) -> None:
        self.chunks, pos = [], 0
        while pos < len(trunk):
            _, n = struct.unpack(">II", trunk[pos : pos + 8])
            self.chunks.append(trunk[pos + 8 : pos + 8 + n])
            pos += 8 + n

    def read(self, cap: int) -> bytes:
        chunk = self.chunks.pop(0)
        if len(chunk) > cap:
            raise MemoryError("cannot allocate memory")
        return chunk


def _go_bufio_read_full(conn: _GoConn, buf: bytearray, n: int, size: int = 4096) -> bytes:
    """io.ReadFull through Go's bufio.Reader (size 4096) over ``conn``."""
    out = bytearray()
    while len(out) < n:
        want = n - len(out)
        if buf:
            take = bytes(buf[:want])
            del buf[: len(take)]
            out += take
        elif want >= size:  # bufio reads large requests straight into the caller's buffer
            out += conn.read(want)
        else:
            buf += conn.read(size)
    return bytes(out)


def test_go_ttrpc_reader_can_read_every_message_size_we_send():
    for size in (0, 1, 4086, 4087, 5000, 8182, 8192, 100_000, 4 << 20):
        msg = struct.pack(">IIBB", size, 1, 1, 0) + b"x" * size
        conn, buf = _GoConn(mux.encode(1, msg) + mux.encode(1, msg)), bytearray()
        for _ in range(2):
            header = _go_bufio_read_full(conn, buf, 10)
            assert struct.unpack(">I", header[:4])[0] == size
            assert _go_bufio_read_full(conn, buf, size) == b"x" * size
        assert not conn.chunks and not buf


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
