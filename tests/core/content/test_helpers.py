from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.content import Descriptor, digests, helpers
from pycontainerd.plugins.content.local.store import LocalStore, MemoryLabelStore


@pytest.fixture
async def store(tmp_path) -> LocalStore:
    return await LocalStore.open(str(tmp_path), MemoryLabelStore())


async def _chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for off in range(0, len(data), size):
        yield data[off : off + size]


async def test_write_blob_then_read_blob_round_trips_with_labels(store) -> None:
    data = b"manifest bytes"
    dgst = digests.from_bytes(data)
    await helpers.write_blob(store, "ref", data, dgst, {"containerd.io/gc.root": "x"})
    assert await helpers.read_blob(store, Descriptor(digest=dgst, size=len(data))) == data
    assert (await store.info(dgst)).labels == {"containerd.io/gc.root": "x"}


async def test_write_blob_of_existing_content_succeeds(store) -> None:
    dgst = digests.from_bytes(b"same")
    await helpers.write_blob(store, "one", b"same", dgst)
    await helpers.write_blob(store, "two", b"same", dgst)
    assert await store.list_statuses() == []


async def test_write_blob_with_wrong_expected_is_failed_precondition(store) -> None:
    with pytest.raises(errdefs.FailedPrecondition):
        await helpers.write_blob(store, "bad", b"data", digests.from_bytes(b"other"))
    with pytest.raises(errdefs.InvalidArgument):
        await helpers.write_blob(store, "bad", b"data", "sha256:short")


async def test_write_blob_resumes_matching_partial_ingest(store) -> None:
    data = b"0123456789" * 10
    w = await store.writer("res", total=len(data))
    await w.write(data[:40])
    await w.close()
    await helpers.write_blob(store, "res", data, digests.from_bytes(data))
    assert await helpers.read_blob(store, Descriptor(digest=digests.from_bytes(data))) == data


async def test_write_blob_starts_over_when_partial_ingest_differs(store) -> None:
    data = b"0123456789" * 10
    w = await store.writer("res")
    await w.write(b"not the same prefix")
    await w.close()
    await helpers.write_blob(store, "res", data, digests.from_bytes(data))
    assert await helpers.read_blob(store, Descriptor(digest=digests.from_bytes(data))) == data


async def test_open_writer_waits_for_busy_ref(store) -> None:
    held = await store.writer("busy")

    async def release() -> None:
        await asyncio.sleep(0.05)
        await held.close()

    task = asyncio.create_task(release())
    w = await helpers.open_writer(store, "busy", timeout=5)
    await w.close()
    await task


async def test_open_writer_gives_up_after_timeout(store) -> None:
    held = await store.writer("busy")
    with pytest.raises(errdefs.Unavailable):
        await helpers.open_writer(store, "busy", timeout=0.05)
    await held.close()


async def test_read_blob_refuses_size_mismatch_and_oversize(store) -> None:
    data = b"x" * 100
    dgst = digests.from_bytes(data)
    await helpers.write_blob(store, "r", data, dgst)
    with pytest.raises(errdefs.FailedPrecondition, match="does not match"):
        await helpers.read_blob(store, Descriptor(digest=dgst, size=99))
    with pytest.raises(errdefs.ResourceExhausted):
        await helpers.read_blob(store, Descriptor(digest=dgst), max_size=50)
    with pytest.raises(errdefs.ResourceExhausted):
        await helpers.read_blob(store, Descriptor(digest=dgst, size=100), max_size=50)
    with pytest.raises(errdefs.NotFound):
        await helpers.read_blob(store, Descriptor(digest=digests.from_bytes(b"absent")))


async def test_read_blob_verify_detects_corrupted_blob(store, tmp_path) -> None:
    data = b"good data"
    dgst = digests.from_bytes(data)
    await helpers.write_blob(store, "r", data, dgst)
    path = tmp_path / "blobs" / "sha256" / dgst.split(":")[1]
    path.chmod(0o644)
    path.write_bytes(b"bad! data")
    assert await helpers.read_blob(store, Descriptor(digest=dgst)) == b"bad! data"
    with pytest.raises(errdefs.DataLoss):
        await helpers.read_blob(store, Descriptor(digest=dgst), verify=True)


async def test_read_chunks_streams_a_range(store) -> None:
    data = bytes(range(200))
    dgst = digests.from_bytes(data)
    await helpers.write_blob(store, "r", data, dgst)
    desc = Descriptor(digest=dgst)
    got = [c async for c in helpers.read_chunks(store, desc, offset=10, size=50, chunk_size=16)]
    assert [len(c) for c in got] == [16, 16, 16, 2]
    assert b"".join(got) == data[10:60]
    assert b"".join([c async for c in helpers.read_chunks(store, desc, offset=190)]) == data[190:]
    assert [c async for c in helpers.read_chunks(store, desc, offset=200)] == []
    with pytest.raises(errdefs.OutOfRange):
        [c async for c in helpers.read_chunks(store, desc, offset=201)]


async def test_copy_commits_stream_with_expected_digest(store) -> None:
    data = b"stream of layer bytes" * 50
    dgst = digests.from_bytes(data)
    w = await store.writer("copy", total=len(data))
    await helpers.copy(w, _chunks(data), size=len(data), expected=dgst, labels={"a": "b"})
    assert (await store.info(dgst)).labels == {"a": "b"}


async def test_copy_resumes_a_resumable_source_from_the_ingest_offset(store) -> None:
    data = b"abcdefghij" * 30
    dgst = digests.from_bytes(data)
    w = await store.writer("copy", total=len(data))
    await w.write(data[:123])
    await w.close()
    offsets: list[int] = []

    def source(offset: int) -> AsyncIterator[bytes]:
        offsets.append(offset)
        return _chunks(data[offset:])

    w = await store.writer("copy", total=len(data))
    await helpers.copy(w, source, size=len(data), expected=dgst)
    assert offsets == [123]
    assert await helpers.read_blob(store, Descriptor(digest=dgst)) == data


async def test_copy_restarts_ingest_for_a_plain_iterable(store) -> None:
    data = b"abcdefghij" * 30
    dgst = digests.from_bytes(data)
    w = await store.writer("copy")
    await w.write(b"junk")
    await w.close()
    w = await store.writer("copy")
    await helpers.copy(w, _chunks(data), size=len(data), expected=dgst)
    assert await helpers.read_blob(store, Descriptor(digest=dgst)) == data


async def test_copy_of_existing_content_succeeds_and_failure_keeps_ingest(store) -> None:
    data = b"dup"
    dgst = digests.from_bytes(data)
    await helpers.write_blob(store, "first", data, dgst)
    w = await store.writer("second")
    await helpers.copy(w, _chunks(data), size=3, expected=dgst)
    assert await store.list_statuses() == []

    async def failing() -> AsyncIterator[bytes]:
        yield b"part"
        raise ConnectionError("fetch interrupted")

    w = await store.writer("third")
    with pytest.raises(ConnectionError):
        await helpers.copy(w, failing(), size=100)
    assert (await store.status("third")).offset == 4
    # the writer was closed: the ref can be opened again
    w = await store.writer("third")
    await w.close()
