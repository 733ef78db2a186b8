"""Fixtures for the NRI adaptation tests: plugin/config directories, an adaptation started
with a fixed state (pod ``pod1`` with container ``c0``), and external test plugin processes."""

from __future__ import annotations

import asyncio
import types as pytypes
from pathlib import Path

import nritest
import pytest

from pycontainerd.core.nri import NRI, Config, Container, PodSandbox

POD = PodSandbox(id="pod1", name="web", namespace="default", uid="u1")
EXISTING = Container(id="c0", pod_sandbox_id="pod1", name="old", state="running")


@pytest.fixture
def paths(tmp_path: Path) -> pytypes.SimpleNamespace:
    ns = pytypes.SimpleNamespace(
        root=tmp_path,
        socket=tmp_path / "run" / "nri.sock",
        plugins=tmp_path / "plugins",
        conf=tmp_path / "conf.d",
    )
    ns.plugins.mkdir()
    ns.conf.mkdir()
    return ns


@pytest.fixture
async def make_nri(paths):
    made: list[NRI] = []

    async def make(request_timeout: float = 2.0, **kw) -> NRI:
        cfg = Config(
            socket_path=str(paths.socket),
            plugin_path=str(paths.plugins),
            plugin_config_path=str(paths.conf),
            request_timeout=request_timeout,
            registration_timeout=5.0,
        )
        nri = NRI(cfg, **kw)
        made.append(nri)

        async def sync():
            return [POD], [EXISTING]

        await nri.start(sync=sync)
        return nri

    yield make
    for n in made:
        await n.close()


@pytest.fixture
async def external(paths):
    procs: list[asyncio.subprocess.Process] = []

    async def run(**settings) -> asyncio.subprocess.Process:
        settings.setdefault("socket", str(paths.socket))
        proc = await asyncio.create_subprocess_exec(*nritest.command(settings))
        procs.append(proc)
        return proc

    yield run
    for p in procs:
        if p.returncode is None:
            p.kill()
        await p.wait()
