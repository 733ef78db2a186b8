"""A conformance suite every content store backend runs (ours or a third party's).

Give it a factory ``async (root: str) -> Store``; calling it again with the same root must
give a store over the same data, as after a restart. Each case is independent and gets a fresh
empty directory. Drive it from pytest like this::

    @pytest.mark.parametrize("case", testsuite.case_names())
    async def test_conformance(case, tmp_path):
        await testsuite.run_case(case, factory, str(tmp_path))

A case that does not apply raises :class:`SkipCase` (turn it into ``pytest.skip``).
Plain ``assert`` statements are used so that pytest reports them in detail.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.content import digests, helpers
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.content.types import Info, Status, Store, Writer

StoreFactory = Callable[[str], Awaitable[Store]]


@attrs.frozen(kw_only=True)
class Options:
    #: The store keeps labels (commit labels, ``update``).
    labels: bool = True


class SkipCase(Exception):
    """The case does not apply to this store or environment."""


@attrs.frozen
class _Env:
    factory: StoreFactory
    root: str
    options: Options

    async def store(self) -> Store:
        return await self.factory(self.root)


Case = Callable[[_Env], Awaitable[None]]
_CASES: dict[str, Case] = {}


def _case(fn: Case) -> Case:
    _CASES[fn.__name__.lstrip("_")] = fn
    return fn


def case_names() -> list[str]:
    return list(_CASES)


async def run_case(
    name: str, factory: StoreFactory, root: str, options: Options | None = None
) -> None:
    await _CASES[name](_Env(factory, root, options or Options()))


# --- small tools ----------------------------------------------------------------------------


def _blob(seed: str, size: int) -> tuple[bytes, str]:
    """Deterministic pseudo-random bytes and their digest."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}/{counter}".encode()).digest()
        counter += 1
    data = bytes(out[:size])
    return data, digests.from_bytes(data)


def _desc(dgst: str, size: int = 0) -> Descriptor:
    return Descriptor(media_type="application/octet-stream", digest=dgst, size=size)


async def _raises(exc: type[BaseException], aw: Awaitable[object]) -> BaseException:
    try:
        await aw
    except exc as e:
        return e
    raise AssertionError(f"expected {exc.__name__}")


async def _commit(store: Store, ref: str, data: bytes, **kw: object) -> str:
    dgst = digests.from_bytes(data)
    w = await store.writer(ref, total=len(data))
    await w.write(data)
    await w.commit(len(data), dgst, **kw)  # type: ignore[arg-type]
    return dgst


async def _walk(store: Store, filters: tuple[str, ...] = ()) -> list[Info]:
    return [info async for info in store.walk(filters)]


async def _read(store: Store, dgst: str) -> bytes:
    return await helpers.read_blob(store, _desc(dgst), max_size=None)


# --- cases ----------------------------------------------------------------------------------


@_case
async def _write_commit_read_back(env: _Env) -> None:
    store = await env.store()
    data, dgst = _blob("a", 10_000)
    w = await store.writer("ref-a", total=len(data), expected=dgst)
    assert await w.write(data[:4000]) == 4000
    assert await w.write(data[4000:]) == 6000
    st = w.status()
    assert (st.ref, st.offset, st.total) == ("ref-a", len(data), len(data))
    assert w.digest() == dgst
    await w.commit(len(data), dgst)
    info = await store.info(dgst)
    assert (info.digest, info.size) == (dgst, len(data))
    assert await _read(store, dgst) == data
    await _raises(errdefs.NotFound, store.status("ref-a"))
    assert await store.list_statuses() == []


@_case
async def _commit_without_expected_computes_digest(env: _Env) -> None:
    store = await env.store()
    data, dgst = _blob("b", 3000)
    w = await store.writer("ref-b")
    await w.write(data)
    await w.commit()
    assert (await store.info(dgst)).size == len(data)


@_case
async def _empty_blob_commits_and_reads_back(env: _Env) -> None:
    store = await env.store()
    dgst = await _commit(store, "empty", b"")
    assert dgst == digests.from_bytes(b"")
    assert (await store.info(dgst)).size == 0
    assert await _read(store, dgst) == b""


@_case
async def _writer_is_closed_after_commit(env: _Env) -> None:
    store = await env.store()
    data, dgst = _blob("c", 100)
    w = await store.writer("ref-c")
    await w.write(data)
    await w.commit(len(data), dgst)
    await _raises(errdefs.FailedPrecondition, w.write(b"more"))
    await _raises(errdefs.FailedPrecondition, w.commit(len(data), dgst))
    await w.close()  # closing a committed writer is not an error


@_case
async def _close_twice_is_not_an_error(env: _Env) -> None:
    store = await env.store()
    w = await store.writer("ref-close")
    await w.write(b"x")
    await w.close()
    await w.close()


@_case
async def _empty_ref_is_invalid(env: _Env) -> None:
    store = await env.store()
    await _raises(errdefs.InvalidArgument, store.writer(""))


@_case
async def _malformed_digests_are_invalid_argument(env: _Env) -> None:
    store = await env.store()
    for bad in ("", "sha256", "sha256:xyz", "sha256:" + "A" * 64, "md5:" + "0" * 32):
        await _raises(errdefs.InvalidArgument, store.info(bad))
        await _raises(errdefs.InvalidArgument, store.reader_at(_desc(bad)))
        await _raises(errdefs.InvalidArgument, store.delete(bad))
    await _raises(errdefs.InvalidArgument, store.writer("ref", expected="sha256:nothex"))


@_case
async def _resume_after_closing_writer(env: _Env) -> None:
    store = await env.store()
    data, dgst = _blob("d", 50_000)
    w = await store.writer("ref-d", total=len(data), expected=dgst)
    await w.write(data[:20_000])
    await w.close()
    st = await store.status("ref-d")
    assert (st.offset, st.total) == (20_000, len(data))
    w = await store.writer("ref-d", total=len(data), expected=dgst)
    assert w.status().offset == 20_000
    assert w.digest() == digests.from_bytes(data[:20_000])
    await w.write(data[20_000:])
    await w.commit(len(data), dgst)
    assert await _read(store, dgst) == data


@_case
async def _resume_in_new_store_on_same_root(env: _Env) -> None:
    first = await env.store()
    data, dgst = _blob("e", 70_000)
    w = await first.writer("ref-e", total=len(data))
    await w.write(data[:33_333])
    await w.close()
    st1 = await first.status("ref-e")
    second = await env.store()
    st2 = await second.status("ref-e")
    assert (st2.ref, st2.offset, st2.total) == ("ref-e", 33_333, len(data))
    assert st2.started_at == st1.started_at
    w = await second.writer("ref-e", total=len(data))
    assert w.status().offset == 33_333
    await w.write(data[33_333:])
    await w.commit(len(data), dgst)
    assert await _read(second, dgst) == data


@_case
async def _committed_content_survives_new_store(env: _Env) -> None:
    first = await env.store()
    data, dgst = _blob("f", 1234)
    await _commit(first, "ref-f", data)
    second = await env.store()
    assert (await second.info(dgst)).size == len(data)
    assert await _read(second, dgst) == data


@_case
async def _second_writer_for_open_ref_is_unavailable(env: _Env) -> None:
    store = await env.store()
    w = await store.writer("ref-g")
    await w.write(b"abc")
    await _raises(errdefs.Unavailable, store.writer("ref-g"))
    other = await store.writer("ref-other")  # other refs are not blocked
    await other.close()
    await w.close()
    w2 = await store.writer("ref-g")
    assert w2.status().offset == 3
    await w2.close()


@_case
async def _concurrent_writers_on_distinct_refs(env: _Env) -> None:
    store = await env.store()
    blobs = [_blob(f"par{i}", 200_000 + i) for i in range(4)]

    async def one(i: int) -> None:
        data, dgst = blobs[i]
        w = await store.writer(f"par-{i}", total=len(data), expected=dgst)
        for off in range(0, len(data), 32_768):
            await w.write(data[off : off + 32_768])
        await w.commit(len(data), dgst)

    await asyncio.gather(*(one(i) for i in range(4)))
    for data, dgst in blobs:
        assert await _read(store, dgst) == data


@_case
async def _size_mismatch_is_refused_and_nothing_visible(env: _Env) -> None:
    store = await env.store()
    data, dgst = _blob("h", 500)
    w = await store.writer("ref-h")
    await w.write(data)
    await _raises(errdefs.FailedPrecondition, w.commit(len(data) + 1, dgst))
    await _raises(errdefs.NotFound, store.info(dgst))
    await _raises(errdefs.NotFound, store.reader_at(_desc(dgst)))
    assert await _walk(store) == []
    # commit released the ref: it can be opened again, resumed or aborted
    w = await store.writer("ref-h")
    await w.commit(len(data), dgst)
    assert await _read(store, dgst) == data


@_case
async def _digest_mismatch_is_refused_and_nothing_visible(env: _Env) -> None:
    store = await env.store()
    data, _ = _blob("i", 500)
    _, wrong = _blob("not-i", 500)
    w = await store.writer("ref-i")
    await w.write(data)
    await _raises(errdefs.FailedPrecondition, w.commit(len(data), wrong))
    await _raises(errdefs.NotFound, store.info(wrong))
    await _raises(errdefs.NotFound, store.info(digests.from_bytes(data)))
    assert await _walk(store) == []
    await store.abort("ref-i")


@_case
async def _commit_of_existing_content_is_already_exists(env: _Env) -> None:
    store = await env.store()
    data, dgst = _blob("j", 800)
    await _commit(store, "ref-j1", data)
    w = await store.writer("ref-j2")
    await w.write(data)
    await _raises(errdefs.AlreadyExists, w.commit(len(data), dgst))
    await _raises(errdefs.NotFound, store.status("ref-j2"))
    assert await store.list_statuses() == []
    assert await _read(store, dgst) == data


@_case
async def _writer_for_committed_expected_is_already_exists(env: _Env) -> None:
    store = await env.store()
    data, dgst = _blob("k", 64)
    await _commit(store, "ref-k", data)
    await _raises(errdefs.AlreadyExists, store.writer("ref-k2", expected=dgst))
    # the failed open did not leave the ref locked
    w = await store.writer("ref-k2")
    await w.close()


@_case
async def _abort_removes_ingest(env: _Env) -> None:
    store = await env.store()
    w = await store.writer("ref-l", total=10)
    await w.write(b"01234")
    await w.close()
    await store.abort("ref-l")
    await _raises(errdefs.NotFound, store.status("ref-l"))
    assert await store.list_statuses() == []
    await _raises(errdefs.NotFound, store.abort("ref-l"))
    w = await store.writer("ref-l")
    assert w.status().offset == 0
    await w.close()


@_case
async def _abort_of_unknown_ref_is_not_found(env: _Env) -> None:
    store = await env.store()
    await _raises(errdefs.NotFound, store.abort("never-written"))
    await _raises(errdefs.NotFound, store.status("never-written"))


@_case
async def _status_and_list_statuses_report_ingests(env: _Env) -> None:
    store = await env.store()
    wa = await store.writer("ref-a", total=100)
    await wa.write(b"x" * 10)
    wb = await store.writer("ref-b")
    await wb.write(b"y" * 20)
    await wb.close()
    st: Status = await store.status("ref-b")
    assert (st.ref, st.offset, st.total) == ("ref-b", 20, 0)
    assert st.started_at <= st.updated_at
    await wa.close()
    listed = sorted(await store.list_statuses(), key=lambda s: s.ref)
    assert [(s.ref, s.offset, s.total) for s in listed] == [("ref-a", 10, 100), ("ref-b", 20, 0)]


@_case
async def _list_statuses_filters_by_ref(env: _Env) -> None:
    store = await env.store()
    for ref in ("layer-1", "layer-2", "config"):
        w = await store.writer(ref)
        await w.write(b"z")
        await w.close()
    got = await store.list_statuses(["ref==config"])
    assert [s.ref for s in got] == ["config"]
    got = await store.list_statuses(["ref==layer-1", "ref==config"])
    assert sorted(s.ref for s in got) == ["config", "layer-1"]


@_case
async def _walk_lists_committed_blobs_only(env: _Env) -> None:
    store = await env.store()
    committed = {await _commit(store, f"w{i}", _blob(f"w{i}", 100 + i)[0]) for i in range(3)}
    w = await store.writer("pending")
    await w.write(b"pending")
    await w.close()
    infos = await _walk(store)
    assert {i.digest for i in infos} == committed
    assert all(i.size in (100, 101, 102) for i in infos)


@_case
async def _walk_filters_by_digest(env: _Env) -> None:
    store = await env.store()
    d1 = await _commit(store, "f1", b"one")
    await _commit(store, "f2", b"two")
    assert [i.digest for i in await _walk(store, (f"digest=={d1}",))] == [d1]


@_case
async def _delete_then_info_not_found(env: _Env) -> None:
    store = await env.store()
    dgst = await _commit(store, "ref-m", b"delete me")
    await store.delete(dgst)
    await _raises(errdefs.NotFound, store.info(dgst))
    await _raises(errdefs.NotFound, store.reader_at(_desc(dgst)))
    await _raises(errdefs.NotFound, store.delete(dgst))
    assert await _walk(store) == []
    # and it can be written again
    await _commit(store, "ref-m", b"delete me")
    assert await _read(store, dgst) == b"delete me"


@_case
async def _read_at_offsets_and_past_end(env: _Env) -> None:
    store = await env.store()
    data, dgst = _blob("n", 1000)
    await _commit(store, "ref-n", data)
    ra = await store.reader_at(_desc(dgst))
    try:
        assert ra.size == 1000
        assert await ra.read_at(0, 10) == data[:10]
        assert await ra.read_at(500, 100) == data[500:600]
        assert await ra.read_at(990, 100) == data[990:]
        assert await ra.read_at(1000, 10) == b""
        assert await ra.read_at(5000, 10) == b""
        assert await ra.read_at(10, 0) == b""
        await _raises(errdefs.InvalidArgument, ra.read_at(-1, 10))
    finally:
        await ra.close()
    await ra.close()


@_case
async def _truncate_restarts_ingest(env: _Env) -> None:
    store = await env.store()
    data, dgst = _blob("o", 4096)
    w = await store.writer("ref-o")
    await w.write(b"garbage" * 100)
    await w.truncate(0)
    assert w.status().offset == 0
    assert w.digest() == digests.from_bytes(b"")
    await w.write(data)
    await w.commit(len(data), dgst)
    assert await _read(store, dgst) == data


@_case
async def _large_write_in_chunks(env: _Env) -> None:
    store = await env.store()
    size = 32 << 20
    data = os.urandom(size)
    dgst = await asyncio.to_thread(digests.from_bytes, data)
    w: Writer = await store.writer("large", total=size, expected=dgst)
    view = memoryview(data)
    for off in range(0, size, 1 << 20):
        await w.write(view[off : off + (1 << 20)])
    await w.commit(size, dgst)
    assert (await store.info(dgst)).size == size
    h = hashlib.sha256()
    async for chunk in helpers.read_chunks(store, _desc(dgst, size)):
        h.update(chunk)
    assert f"sha256:{h.hexdigest()}" == dgst


@_case
async def _commit_labels_and_update(env: _Env) -> None:
    if not env.options.labels:
        raise SkipCase("store does not keep labels")
    store = await env.store()
    data, dgst = _blob("p", 10)
    w = await store.writer("ref-p")
    await w.write(data)
    await w.commit(len(data), dgst, {"a": "1", "b": "2"})
    assert (await store.info(dgst)).labels == {"a": "1", "b": "2"}
    info = await store.update(
        Info(digest=dgst, labels={"b": "", "c": "3"}), ["labels.b", "labels.c"]
    )
    assert info.labels == {"a": "1", "c": "3"}
    info = await store.update(Info(digest=dgst, labels={"z": "9"}), ["labels"])
    assert info.labels == {"z": "9"}
    assert (await store.info(dgst)).labels == {"z": "9"}
    await _raises(errdefs.InvalidArgument, store.update(Info(digest=dgst), ["size"]))
    _, missing = _blob("missing", 10)
    await _raises(errdefs.NotFound, store.update(Info(digest=missing, labels={"x": "y"})))
