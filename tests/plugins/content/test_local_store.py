"""Behaviour of the local store beyond the shared conformance suite: the on-disk layout,
locking across store instances, crash leftovers, labels without a label store."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import stat

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.content import Descriptor, Info, digests
from pycontainerd.plugins.content.local.store import LocalStore, MemoryLabelStore, _parse_ts


def _ingest_dir(root: str, ref: str) -> str:
    return os.path.join(root, "ingest", hashlib.sha256(ref.encode()).hexdigest())


async def test_committed_blob_lives_under_blobs_algorithm_hex_and_is_read_only(tmp_path) -> None:
    store = await LocalStore.open(str(tmp_path))
    w = await store.writer("ref")
    await w.write(b"content")
    await w.commit()
    dgst = digests.from_bytes(b"content")
    path = tmp_path / "blobs" / "sha256" / dgst.split(":")[1]
    assert path.read_bytes() == b"content"
    assert stat.S_IMODE(path.stat().st_mode) & 0o333 == 0
    assert os.listdir(tmp_path / "ingest") == []


async def test_ingest_directory_holds_ref_data_timestamps_and_total(tmp_path) -> None:
    store = await LocalStore.open(str(tmp_path))
    w = await store.writer("docker.io/library/x:layer-1", total=42)
    await w.write(b"partial")
    await w.close()
    d = _ingest_dir(str(tmp_path), "docker.io/library/x:layer-1")
    assert sorted(os.listdir(d)) == ["data", "ref", "startedat", "total", "updatedat"]
    with open(os.path.join(d, "ref")) as f:
        assert f.read() == "docker.io/library/x:layer-1"
    with open(os.path.join(d, "data"), "rb") as f:
        assert f.read() == b"partial"
    with open(os.path.join(d, "total")) as f:
        assert f.read() == "42"
    with open(os.path.join(d, "startedat")) as f:
        text = f.read()
    assert text.endswith("Z")
    assert _parse_ts(text) == (await store.status("docker.io/library/x:layer-1")).started_at


def test_timestamps_written_by_containerd_with_nanoseconds_and_offsets_parse() -> None:
    t = _parse_ts("2024-05-06T07:08:09.123456789Z")
    assert (t.year, t.second, t.microsecond) == (2024, 9, 123456)
    assert _parse_ts("2024-05-06T09:08:09+02:00") == _parse_ts("2024-05-06T07:08:09Z")
    with pytest.raises(errdefs.DataLoss):
        _parse_ts("yesterday")


async def test_second_store_instance_cannot_open_a_ref_held_by_another(tmp_path) -> None:
    first = await LocalStore.open(str(tmp_path))
    second = await LocalStore.open(str(tmp_path))
    w = await first.writer("shared")
    await w.write(b"abc")
    with pytest.raises(errdefs.Unavailable, match="locked"):
        await second.writer("shared")
    await w.close()
    w2 = await second.writer("shared")
    assert w2.status().offset == 3
    await w2.close()


async def test_locked_ref_message_names_the_ref(tmp_path) -> None:
    store = await LocalStore.open(str(tmp_path))
    w = await store.writer("my-ref")
    with pytest.raises(errdefs.Unavailable, match=r"ref my-ref locked for .* \(since "):
        await store.writer("my-ref")
    await w.close()


async def test_open_removes_ingest_directories_without_data(tmp_path) -> None:
    store = await LocalStore.open(str(tmp_path))
    d = _ingest_dir(str(tmp_path), "crashed")
    os.makedirs(d)
    with open(os.path.join(d, "ref"), "w") as f:
        f.write("crashed")
    await LocalStore.open(str(tmp_path))
    assert not os.path.exists(d)
    assert await store.list_statuses() == []


async def test_writer_starts_over_when_ingest_files_are_damaged(tmp_path) -> None:
    store = await LocalStore.open(str(tmp_path))
    w = await store.writer("damaged")
    await w.write(b"old bytes")
    await w.close()
    os.unlink(os.path.join(_ingest_dir(str(tmp_path), "damaged"), "startedat"))
    w = await store.writer("damaged")
    assert w.status().offset == 0
    await w.write(b"new")
    await w.commit(3, digests.from_bytes(b"new"))


async def test_writer_starts_over_when_total_changes(tmp_path) -> None:
    store = await LocalStore.open(str(tmp_path))
    w = await store.writer("t", total=10)
    await w.write(b"12345")
    await w.close()
    w = await store.writer("t", total=20)
    assert (w.status().offset, w.status().total) == (0, 20)
    await w.close()


async def test_resume_records_total_given_later(tmp_path) -> None:
    store = await LocalStore.open(str(tmp_path))
    w = await store.writer("t")
    await w.write(b"12345")
    await w.close()
    w = await store.writer("t", total=10)
    assert (w.status().offset, w.status().total) == (5, 10)
    await w.close()
    assert (await store.status("t")).total == 10


async def test_failed_commit_keeps_ingest_for_resume(tmp_path) -> None:
    store = await LocalStore.open(str(tmp_path))
    w = await store.writer("keep")
    await w.write(b"abc")
    with pytest.raises(errdefs.FailedPrecondition, match="unexpected commit size 3, expected 4"):
        await w.commit(4)
    assert (await store.status("keep")).offset == 3


async def test_expected_digest_with_other_algorithm_hashes_with_it(tmp_path) -> None:
    store = await LocalStore.open(str(tmp_path))
    dgst = digests.from_bytes(b"x" * 1000, "sha512")
    w = await store.writer("five-twelve", expected=dgst)
    await w.write(b"x" * 1000)
    assert w.digest() == dgst
    await w.commit(1000, dgst)
    assert (tmp_path / "blobs" / "sha512" / dgst.split(":")[1]).exists()
    assert (await store.info(dgst)).size == 1000


async def test_commit_rehashes_when_expected_algorithm_differs_from_writer(tmp_path) -> None:
    store = await LocalStore.open(str(tmp_path))
    dgst = digests.from_bytes(b"y" * 10, "sha384")
    w = await store.writer("rehash")
    await w.write(b"y" * 10)
    await w.commit(10, dgst)
    assert (await store.info(dgst)).size == 10


async def test_without_label_store_commit_labels_are_dropped_and_update_refused(
    tmp_path,
) -> None:
    store = await LocalStore.open(str(tmp_path))
    w = await store.writer("l")
    await w.write(b"l")
    await w.commit(labels={"a": "b"})
    dgst = digests.from_bytes(b"l")
    assert (await store.info(dgst)).labels == {}
    with pytest.raises(errdefs.FailedPrecondition, match="update not supported"):
        await store.update(Info(digest=dgst, labels={"a": "b"}))


async def test_delete_drops_labels(tmp_path) -> None:
    labels = MemoryLabelStore()
    store = await LocalStore.open(str(tmp_path), labels)
    w = await store.writer("l")
    await w.write(b"l")
    await w.commit(labels={"a": "b"})
    dgst = digests.from_bytes(b"l")
    await store.delete(dgst)
    assert labels.get(dgst) == {}


async def test_update_sets_updated_at_and_keeps_created_at(tmp_path) -> None:
    store = await LocalStore.open(str(tmp_path), MemoryLabelStore())
    w = await store.writer("u")
    await w.write(b"u")
    await w.commit()
    dgst = digests.from_bytes(b"u")
    before = await store.info(dgst)
    updated = await store.update(Info(digest=dgst, labels={"k": "v"}))
    assert updated.created_at == before.created_at
    assert updated.updated_at >= before.updated_at
    after = await store.info(dgst)
    assert after.labels == {"k": "v"}
    assert after.created_at == before.created_at


async def test_walk_and_list_statuses_filters(tmp_path) -> None:
    store = await LocalStore.open(str(tmp_path), MemoryLabelStore())
    for i, label in enumerate(("a", "b")):
        w = await store.writer(f"w{i}")
        await w.write(label.encode())
        await w.commit(labels={"kind": label})
    got = [i.digest async for i in store.walk(["labels.kind==b"])]
    assert got == [digests.from_bytes(b"b")]
    with pytest.raises(errdefs.InvalidArgument):
        [i async for i in store.walk(["labels.=="])]
    with pytest.raises(errdefs.InvalidArgument):
        await store.list_statuses(["ref=="])


async def test_walk_ignores_unknown_algorithm_dirs_and_stray_files(tmp_path) -> None:
    store = await LocalStore.open(str(tmp_path))
    (tmp_path / "blobs" / "md5").mkdir()
    (tmp_path / "blobs" / "md5" / "abc").write_bytes(b"")
    (tmp_path / "blobs" / "sha256").mkdir()
    (tmp_path / "blobs" / "sha256" / "not-a-digest").write_bytes(b"")
    assert [i async for i in store.walk()] == []


async def test_reader_at_reports_size_and_reads_concurrently(tmp_path) -> None:
    store = await LocalStore.open(str(tmp_path))
    data = bytes(range(256)) * 100
    w = await store.writer("r")
    await w.write(data)
    await w.commit()
    async with await store.reader_at(Descriptor(digest=digests.from_bytes(data))) as ra:
        assert ra.size == len(data)
        assert await ra.read_at(256, 3) == bytes([0, 1, 2])
    with pytest.raises(errdefs.FailedPrecondition):
        await ra.read_at(0, 1)


async def test_truncate_to_a_middle_offset_rehashes_prefix(tmp_path) -> None:
    store = await LocalStore.open(str(tmp_path))
    w = await store.writer("t")
    await w.write(b"abcdef")
    await w.truncate(3)
    assert w.digest() == digests.from_bytes(b"abc")
    await w.write(b"XYZ")
    await w.commit(6, digests.from_bytes(b"abcXYZ"))
    with pytest.raises(errdefs.InvalidArgument):
        w2 = await store.writer("t2")
        try:
            await w2.truncate(1)
        finally:
            await w2.close()


async def test_abort_while_writer_open_makes_commit_fail(tmp_path) -> None:
    store = await LocalStore.open(str(tmp_path))
    w = await store.writer("a")
    await w.write(b"abc")
    await store.abort("a")
    with pytest.raises(errdefs.NotFound):
        await w.commit()
    assert [i async for i in store.walk()] == []


async def test_cancelled_write_leaves_offset_digest_and_data_consistent(tmp_path) -> None:
    store = await LocalStore.open(str(tmp_path))
    w = await store.writer("cancel")
    big = b"q" * (8 << 20)
    task = asyncio.create_task(w.write(big))
    await asyncio.sleep(0.001)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await w.write(b"tail")
    with open(os.path.join(_ingest_dir(str(tmp_path), "cancel"), "data"), "rb") as f:
        on_disk = f.read()
    assert on_disk.endswith(b"tail")
    assert w.status().offset == len(on_disk)
    assert w.digest() == digests.from_bytes(on_disk)
    await w.commit(len(on_disk), digests.from_bytes(on_disk))
