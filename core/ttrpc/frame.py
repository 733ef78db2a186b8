"""ttrpc framing: a 10-byte big-endian header, then at most 4 MiB of data.

``| length u32 | stream id u32 | type u8 | flags u8 | data ... |``

The length excludes the header. Readers discard an oversized payload (the stream is answered
with RESOURCE_EXHAUSTED by the caller); writers refuse to produce one.
"""

from __future__ import annotations

import asyncio
import enum
import struct

import attrs

from pycontainerd.core import errdefs

HEADER_LENGTH = 10
MAX_MESSAGE_LENGTH = 4 << 20

_HEADER = struct.Struct(">IIBB")


class MessageType(enum.IntEnum):
    REQUEST = 0x01
    RESPONSE = 0x02
    DATA = 0x03


#: Request: no more data will follow from the sender. Data: the sender's last frame.
FLAG_REMOTE_CLOSED = 0x01
#: Request only: the sender will stream Data frames after the request.
FLAG_REMOTE_OPEN = 0x02
#: Data only: the frame carries no message (as opposed to an empty one).
FLAG_NO_DATA = 0x04


class OversizedMessageError(errdefs.ResourceExhausted):
    """A message longer than :data:`MAX_MESSAGE_LENGTH`; raised before anything is sent."""

    def __init__(self, length: int, maximum: int = MAX_MESSAGE_LENGTH) -> None:
        super().__init__(f"message length {length} exceed maximum message size of {maximum}")
        self.length = length
        self.maximum = maximum


class OversizedFrame(Exception):
    """Raised by :func:`read_frame` after an oversized payload was skipped; the connection is
    still in sync and ``header`` tells which stream to answer."""

    def __init__(self, header: FrameHeader) -> None:
        super().__init__(
            f"message length {header.length} exceed maximum message size of {MAX_MESSAGE_LENGTH}"
        )
        self.header = header


@attrs.frozen
class FrameHeader:
    length: int
    stream_id: int
    type: int
    flags: int = 0

    def has(self, flag: int) -> bool:
        return self.flags & flag == flag


def encode_header(length: int, stream_id: int, type_: int, flags: int = 0) -> bytes:
    return _HEADER.pack(length, stream_id, type_, flags)


def decode_header(data: bytes) -> FrameHeader:
    if len(data) != HEADER_LENGTH:
        raise errdefs.InvalidArgument(
            f"ttrpc frame header must be {HEADER_LENGTH} bytes, got {len(data)}"
        )
    length, stream_id, type_, flags = _HEADER.unpack(data)
    return FrameHeader(length=length, stream_id=stream_id, type=type_, flags=flags)


def check_length(length: int) -> None:
    if length > MAX_MESSAGE_LENGTH:
        raise OversizedMessageError(length)


def encode_frame(stream_id: int, type_: int, flags: int, payload: bytes = b"") -> bytes:
    """One whole frame; OversizedMessageError when the payload is too long to send."""
    check_length(len(payload))
    if not 0 <= stream_id <= 0xFFFFFFFF:
        raise errdefs.InvalidArgument(f"ttrpc stream id {stream_id} out of range")
    return encode_header(len(payload), stream_id, type_, flags) + payload


_DISCARD_CHUNK = 64 << 10


async def read_frame(reader: asyncio.StreamReader) -> tuple[FrameHeader, bytes]:
    """The next frame. ``asyncio.IncompleteReadError`` at end of stream (``partial`` empty
    when the peer closed cleanly between frames); :class:`OversizedFrame` when the payload was
    too long and has been skipped."""
    header = decode_header(await reader.readexactly(HEADER_LENGTH))
    if header.length > MAX_MESSAGE_LENGTH:
        remaining = header.length
        while remaining:
            chunk = await reader.read(min(remaining, _DISCARD_CHUNK))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= len(chunk)
        raise OversizedFrame(header)
    payload = await reader.readexactly(header.length) if header.length else b""
    return header, payload
