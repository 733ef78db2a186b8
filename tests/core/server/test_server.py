"""The daemon lifecycle in-process: init order, statuses, required plugins, shutdown order."""

from __future__ import annotations

import asyncio

import attrs
import pytest

from pycontainerd.core import config
from pycontainerd.core.plugin import Registration, SkipPlugin, Status
from pycontainerd.core.plugin.registry import Registry
from pycontainerd.core.server.server import Server, Settings, StartupError


@attrs.define
class Cfg:
    size: int = 1


def make(tmp_path, regs, **kw):
    registry = Registry()
    registry.register_all(regs)
    settings = Settings(root=str(tmp_path / "root"), state=str(tmp_path / "state"), **kw)
    return Server(settings=settings, registry=registry, decode=config.decode_plugin_config)


class Closer:
    def __init__(self, name, log):
        self.name, self.log = name, log

    async def close(self):
        self.log.append(self.name)


async def test_plugins_init_in_order_and_close_in_reverse(tmp_path):
    closed: list[str] = []
    seen: list[str] = []

    def init(name, want=None):
        async def _init(ic):
            seen.append(name)
            if want:
                assert ic.get_single(want).name == want.split(".")[-2]
            return Closer(name, closed)

        return _init

    regs = [
        Registration(
            type="io.t.svc.v1",
            id="svc",
            requires=("io.t.store.v1",),
            init=init("svc", "io.t.store.v1"),
        ),
        Registration(type="io.t.store.v1", id="store", init=init("store")),
    ]
    srv = make(tmp_path, regs)
    await srv.start()
    assert seen == ["store", "svc"]
    assert [p.status for p in srv.plugins] == [Status.OK, Status.OK]
    await srv.stop()
    assert closed == ["svc", "store"]


async def test_skip_and_error_are_recorded_not_fatal(tmp_path):
    async def skip(ic):
        raise SkipPlugin("not on this host")

    async def fail(ic):
        raise RuntimeError("boom")

    srv = make(
        tmp_path,
        [
            Registration(type="io.t.v1", id="s", init=skip),
            Registration(type="io.t.v1", id="f", init=fail),
        ],
    )
    await srv.start()
    by = {p.registration.id: p for p in srv.plugins}
    assert by["s"].status is Status.SKIPPED and "not on this host" in by["s"].error_text()
    assert by["f"].status is Status.ERROR and by["f"].error_text() == "boom"
    await srv.stop()


async def test_failing_required_plugin_stops_startup_naming_it(tmp_path):
    async def fail(ic):
        raise RuntimeError("no disk")

    srv = make(
        tmp_path, [Registration(type="io.t.v1", id="f", init=fail)], required_plugins=["io.t.v1.f"]
    )
    with pytest.raises(StartupError, match=r"load required plugin io.t.v1.f: no disk"):
        await srv.start()


@pytest.mark.parametrize(
    "disabled, message", [((), "not registered"), (("io.t.v1.x",), "disabled")]
)
async def test_required_plugin_unknown_or_disabled_is_an_error(tmp_path, disabled, message):
    async def ok(ic):
        return 1

    regs = [Registration(type="io.t.v1", id="x", init=ok)]
    required = ["io.t.v1.nope"] if not disabled else ["io.t.v1.x"]
    srv = make(tmp_path, regs, required_plugins=required, disabled_plugins=disabled)
    with pytest.raises(StartupError, match=message):
        await srv.start()


async def test_plugin_config_is_decoded_and_bad_config_fails_the_plugin(tmp_path):
    got = {}

    async def init(ic):
        got[ic.registration.id] = ic.config
        return 1

    regs = [
        Registration(type="io.t.v1", id="good", config=Cfg, init=init),
        Registration(type="io.t.v1", id="bad", config=Cfg, init=init),
    ]
    srv = make(
        tmp_path,
        regs,
        plugin_configs={"io.t.v1.good": {"size": 5, "typo": 1}, "io.t.v1.bad": {"size": "five"}},
    )
    await srv.start()
    assert got["good"] == Cfg(size=5)
    by = {p.registration.id: p for p in srv.plugins}
    assert by["bad"].status is Status.ERROR and "size" in by["bad"].error_text()
    assert any("typo" in w for w in srv.warnings)


async def test_background_tasks_are_cancelled_before_instances_close(tmp_path):
    events: list[str] = []

    async def worker():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            events.append("task cancelled")
            raise

    class Inst:
        async def close(self):
            events.append("closed")

    async def init(ic):
        ic.spawn(worker(), "worker")
        return Inst()

    srv = make(tmp_path, [Registration(type="io.t.v1", id="w", init=init)])
    await srv.start()
    await asyncio.sleep(0)
    await srv.stop()
    assert events == ["task cancelled", "closed"]


async def test_a_task_ignoring_cancellation_does_not_block_the_stop(tmp_path, monkeypatch):
    from pycontainerd.core.server import server as server_mod

    monkeypatch.setattr(server_mod, "TASK_STOP_TIMEOUT", 0.2)
    release = asyncio.Event()
    closed: list[str] = []

    async def stubborn():
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # what a buggy background loop does

    class Inst:
        async def close(self):
            closed.append("closed")

    async def init(ic):
        ic.spawn(stubborn(), "stubborn")
        return Inst()

    srv = make(tmp_path, [Registration(type="io.t.v1", id="s", init=init)])
    await srv.start()
    await asyncio.sleep(0)
    try:
        errors = await asyncio.wait_for(srv.stop(), 5)
        assert closed == ["closed"]
        assert [type(e).__name__ for e in errors] == ["DeadlineExceeded"]
        assert "stubborn" in str(errors[0])
    finally:
        release.set()
        for t in asyncio.all_tasks():
            if t.get_name() == "stubborn":
                t.cancel()


async def test_readiness_waits_for_every_registered_plugin(tmp_path):
    holder = {}

    async def init(ic):
        holder["done"] = ic.register_readiness()
        return 1

    srv = make(tmp_path, [Registration(type="io.t.v1", id="r", init=init)])
    await srv.start()
    waiter = asyncio.create_task(srv.wait_ready())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    holder["done"]()
    await asyncio.wait_for(waiter, 1)
    await srv.stop()
