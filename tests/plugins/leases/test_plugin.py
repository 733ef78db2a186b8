from __future__ import annotations

import asyncio

import pytest

from pycontainerd.core import leases, namespaces
from pycontainerd.core.content import digests
from pycontainerd.core.metadata.metadata import Metadata
from pycontainerd.core.plugin import InitContext, Meta, Plugin, Registration, types
from pycontainerd.core.plugin.context import PluginSet
from pycontainerd.plugins.content.local.store import LocalStore
from pycontainerd.plugins.gc.scheduler import Scheduler
from pycontainerd.plugins.leases import plugin


async def _noop(ic):  # pragma: no cover
    return None


def _done(type_, id_, instance):
    return Plugin(
        registration=Registration(type=type_, id=id_, init=_noop),
        config=None,
        meta=Meta(),
        instance=instance,
    )


@pytest.fixture
async def setup(tmp_path):
    content = await LocalStore.open(str(tmp_path / "content"))
    md = await Metadata.open(str(tmp_path / "meta.db"), content=content)
    sched = Scheduler(md, startup_delay=0, mutation_threshold=0, deletion_threshold=0)
    task = asyncio.create_task(sched.run())
    ps = PluginSet()
    ps.add(_done(types.METADATA, "bolt", md))
    ps.add(_done(types.GC, "scheduler", sched))
    [reg] = plugin.pycontainerd_registrations()
    manager = await reg.init(InitContext(registration=reg, config=None, properties={}, plugins=ps))
    yield md, manager, content
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await md.close()


def test_registration_requires_metadata_and_gc():
    [reg] = plugin.pycontainerd_registrations()
    assert reg.uri == "io.containerd.lease.v1.manager"
    assert set(reg.requires) == {types.METADATA, types.GC}


async def test_sync_delete_returns_after_gc_removed_the_leased_blob(setup):
    md, manager, content = setup
    data = b"pulled layer"
    dgst = digests.from_bytes(data)
    with namespaces.use("default"):
        await manager.create("pull")
        with leases.use("pull"):
            w = await md.content_store.writer("l", total=len(data), expected=dgst)
            await w.write(data)
            await w.commit(len(data), dgst)
        await asyncio.sleep(0.05)  # let the startup collection pass: the lease holds the blob
        assert [i.digest async for i in content.walk()] == [dgst]
        await manager.delete("pull", sync=True)
        assert [i.digest async for i in content.walk()] == []
        assert await manager.list() == []
