"""Helpers over the content contract that many callers need: read a whole blob, stream one,
write one (idempotently), open a writer waiting for a busy ref, copy a stream in."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping

from pycontainerd.core import errdefs
from pycontainerd.core.content import digests
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.content.types import Ingester, Provider, ReaderAt, Writer

log = logging.getLogger(__name__)

#: Largest blob :func:`read_blob` loads into memory unless told otherwise.
DEFAULT_MAX_BLOB_SIZE = 64 << 20
#: Default read and copy chunk size.
CHUNK_SIZE = 1 << 20

_RETRY_START = 0.01
_RETRY_MAX = 1.0

#: A source for :func:`copy`: an async iterable of chunks, or a function that gives the
#: chunks from a byte offset on (so an interrupted ingest is resumed, not restarted).
Source = AsyncIterable[bytes] | Callable[[int], AsyncIterable[bytes]]


async def read_all(ra: ReaderAt, *, chunk_size: int = CHUNK_SIZE) -> bytes:
    """Every byte of an open reader."""
    parts: list[bytes] = []
    offset = 0
    while offset < ra.size:
        chunk = await ra.read_at(offset, min(chunk_size, ra.size - offset))
        if not chunk:
            break
        parts.append(chunk)
        offset += len(chunk)
    if offset != ra.size:
        raise errdefs.DataLoss(f"short read: got {offset} of {ra.size} bytes")
    return b"".join(parts)


async def read_blob(
    provider: Provider,
    desc: Descriptor,
    *,
    max_size: int | None = DEFAULT_MAX_BLOB_SIZE,
    verify: bool = False,
) -> bytes:
    """The whole blob ``desc.digest``.

    The stored size must equal ``desc.size`` when that is set (else FailedPrecondition), and
    be at most ``max_size`` (else ResourceExhausted). With ``verify`` the bytes are hashed and
    compared with the digest (DataLoss on mismatch)."""
    digests.validate(desc.digest)
    if max_size is not None and desc.size > max_size:
        raise errdefs.ResourceExhausted(
            f"blob {desc.digest}: size {desc.size} exceeds limit {max_size}"
        )
    ra = await provider.reader_at(desc)
    try:
        if desc.size > 0 and ra.size != desc.size:
            raise errdefs.FailedPrecondition(
                f"blob {desc.digest}: stored size {ra.size} does not match expected {desc.size}"
            )
        if max_size is not None and ra.size > max_size:
            raise errdefs.ResourceExhausted(
                f"blob {desc.digest}: size {ra.size} exceeds limit {max_size}"
            )
        data = await read_all(ra)
    finally:
        await ra.close()
    if verify:
        alg = digests.algorithm(desc.digest)
        actual = await asyncio.to_thread(digests.from_bytes, data, alg)
        if actual != desc.digest:
            raise errdefs.DataLoss(f"blob {desc.digest}: content has digest {actual}")
    return data


async def read_chunks(
    provider: Provider,
    desc: Descriptor,
    *,
    offset: int = 0,
    size: int = 0,
    chunk_size: int = CHUNK_SIZE,
) -> AsyncIterator[bytes]:
    """Stream ``size`` bytes (0: to the end) of a blob from ``offset``, as the Read API does."""
    if offset < 0 or size < 0:
        raise errdefs.InvalidArgument(f"invalid read of {size} bytes at offset {offset}")
    ra = await provider.reader_at(desc)
    try:
        if offset > ra.size:
            raise errdefs.OutOfRange(f"blob {desc.digest}: offset {offset} past size {ra.size}")
        end = ra.size if size == 0 else min(ra.size, offset + size)
        while offset < end:
            chunk = await ra.read_at(offset, min(chunk_size, end - offset))
            if not chunk:
                raise errdefs.DataLoss(f"blob {desc.digest}: short read at offset {offset}")
            offset += len(chunk)
            yield chunk
    finally:
        await ra.close()


async def open_writer(
    ingester: Ingester,
    ref: str,
    *,
    total: int = 0,
    expected: str = "",
    timeout: float | None = None,
) -> Writer:
    """Open a writer, waiting (with backoff) while another writer holds ``ref``.

    Waits until ``timeout`` seconds have passed (None: until cancelled), then raises the
    last Unavailable. AlreadyExists (``expected`` is committed) is raised at once."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    delay = _RETRY_START
    while True:
        try:
            return await ingester.writer(ref, total=total, expected=expected)
        except errdefs.Unavailable:
            if deadline is not None and loop.time() + delay > deadline:
                raise
            log.debug("content ref %s busy; retrying in %.3fs", ref, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)


async def write_blob(
    ingester: Ingester,
    ref: str,
    data: bytes,
    expected: str,
    labels: Mapping[str, str] | None = None,
    *,
    timeout: float | None = None,
) -> None:
    """Write ``data`` as the blob ``expected`` and commit it; content already present counts
    as success. An interrupted ingest of the same ref is resumed when its bytes agree with
    ``data``, else started over."""
    digests.validate(expected)
    try:
        w = await open_writer(ingester, ref, total=len(data), expected=expected, timeout=timeout)
    except errdefs.AlreadyExists:
        return
    try:
        offset = w.status().offset
        if offset > 0:
            alg = digests.algorithm(expected)
            prefix = await asyncio.to_thread(digests.from_bytes, memoryview(data)[:offset], alg)
            if offset > len(data) or prefix != w.digest():
                await w.truncate(0)
                offset = 0
        view = memoryview(data)
        while offset < len(data):
            offset += await w.write(view[offset : offset + CHUNK_SIZE])
        await w.commit(len(data), expected, labels)
    except errdefs.AlreadyExists:
        return
    finally:
        await w.close()


async def copy(
    writer: Writer,
    source: Source,
    *,
    size: int = 0,
    expected: str = "",
    labels: Mapping[str, str] | None = None,
) -> None:
    """Write ``source`` into ``writer`` and commit with ``size``/``expected``.

    When the writer already holds data (a resumed ingest), a callable source is asked for the
    bytes from that offset; a plain iterable restarts the ingest from zero. AlreadyExists at
    commit counts as success. On any other error the writer is closed, keeping the ingest
    for a later resume."""
    try:
        offset = writer.status().offset
        if size > 0 and offset > size:
            await writer.truncate(0)
            offset = 0
        if callable(source):
            chunks = source(offset)
        else:
            if offset > 0:
                await writer.truncate(0)
            chunks = source
        async for chunk in chunks:
            if chunk:
                await writer.write(chunk)
        await writer.commit(size, expected, labels)
    except errdefs.AlreadyExists:
        return
    finally:
        await writer.close()
