"""Byte streams over Any messages: Data chunks never exceed the granted window."""

from __future__ import annotations

import os

from pycontainerd.api.containerd.types.transfer import streaming_pb2 as tpb
from pycontainerd.core.transfer import streaming


async def test_send_and_receive_stream_round_trip_within_the_window():
    a, b = streaming.pipe()
    data = os.urandom(3 * streaming.WINDOW_SIZE + 12345)
    pos = 0

    async def read(n: int) -> bytes:
        nonlocal pos
        chunk = data[pos : pos + n]
        pos += len(chunk)
        return chunk

    import asyncio

    sender = asyncio.ensure_future(streaming.send_stream(read, a))
    got = b"".join([c async for c in streaming.receive_stream(b, window=64 << 10)])
    assert await sender == len(data)
    assert got == data


def test_pack_and_unpack_use_containerd_type_urls():
    a = streaming.pack(tpb.WindowUpdate(update=5))
    assert a.type_url == "containerd.types.transfer.WindowUpdate"
    assert streaming.unpack_as(a, tpb.WindowUpdate).update == 5
