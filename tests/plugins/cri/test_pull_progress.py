"""``image_pull_progress_timeout``: a pull is cancelled when no progress arrives for that long,
and kept going while it does."""

from __future__ import annotations

import asyncio

from pycontainerd.core.transfer import Progress
from pycontainerd.plugins.cri.images import service


async def test_a_stalled_pull_is_cancelled():
    watch = service._ProgressWatch(timeout=0.2)
    task = asyncio.ensure_future(asyncio.sleep(30))
    assert await asyncio.wait_for(watch.watch(task), 5)
    assert task.cancelled()


async def test_a_pull_making_progress_is_left_alone():
    watch = service._ProgressWatch(timeout=0.3)

    async def pull() -> str:
        for i in range(10):
            watch(Progress(event="downloading", name="layer", progress=i * 100, total=1000))
            await asyncio.sleep(0.1)
        return "done"

    task = asyncio.ensure_future(pull())
    assert not await asyncio.wait_for(watch.watch(task), 5)
    assert task.result() == "done"


def test_repeating_the_same_progress_is_no_progress():
    watch = service._ProgressWatch(timeout=1)
    watch(Progress(event="downloading", name="layer", progress=5))
    first = watch.last
    watch(Progress(event="downloading", name="layer", progress=5))
    assert watch.last == first
