"""Walking an image graph and fetching it into a content store.

- :func:`children`: the descriptors an index (its manifests) or a manifest (config, then
  layers) refers to, for OCI and Docker media types.
- :func:`filter_platforms`: the manifests of an index that a platform matcher accepts, best
  first, optionally only the best ``limit``.
- :func:`fetch_to_store`: one blob from a fetcher into a content ingester, resuming an
  interrupted ingest from its offset (a ``Range`` fetch), checking the digest before commit;
  a mismatch aborts the ingest (nothing is committed) and raises FailedPrecondition naming
  the expected and actual digests.
- :func:`dispatch`: run a handler over descriptors and, recursively, the children it
  returns, at most ``limit`` handlers at once.
- :func:`fetch_handler` / :func:`fetch_image`: the pull-side composition of the above.
- :func:`gc_labels`: containerd's ``containerd.io/gc.ref.content.*`` labels for a parent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import attrs

from pycontainerd.core import errdefs, platforms
from pycontainerd.core.content import helpers
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.content.types import Ingester, Provider
from pycontainerd.core.images import mediatypes
from pycontainerd.core.images.image import child_gc_labels, children

log = logging.getLogger(__name__)

#: ``progress(desc, offset, total)``: ``offset`` bytes of ``desc`` are in the store.
Progress = Callable[[Descriptor, int, int], None]
#: A handler gets a descriptor and returns the children to visit next.
Handler = Callable[[Descriptor], Awaitable[Sequence[Descriptor]]]

#: Largest manifest/index/config read into memory when walking.
MAX_JSON_BLOB = 16 << 20


class BlobFetcher(Protocol):
    """What :func:`fetch_to_store` needs: ``fetch(desc, offset=)`` returning an async
    iterable of chunks with ``close()`` (the docker Fetcher's BlobStream)."""

    async def fetch(self, desc: Descriptor, *, offset: int = 0) -> Any: ...


def filter_platforms(
    descs: Sequence[Descriptor],
    comparer: platforms.MatchComparer,
    *,
    limit: int = 0,
) -> list[Descriptor]:
    """The children of an index to follow for ``comparer``: matching ones best first (at
    most ``limit`` when > 0); children without a platform are kept after them (as
    containerd), but not when ``limit`` is set and something matched."""
    with_platform = [(d, d.platform) for d in descs if d.platform is not None]
    chosen = platforms.select(comparer, with_platform)
    if limit > 0:
        chosen = chosen[:limit]
    rest = [d for d in descs if d.platform is None]
    if limit > 0 and chosen:
        return chosen
    out = chosen + rest
    return out[:limit] if limit > 0 else out


#: containerd's GC reference labels from a parent to its children (one implementation, in
#: core/images): index -> ``containerd.io/gc.ref.content.m.<i>``, manifest -> ``.config``,
#: ``.l.<i>``.
gc_labels = child_gc_labels


def ref_key(desc: Descriptor) -> str:
    """The ingest ref for a descriptor (containerd's remotes.MakeRefKey)."""
    mt = desc.media_type
    if mediatypes.is_index(mt):
        kind = "index"
    elif mediatypes.is_manifest(mt):
        kind = "manifest"
    elif mediatypes.is_config(mt):
        kind = "config"
    elif mediatypes.is_layer(mt):
        kind = "layer"
    else:
        kind = "unknown"
    return f"{kind}-{desc.digest}"


async def fetch_to_store(
    fetcher: BlobFetcher,
    ingester: Ingester,
    desc: Descriptor,
    *,
    ref: str | None = None,
    progress: Progress | None = None,
    labels: dict[str, str] | None = None,
    timeout: float | None = None,
) -> bool:
    """Fetch ``desc`` into ``ingester`` unless it is already there. Returns True when bytes
    were committed, False when the blob was present. An existing ingest of ``ref`` is
    resumed from its offset. A digest mismatch aborts the ingest and raises
    FailedPrecondition; transport errors keep the ingest for a later resume."""
    ref = ref or ref_key(desc)
    try:
        w = await helpers.open_writer(
            ingester, ref, total=desc.size, expected=desc.digest, timeout=timeout
        )
    except errdefs.AlreadyExists:
        if progress is not None:
            progress(desc, desc.size, desc.size)
        return False
    mismatch: errdefs.ContainerdError | None = None
    try:
        offset = w.status().offset
        if desc.size and offset > desc.size:
            await w.truncate(0)
            offset = 0
        if offset and desc.size and offset == desc.size and w.digest() != desc.digest:
            # A complete but wrong ingest: start over rather than fail for ever.
            await w.truncate(0)
            offset = 0
        if offset:
            log.debug("resuming %s at offset %d of %d", desc.digest, offset, desc.size)
        if progress is not None:
            progress(desc, offset, desc.size)
        if not desc.size or offset < desc.size:
            try:
                stream = await fetcher.fetch(desc, offset=offset)
            except errdefs.OutOfRange:
                await w.truncate(0)
                offset = 0
                stream = await fetcher.fetch(desc, offset=0)
            try:
                async for chunk in stream:
                    if desc.size and offset + len(chunk) > desc.size:
                        raise errdefs.FailedPrecondition(
                            f"blob {desc.digest}: more than the expected {desc.size} bytes"
                        )
                    await w.write(chunk)
                    offset += len(chunk)
                    if progress is not None:
                        progress(desc, offset, desc.size)
            finally:
                stream.close()
        actual = w.digest()
        if actual != desc.digest:
            mismatch = errdefs.FailedPrecondition(
                f"digest mismatch for {desc.media_type or 'blob'} {desc.digest}: "
                f"expected {desc.digest}, got {actual} ({offset} bytes)"
            )
        else:
            await w.commit(desc.size, desc.digest, labels)
            return True
    except errdefs.AlreadyExists:
        return False
    finally:
        await w.close()
    # Only reached on a digest mismatch: the data is wrong, so keep none of it.
    abort = getattr(ingester, "abort", None)
    if abort is not None:
        try:
            await abort(ref)
        except errdefs.NotFound:
            pass
    raise mismatch


def _first_error(eg: BaseExceptionGroup[Any]) -> BaseException:
    for exc in eg.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return eg.exceptions[0]


async def dispatch(
    handler: Handler,
    descs: Iterable[Descriptor],
    *,
    limit: int | asyncio.Semaphore | None = None,
) -> None:
    """Run ``handler`` on every descriptor and recursively on the children it returns, at
    most ``limit`` handlers at a time. The first failure cancels the rest and is raised
    (unwrapped from the task group)."""
    sem = asyncio.Semaphore(limit) if isinstance(limit, int) and limit > 0 else limit
    if isinstance(sem, int):
        sem = None

    async def one(d: Descriptor) -> None:
        if sem is not None:
            async with sem:
                kids = await handler(d)
        else:
            kids = await handler(d)
        if kids:
            await dispatch(handler, kids, limit=sem)

    try:
        async with asyncio.TaskGroup() as tg:
            for d in descs:
                tg.create_task(one(d))
    except BaseExceptionGroup as eg:
        raise _first_error(eg) from None


def fetch_handler(
    fetcher: BlobFetcher,
    store: Any,
    *,
    platform: platforms.MatchComparer | None = None,
    limit_manifests: int = 0,
    progress: Progress | None = None,
    on_fetched: Callable[[Descriptor, Sequence[Descriptor]], Awaitable[None] | None] | None = None,
) -> Handler:
    """A handler that fetches a descriptor into ``store`` (an Ingester and Provider) and
    returns its children; the children of an index are filtered by ``platform`` (default:
    this host; :data:`platforms.ALL` for all) keeping the best ``limit_manifests``."""
    comparer = platform if platform is not None else platforms.default()

    async def handle(desc: Descriptor) -> Sequence[Descriptor]:
        await fetch_to_store(fetcher, store, desc, progress=progress)
        kids: list[Descriptor] = []
        if mediatypes.is_index(desc.media_type) or mediatypes.is_manifest(desc.media_type):
            data = await helpers.read_blob(store, desc, max_size=MAX_JSON_BLOB)
            kids = children(desc, data)
            if mediatypes.is_index(desc.media_type):
                chosen = filter_platforms(kids, comparer, limit=limit_manifests)
                if kids and not chosen:
                    raise errdefs.NotFound(
                        f"index {desc.digest}: no manifest for platform {comparer!r}"
                    )
                kids = chosen
        if on_fetched is not None:
            result = on_fetched(desc, kids)
            if result is not None:
                await result
        return kids

    return handle


@attrs.define(eq=False, kw_only=True)
class ProgressTracker:
    """Collects progress per descriptor (bytes so far, total) and the overall rate."""

    started: float = attrs.Factory(time.monotonic)
    entries: dict[str, tuple[int, int]] = attrs.Factory(dict)

    def __call__(self, desc: Descriptor, offset: int, total: int) -> None:
        self.entries[desc.digest] = (offset, total)

    @property
    def done_bytes(self) -> int:
        return sum(o for o, _ in self.entries.values())

    @property
    def total_bytes(self) -> int:
        return sum(t for _, t in self.entries.values())


async def fetch_image(
    fetcher: BlobFetcher,
    store: Any,
    root: Descriptor,
    *,
    platform: platforms.MatchComparer | None = None,
    limit_manifests: int = 1,
    concurrency: int = 3,
    progress: Progress | None = None,
) -> list[Descriptor]:
    """Fetch ``root`` and everything below it that ``platform`` selects into ``store``;
    returns every descriptor visited (parents before children)."""
    visited: list[Descriptor] = []

    def record(desc: Descriptor, _kids: Sequence[Descriptor]) -> None:
        visited.append(desc)

    handler = fetch_handler(
        fetcher,
        store,
        platform=platform,
        limit_manifests=limit_manifests,
        progress=progress,
        on_fetched=record,
    )
    await dispatch(handler, [root], limit=concurrency)
    return visited


async def read_json(provider: Provider, desc: Descriptor) -> Any:
    """A manifest, index or config from a content store, parsed."""
    data = await helpers.read_blob(provider, desc, max_size=MAX_JSON_BLOB)
    try:
        return json.loads(data)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"{desc.digest}: invalid JSON: {exc}") from None
