"""Pushing an image from the content store to a registry.

:func:`push` walks the image graph in the content store (index children filtered by a platform
matcher), then pushes children before parents: blobs (configs, layers) concurrently, at most
``limiter`` at a time, each checked with ``HEAD`` first and, when its
``containerd.io/distribution.source.<host>`` label names other repositories of the same
registry, mounted from them instead of uploaded; then manifests and indexes by digest, the
root last, under the reference's tag. Progress goes to a :class:`ProgressTracker` in the
``uploading`` state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from pycontainerd.core import errdefs, platforms, reference
from pycontainerd.core.content import helpers
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.images import mediatypes
from pycontainerd.core.remotes import handlers
from pycontainerd.core.transfer.progress import ProgressTracker
from pycontainerd.core.transfer.pull import LABEL_DISTRIBUTION_SOURCE, MAX_JSON_BLOB

log = logging.getLogger(__name__)


def _is_json(desc: Descriptor) -> bool:
    return mediatypes.is_index(desc.media_type) or mediatypes.is_manifest(desc.media_type)


async def walk(
    content: Any, root: Descriptor, matcher: platforms.MatchComparer
) -> list[Descriptor]:
    """Every descriptor under ``root`` that ``matcher`` keeps, children before parents, each
    once. A missing manifest or index is NotFound; missing blobs are found at push time."""
    out: list[Descriptor] = []
    seen: set[str] = set()

    async def visit(desc: Descriptor) -> None:
        if desc.digest in seen:
            return
        seen.add(desc.digest)
        if _is_json(desc):
            data = await helpers.read_blob(content, desc, max_size=MAX_JSON_BLOB)
            kids = handlers.children(desc, data)
            if mediatypes.is_index(desc.media_type):
                kids = handlers.filter_platforms(kids, matcher)
            for k in kids:
                await visit(k)
        out.append(desc)

    await visit(root)
    return out


async def _mount_sources(content: Any, desc: Descriptor, host: str, repo: str) -> list[str]:
    try:
        info = await content.info(desc.digest)
    except errdefs.NotFound:
        return []
    value = info.labels.get(LABEL_DISTRIBUTION_SOURCE + host, "")
    return [r for r in value.split(",") if r and r != repo]


async def push(
    pusher: Any,
    content: Any,
    root: Descriptor,
    *,
    ref: str,
    matcher: platforms.MatchComparer = platforms.ALL,
    limiter: asyncio.Semaphore | None = None,
    tracker: ProgressTracker | None = None,
) -> None:
    """Push ``root`` and what it refers to through ``pusher`` (a docker Pusher for the
    repository of ``ref``); the root manifest goes under ``ref``'s tag (or its digest)."""
    spec = reference.parse_docker_ref(ref)
    tag = spec.tag if not spec.digest else ""
    descs = await walk(content, root, matcher)
    t = tracker or ProgressTracker(root=ref, state="uploading")

    def source(desc: Descriptor) -> Any:
        async def gen() -> AsyncIterator[bytes]:
            sent = 0
            async for chunk in helpers.read_chunks(content, desc):
                sent += len(chunk)
                t.update(desc, sent, desc.size)
                yield chunk

        return gen

    async def one(desc: Descriptor, *, tag_: str | None = None) -> None:
        t.add(desc)
        mounts = await _mount_sources(content, desc, spec.hostname, spec.path)
        try:
            if _is_json(desc):
                data = await helpers.read_blob(content, desc, max_size=MAX_JSON_BLOB)
                result = await pusher.push(desc, data, tag=tag_)
            else:
                result = await pusher.push(desc, source(desc), mount_from=mounts)
        except errdefs.NotFound as exc:
            raise errdefs.NotFound(
                f"failed to push {desc.digest} of {ref}: content missing locally: {exc}"
            ) from exc
        if result.value == "exists":
            t.mark_exists(desc)
        else:
            t.complete(desc)

    async def blob(desc: Descriptor) -> None:
        if limiter is not None:
            async with limiter:
                await one(desc)
        else:
            await one(desc)

    blobs = [d for d in descs if not _is_json(d)]
    manifests = [d for d in descs if _is_json(d)]
    try:
        async with asyncio.TaskGroup() as tg:
            for d in blobs:
                tg.create_task(blob(d))
    except BaseExceptionGroup as eg:
        from pycontainerd.core.transfer.pull import _first_error

        raise _first_error(eg) from None
    for d in manifests:
        await one(d, tag_=tag if d.digest == root.digest else None)
    log.info("pushed %s (%s, %d blobs)", ref, root.digest, len(descs))
