"""Compression of layer blobs: detection by magic bytes, streaming decompression and
compressing writers.

Supported: uncompressed, gzip (through :mod:`zlib`, which avoids the pure-Python framing of the
:mod:`gzip` module) and zstd (through the ``zstandard`` package, imported only when a zstd stream
is met). bzip2 and xz are recognised so that they are refused with a clear error instead of
being mistaken for an uncompressed tar.

Readers never hold more than a bounded amount of decompressed data in memory, whatever the
compression ratio of the input.
"""

from __future__ import annotations

import enum
import logging
import zlib
from typing import Any, BinaryIO, Protocol

from pycontainerd.core import errdefs

log = logging.getLogger(__name__)

#: How much compressed input is read from the source at a time.
READ_CHUNK = 1 << 20

_GZIP_MAGIC = b"\x1f\x8b\x08"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_SKIPPABLE_START = 0x184D2A50
_ZSTD_SKIPPABLE_MASK = 0xFFFFFFF0
_BZIP2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"

#: Bytes needed to tell every known format apart.
MAGIC_LEN = 6


class Compression(enum.Enum):
    """A compression format of a layer blob."""

    UNCOMPRESSED = "uncompressed"
    GZIP = "gzip"
    ZSTD = "zstd"
    BZIP2 = "bzip2"
    XZ = "xz"

    @property
    def extension(self) -> str:
        """The file name extension for the format ("" for uncompressed)."""
        return {
            Compression.UNCOMPRESSED: "",
            Compression.GZIP: "gz",
            Compression.ZSTD: "zst",
            Compression.BZIP2: "bz2",
            Compression.XZ: "xz",
        }[self]

    @property
    def supported(self) -> bool:
        """Whether streams in this format can be read and written here."""
        return self in (Compression.UNCOMPRESSED, Compression.GZIP, Compression.ZSTD)


def detect_compression(head: bytes) -> Compression:
    """The compression of a stream whose first bytes are ``head`` (at least
    :data:`MAGIC_LEN` bytes, fewer only when the stream is that short)."""
    if head.startswith(_GZIP_MAGIC):
        return Compression.GZIP
    if head.startswith(_ZSTD_MAGIC):
        return Compression.ZSTD
    if len(head) >= 4:
        magic = int.from_bytes(head[:4], "little")
        if magic & _ZSTD_SKIPPABLE_MASK == _ZSTD_SKIPPABLE_START:
            return Compression.ZSTD
    if head.startswith(_BZIP2_MAGIC):
        return Compression.BZIP2
    if head.startswith(_XZ_MAGIC):
        return Compression.XZ
    return Compression.UNCOMPRESSED


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise errdefs.NotImplemented_(
            'zstd compression needs the "zstandard" package, which is not installed'
        ) from exc
    return zstandard


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class _PrefixedReader:
    """A reader that returns ``prefix`` before the rest of ``raw``."""

    def __init__(self, prefix: bytes, raw: _Readable) -> None:
        self._prefix = prefix
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        if self._prefix:
            if n < 0 or n >= len(self._prefix):
                out, self._prefix = self._prefix, b""
                if n < 0:
                    return out + self._raw.read()
                return out
            out, self._prefix = self._prefix[:n], self._prefix[n:]
            return out
        return self._raw.read(n)


class DecompressReader:
    """A binary reader of the decompressed content of a stream.

    ``read(n)`` returns at most ``n`` bytes and ``b""`` only at the end. ``compressed_size``
    counts the bytes taken from the source so far. Closing it does not close the source.
    """

    def __init__(self, raw: _Readable, compression: Compression, head: bytes = b"") -> None:
        if not compression.supported:
            raise errdefs.InvalidArgument(
                f"unsupported layer compression {compression.value!r}: only gzip, zstd and "
                "uncompressed layers can be read"
            )
        self.compression = compression
        self.compressed_size = 0
        self._raw = raw
        self._pending = head
        self._closed = False
        self._eof = False
        self._zreader: Any = None
        self._gz: Any = None
        if compression is Compression.GZIP:
            self._gz = zlib.decompressobj(wbits=31)
            self._gz_started = False
        elif compression is Compression.ZSTD:
            zstandard = _zstandard()
            self._zreader = zstandard.ZstdDecompressor().stream_reader(
                _CountingReader(_PrefixedReader(head, raw), self),
                read_size=READ_CHUNK,
                read_across_frames=True,
                closefd=False,
            )
            self._pending = b""

    # -- file-like surface ---------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._zreader is not None and not self._closed:
            self._zreader.close()
        self._closed = True

    def __enter__(self) -> DecompressReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, n: int = -1) -> bytes:
        if self._closed:
            raise ValueError("read from a closed decompress reader")
        if n is None or n < 0:
            parts: list[bytes] = []
            while True:
                chunk = self.read(READ_CHUNK)
                if not chunk:
                    return b"".join(parts)
                parts.append(chunk)
        if n == 0 or self._eof:
            return b""
        if self.compression is Compression.UNCOMPRESSED:
            return self._read_plain(n)
        if self.compression is Compression.GZIP:
            try:
                return self._read_gzip(n)
            except zlib.error as exc:
                raise errdefs.InvalidArgument(f"invalid gzip stream: {exc}") from exc
        try:
            out: bytes = self._zreader.read(n)
        except _zstandard().ZstdError as exc:
            raise errdefs.InvalidArgument(f"invalid zstd stream: {exc}") from exc
        if not out:
            self._eof = True
        return out

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    # -- formats -----------------------------------------------------------------------

    def _take_raw(self, n: int) -> bytes:
        if self._pending:
            out, self._pending = self._pending, b""
            return out
        out = self._raw.read(n)
        self.compressed_size += len(out)
        return out

    def _read_plain(self, n: int) -> bytes:
        if self._pending:
            out, self._pending = self._pending[:n], self._pending[n:]
            return out
        out = self._raw.read(n)
        self.compressed_size += len(out)
        if not out:
            self._eof = True
        return out

    def _read_gzip(self, n: int) -> bytes:
        gz = self._gz
        while True:
            if gz.unconsumed_tail:
                out = gz.decompress(gz.unconsumed_tail, n)
            elif gz.eof:
                rest = gz.unused_data
                if not rest:
                    rest = self._take_raw(READ_CHUNK)
                if not rest:
                    self._eof = True
                    return b""
                # Concatenated gzip members (pigz and others write them) form one stream.
                gz = self._gz = zlib.decompressobj(wbits=31)
                out = gz.decompress(rest, n)
            else:
                data = self._take_raw(READ_CHUNK)
                if not data:
                    raise errdefs.DataLoss("gzip stream is truncated: unexpected end of data")
                out = gz.decompress(data, n)
            if out:
                return out

    def __iter__(self) -> Any:
        while True:
            chunk = self.read(READ_CHUNK)
            if not chunk:
                return
            yield chunk


class _CountingReader:
    def __init__(self, raw: _Readable, owner: DecompressReader) -> None:
        self._raw = raw
        self._owner = owner

    def read(self, n: int = -1) -> bytes:
        out = self._raw.read(n)
        self._owner.compressed_size += len(out)
        return out


def _read_head(raw: _Readable) -> bytes:
    head = b""
    while len(head) < MAGIC_LEN:
        more = raw.read(MAGIC_LEN - len(head))
        if not more:
            break
        head += more
    return head


def decompress_stream(raw: BinaryIO | _Readable) -> DecompressReader:
    """A reader of the decompressed content of ``raw``, whose format is detected from its
    first bytes. An empty stream reads as an empty uncompressed one. bzip2 and xz raise
    :class:`~pycontainerd.core.errdefs.InvalidArgument`."""
    head = _read_head(raw)
    compression = detect_compression(head)
    reader = DecompressReader(raw, compression, head)
    reader.compressed_size = len(head) if compression is not Compression.ZSTD else 0
    log.debug("detected layer compression %s", compression.value)
    return reader


class CompressWriter:
    """A binary writer that compresses into ``dest``. ``close()`` ends the compressed stream
    and flushes it to ``dest`` without closing ``dest``."""

    def __init__(self, dest: BinaryIO, compression: Compression, level: int | None = None) -> None:
        if not compression.supported:
            raise errdefs.InvalidArgument(
                f"unsupported compression {compression.value!r} for writing"
            )
        self.compression = compression
        self._dest = dest
        self._closed = False
        self._gz: Any = None
        self._zw: Any = None
        if compression is Compression.GZIP:
            lvl = zlib.Z_DEFAULT_COMPRESSION if level is None else level
            self._gz = zlib.compressobj(lvl, zlib.DEFLATED, 31)
        elif compression is Compression.ZSTD:
            zstandard = _zstandard()
            params = {} if level is None else {"level": level}
            self._zw = zstandard.ZstdCompressor(**params).stream_writer(
                dest, closefd=False, write_return_read=True
            )

    def writable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed compress writer")
        if self._gz is not None:
            out = self._gz.compress(data)
            if out:
                self._dest.write(out)
        elif self._zw is not None:
            self._zw.write(data)
        else:
            self._dest.write(data)
        return len(data)

    def flush(self) -> None:
        if self._zw is not None and not self._closed:
            self._zw.flush()
        self._dest.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._gz is not None:
            self._dest.write(self._gz.flush())
        elif self._zw is not None:
            self._zw.close()
        self._dest.flush()

    def __enter__(self) -> CompressWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compress_stream(
    dest: BinaryIO, compression: Compression, *, level: int | None = None
) -> CompressWriter:
    """A writer that compresses what is written to it into ``dest``."""
    return CompressWriter(dest, compression, level)
