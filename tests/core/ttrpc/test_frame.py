from __future__ import annotations

import asyncio

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.ttrpc import frame
from pycontainerd.core.ttrpc.frame import (
    FLAG_NO_DATA,
    FLAG_REMOTE_CLOSED,
    FLAG_REMOTE_OPEN,
    MAX_MESSAGE_LENGTH,
    MessageType,
)


def test_header_is_ten_big_endian_bytes_length_id_type_flags() -> None:
    data = frame.encode_frame(
        0x01020305, MessageType.DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA, b"xyz"
    )
    assert data == b"\x00\x00\x00\x03" + b"\x01\x02\x03\x05" + b"\x03" + b"\x05" + b"xyz"
    assert frame.HEADER_LENGTH == 10


def test_message_types_and_flags_have_the_protocol_values() -> None:
    assert (MessageType.REQUEST, MessageType.RESPONSE, MessageType.DATA) == (1, 2, 3)
    assert (FLAG_REMOTE_CLOSED, FLAG_REMOTE_OPEN, FLAG_NO_DATA) == (1, 2, 4)


def test_decode_header_round_trips_and_rejects_short_input() -> None:
    h = frame.decode_header(frame.encode_header(7, 9, MessageType.REQUEST, FLAG_REMOTE_OPEN))
    assert (h.length, h.stream_id, h.type, h.flags) == (7, 9, 1, 2)
    assert h.has(FLAG_REMOTE_OPEN) and not h.has(FLAG_REMOTE_CLOSED)
    with pytest.raises(errdefs.InvalidArgument):
        frame.decode_header(b"\x00" * 9)


def test_first_byte_is_zero_at_the_maximum_length() -> None:
    data = frame.encode_header(MAX_MESSAGE_LENGTH, 1, MessageType.REQUEST)
    assert MAX_MESSAGE_LENGTH == 4 << 20
    assert data[0] == 0


def test_sender_refuses_a_payload_over_4_mib_with_resource_exhausted() -> None:
    assert len(frame.encode_frame(1, MessageType.DATA, 0, b"a" * MAX_MESSAGE_LENGTH)) == (
        MAX_MESSAGE_LENGTH + 10
    )
    with pytest.raises(frame.OversizedMessageError) as info:
        frame.encode_frame(1, MessageType.DATA, 0, b"a" * (MAX_MESSAGE_LENGTH + 1))
    err = info.value
    assert isinstance(err, errdefs.ResourceExhausted)
    assert err.code == errdefs.Code.RESOURCE_EXHAUSTED
    assert err.length == MAX_MESSAGE_LENGTH + 1 and err.maximum == MAX_MESSAGE_LENGTH
    assert str(err) == "message length 4194305 exceed maximum message size of 4194304"


def test_stream_id_must_fit_32_bits() -> None:
    with pytest.raises(errdefs.InvalidArgument):
        frame.encode_frame(1 << 32, MessageType.DATA, 0)


def _reader(data: bytes) -> asyncio.StreamReader:
    r = asyncio.StreamReader()
    r.feed_data(data)
    r.feed_eof()
    return r


async def test_read_frame_returns_header_and_payload_in_order() -> None:
    r = _reader(
        frame.encode_frame(1, MessageType.REQUEST, 0, b"abc")
        + frame.encode_frame(3, MessageType.DATA, FLAG_NO_DATA | FLAG_REMOTE_CLOSED)
    )
    h, p = await frame.read_frame(r)
    assert (h.stream_id, h.type, p) == (1, MessageType.REQUEST, b"abc")
    h, p = await frame.read_frame(r)
    assert (h.stream_id, h.type, h.flags, p) == (3, MessageType.DATA, 5, b"")
    with pytest.raises(asyncio.IncompleteReadError) as info:
        await frame.read_frame(r)
    assert info.value.partial == b""


async def test_read_frame_skips_an_oversized_payload_and_stays_in_sync() -> None:
    big = MAX_MESSAGE_LENGTH + 100
    data = frame.encode_header(big, 5, MessageType.DATA) + b"z" * big
    data += frame.encode_frame(7, MessageType.REQUEST, 0, b"next")
    r = _reader(data)
    with pytest.raises(frame.OversizedFrame) as info:
        await frame.read_frame(r)
    assert info.value.header.stream_id == 5 and info.value.header.length == big
    h, p = await frame.read_frame(r)
    assert (h.stream_id, p) == (7, b"next")


async def test_read_frame_reports_a_torn_frame() -> None:
    r = _reader(frame.encode_header(10, 1, MessageType.REQUEST) + b"short")
    with pytest.raises(asyncio.IncompleteReadError):
        await frame.read_frame(r)
