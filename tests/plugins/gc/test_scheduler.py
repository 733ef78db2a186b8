from __future__ import annotations

import asyncio

import pytest

from pycontainerd.core import durations, errdefs
from pycontainerd.core.config.codec import ConfigError, decode_plugin_config
from pycontainerd.core.gc import Stats
from pycontainerd.core.plugin import InitContext, Meta, Plugin, Registration, types
from pycontainerd.core.plugin.context import PluginSet
from pycontainerd.plugins.gc import plugin
from pycontainerd.plugins.gc.scheduler import Scheduler


class FakeCollector:
    def __init__(self, fail: bool = False) -> None:
        self.callbacks = []
        self.runs = 0
        self.fail = fail

    def register_mutation_callback(self, fn) -> None:
        self.callbacks.append(fn)

    def mutate(self, dirty: bool) -> None:
        for cb in self.callbacks:
            cb(dirty)

    async def garbage_collect(self) -> Stats:
        self.runs += 1
        if self.fail:
            raise RuntimeError("disk on fire")
        return Stats(meta_duration=0.001)


@pytest.fixture
async def running():
    tasks = []

    def start(s: Scheduler) -> Scheduler:
        tasks.append(asyncio.create_task(s.run()))
        return s

    yield start
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_registration_and_default_config_match_containerd():
    [reg] = plugin.pycontainerd_registrations()
    assert reg.uri == "io.containerd.gc.v1.scheduler"
    assert reg.requires == (types.METADATA,)
    cfg, _ = decode_plugin_config(plugin.Config, {}, reg.uri)
    assert (
        cfg.pause_threshold,
        cfg.deletion_threshold,
        cfg.mutation_threshold,
        cfg.schedule_delay,
        cfg.startup_delay,
    ) == (0.02, 0, 100, "0ms", "100ms")
    with pytest.raises(ConfigError, match="schedule_delay"):
        decode_plugin_config(plugin.Config, {"schedule_delay": "soon"}, reg.uri)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("0ms", 0.0), ("100ms", 0.1), ("1h30m", 5400.0), ("-1.5s", -1.5), ("2us", 2e-6)],
)
def test_go_durations_parse(text, seconds):
    assert durations.parse(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "1d", "ms", "1.5.5s"])
def test_bad_go_durations_are_invalid_argument(text):
    with pytest.raises(errdefs.InvalidArgument):
        durations.parse(text)


def test_go_duration_format_roundtrips():
    for text in ("0s", "100ms", "1h30m0s", "1.5s", "2m3s"):
        assert durations.format(durations.parse(text)) == text


async def test_first_collection_runs_after_startup_delay(running):
    c = FakeCollector()
    running(Scheduler(c, startup_delay=0.05))
    await asyncio.sleep(0.01)
    assert c.runs == 0
    await asyncio.sleep(0.15)
    assert c.runs == 1


async def test_a_deletion_schedules_a_collection_when_none_is_pending(running):
    c = FakeCollector()
    running(Scheduler(c, startup_delay=0))
    await asyncio.sleep(0.02)
    c.mutate(dirty=False)
    await asyncio.sleep(0.05)
    assert c.runs == 0  # one mutation below the threshold, no deletion
    c.mutate(dirty=True)
    await asyncio.sleep(0.05)
    assert c.runs == 1


async def test_mutation_threshold_schedules_a_collection(running):
    c = FakeCollector()
    running(Scheduler(c, startup_delay=0, mutation_threshold=3))
    await asyncio.sleep(0.01)
    for _ in range(2):
        c.mutate(dirty=False)
    await asyncio.sleep(0.05)
    assert c.runs == 0
    c.mutate(dirty=False)
    await asyncio.sleep(0.05)
    assert c.runs == 1


async def test_no_periodic_collection_without_changes(running):
    c = FakeCollector()
    s = running(Scheduler(c, startup_delay=0.01, pause_threshold=0.5))  # interval ~5ms
    await asyncio.sleep(0.1)
    assert c.runs == 1
    assert s.collections == 1


async def test_schedule_and_wait_runs_a_collection_and_returns_its_stats(running):
    c = FakeCollector()
    s = running(Scheduler(c, startup_delay=0))
    stats = await asyncio.wait_for(s.schedule_and_wait(), 2)
    assert stats.meta_duration == 0.001 and c.runs == 1


async def test_cancelling_the_loop_as_an_event_arrives_ends_it():
    """The daemon's stop cancels the loop; a mutation arriving in the same moment must not
    keep it running (the stop would wait forever)."""
    c = FakeCollector()
    s = Scheduler(c, startup_delay=0)
    task = asyncio.create_task(s.run())
    try:
        await asyncio.wait_for(s.schedule_and_wait(), 2)  # the next one is now timed
        await asyncio.sleep(0.01)
        c.mutate(False)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert done and task.cancelled()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class GatedCollector(FakeCollector):
    """Each collection waits for ``gate``; ``started`` is set when one begins."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def garbage_collect(self) -> Stats:
        self.started.set()
        await self.gate.wait()
        return await super().garbage_collect()


async def test_schedule_and_wait_during_a_collection_gets_a_later_one(running):
    """A sync delete asking while a collection runs is not left waiting forever: its
    trigger predates the end of that collection, but that collection did not answer it."""
    c = GatedCollector()
    s = running(Scheduler(c, startup_delay=0, pause_threshold=0.5))
    first = asyncio.create_task(s.schedule_and_wait())
    await asyncio.wait_for(c.started.wait(), 2)
    second = asyncio.create_task(s.schedule_and_wait())
    await asyncio.sleep(0.01)
    c.gate.set()
    await asyncio.wait_for(first, 2)
    await asyncio.wait_for(second, 2)
    assert c.runs == 2


async def test_schedule_and_wait_reports_a_failed_collection(running):
    c = FakeCollector(fail=True)
    s = running(Scheduler(c, startup_delay=0))
    with pytest.raises(errdefs.Internal, match="gc failed"):
        await asyncio.wait_for(s.schedule_and_wait(), 2)


def test_thresholds_are_clamped_like_containerd():
    s = Scheduler(FakeCollector(), pause_threshold=0.9, mutation_threshold=-1, schedule_delay=-1)
    assert (s.pause_threshold, s.mutation_threshold, s.schedule_delay) == (0.5, 0, 0.0)


async def _noop(ic):  # pragma: no cover
    return None


async def test_init_exports_settings_and_spawns_the_loop():
    c = FakeCollector()
    ps = PluginSet()
    ps.add(
        Plugin(
            registration=Registration(type=types.METADATA, id="bolt", init=_noop),
            config=None,
            meta=Meta(),
            instance=c,
        )
    )
    [reg] = plugin.pycontainerd_registrations()
    spawned = []

    def spawn(coro, name):
        t = asyncio.get_running_loop().create_task(coro)
        spawned.append(t)
        return t

    ic = InitContext(
        registration=reg, config=plugin.Config(), properties={}, plugins=ps, spawn=spawn
    )
    s = await reg.init(ic)
    try:
        assert ic.meta.exports["MutationThreshold"] == "100"
        assert ic.meta.exports["ScheduleDelay"] == "0s"
        assert len(spawned) == 1
        assert (await asyncio.wait_for(s.schedule_and_wait(), 2)) is not None
    finally:
        for t in spawned:
            t.cancel()
        await asyncio.gather(*spawned, return_exceptions=True)
