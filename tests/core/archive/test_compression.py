"""Compression detection by magic bytes, streaming decompression, compressing writers."""

from __future__ import annotations

import gzip
import io
import os

import pytest
import zstandard

from pycontainerd.core import errdefs
from pycontainerd.core.archive.compression import (
    Compression,
    compress_stream,
    decompress_stream,
    detect_compression,
)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (gzip.compress(b"x")[:6], Compression.GZIP),
        (zstandard.ZstdCompressor().compress(b"x")[:6], Compression.ZSTD),
        (b"\x50\x2a\x4d\x18\x00\x00", Compression.ZSTD),  # skippable frame
        (b"BZh91A", Compression.BZIP2),
        (b"\xfd7zXZ\x00", Compression.XZ),
        (b"etc/\x00\x00", Compression.UNCOMPRESSED),
        (b"", Compression.UNCOMPRESSED),
    ],
)
def test_detect_compression_by_magic(head: bytes, expected: Compression) -> None:
    assert detect_compression(head) is expected


@pytest.mark.parametrize(
    "compression", [Compression.UNCOMPRESSED, Compression.GZIP, Compression.ZSTD]
)
def test_compress_then_decompress_round_trips(compression: Compression) -> None:
    data = os.urandom(300_000) + b"\0" * 2_000_000
    out = io.BytesIO()
    with compress_stream(out, compression) as w:
        w.write(data[:1000])
        w.write(data[1000:])
    assert not out.closed
    blob = out.getvalue()
    reader = decompress_stream(io.BytesIO(blob))
    assert reader.compression is compression
    assert reader.read() == data
    assert reader.compressed_size == len(blob)


def test_concatenated_gzip_members_read_as_one_stream() -> None:
    reader = decompress_stream(io.BytesIO(gzip.compress(b"abc") + gzip.compress(b"def")))
    assert reader.read() == b"abcdef"


def test_concatenated_zstd_frames_read_as_one_stream() -> None:
    c = zstandard.ZstdCompressor()
    reader = decompress_stream(io.BytesIO(c.compress(b"abc") + c.compress(b"def")))
    assert reader.read() == b"abcdef"


def test_reads_are_bounded_whatever_the_ratio() -> None:
    blob = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    reader = decompress_stream(io.BytesIO(blob))
    assert len(reader.read(4096)) <= 4096
    blob = zstandard.ZstdCompressor().compress(b"\0" * (64 << 20))
    reader = decompress_stream(io.BytesIO(blob))
    assert len(reader.read(4096)) <= 4096


def test_truncated_gzip_raises_data_loss() -> None:
    blob = gzip.compress(os.urandom(100_000))
    with pytest.raises(errdefs.DataLoss, match="truncated"):
        decompress_stream(io.BytesIO(blob[:-50])).read()


def test_corrupt_gzip_raises_invalid_argument() -> None:
    blob = bytearray(gzip.compress(os.urandom(100_000)))
    blob[100:200] = b"\xff" * 100
    with pytest.raises(errdefs.InvalidArgument, match="invalid gzip stream"):
        decompress_stream(io.BytesIO(bytes(blob))).read()


@pytest.mark.parametrize("magic", [b"BZh91AY&SY", b"\xfd7zXZ\x00\x00"])
def test_bzip2_and_xz_are_refused_naming_the_format(magic: bytes) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="bzip2|xz"):
        decompress_stream(io.BytesIO(magic + b"\0" * 64))


def test_short_reads_from_source_are_handled() -> None:
    class Trickle:
        def __init__(self, data: bytes) -> None:
            self._b = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self._b.read(min(n, 3) if n >= 0 else 3)

    blob = gzip.compress(b"hello world" * 100)
    reader = decompress_stream(Trickle(blob))
    assert reader.compression is Compression.GZIP
    assert reader.read() == b"hello world" * 100
