"""Fixtures for driving the runtime v2 task manager with Debian's containerd-shim-runc-v2:
a ttrpc events server (the shim's TTRPC_ADDRESS) over an exchange, a busybox rootfs, and
task managers over one state/root pair."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tarfile
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import images
import peers
import pytest

from pycontainerd.core import namespaces
from pycontainerd.core.events.exchange import Exchange
from pycontainerd.core.mount import Mount
from pycontainerd.core.runtime import IO, CreateOpts
from pycontainerd.core.runtime import spec as oci
from pycontainerd.core.ttrpc import Server
from pycontainerd.plugins.runtimes.v2.manager import ShimManager, TaskManager
from pycontainerd.plugins.services.events.service import EventsService

NAMESPACE = "rtv2test"
#: containerd's shim (Debian) and ours
RUNTIMES = ("io.containerd.runc.v2", "io.containerd.pyrunc.v2")


def extract_rootfs(image: images.Image, dest: str) -> str:
    for layer in image.layers:
        with tarfile.open(image.blob_path(layer.descriptor.digest), "r:*") as tf:
            images.extract_all(tf, dest, trusted=True)
    return dest


@pytest.fixture(scope="session")
def busybox_rootfs(busybox: images.Image) -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="rtv2rootfs", dir="/tmp")
    try:
        yield extract_rootfs(busybox, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


class RuntimeEnv:
    """A daemon-like setup: exchange, ttrpc events server, root/state dirs."""

    def __init__(
        self, workdir: str, exchange: Exchange, server: Server, rootfs: str, runtime: str
    ) -> None:
        self.runtime = runtime
        self.workdir = workdir
        self.exchange = exchange
        self.server = server
        self.rootfs = rootfs
        self.root = os.path.join(workdir, "root")
        self.state = os.path.join(workdir, "state")
        self.managers: list[TaskManager] = []

    def new_manager(self) -> TaskManager:
        path = os.environ.get("PATH", "")
        env = {"PATH": ":".join(filter(None, [path, *peers.SBIN_DIRS]))}
        shims = ShimManager(
            address=os.path.join(self.workdir, "pyc.sock"),
            ttrpc_address=self.server.address,
            events=self.exchange,
            env=env,
        )
        tm = TaskManager(root=self.root, state=self.state, shims=shims)
        self.managers.append(tm)
        return tm

    def spec(self, id: str, args: list[str], **kw: object) -> tuple[str, bytes]:  # noqa: A002
        return oci.to_any(oci.default_spec(NAMESPACE, id, args=args, **kw))  # type: ignore[arg-type]

    def opts(self, id: str, args: list[str], io: IO | None = None, **kw: object) -> CreateOpts:  # noqa: A002
        return CreateOpts(
            spec=self.spec(id, args, **kw),
            rootfs=[Mount(type="bind", source=self.rootfs, options=("rbind", "rw"))],
            io=io or IO(),
            runtime=self.runtime,
        )

    def fifo_dir(self) -> str:
        return os.path.join(self.workdir, "fifo")

    def bundle(self, id: str) -> Path:  # noqa: A002
        return Path(self.state) / NAMESPACE / id


@pytest.fixture
def workdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="rtv2", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=RUNTIMES)
async def runtime_env(
    request: pytest.FixtureRequest, workdir: str, busybox_rootfs: str
) -> AsyncIterator[RuntimeEnv]:
    if request.param == "io.containerd.runc.v2":
        peers.require_binary("containerd-shim-runc-v2")
    peers.require_binary("runc")
    exchange = Exchange()
    server = Server(address=os.path.join(workdir, "pyc.sock.ttrpc"))
    await server.start([EventsService(exchange)])
    env = RuntimeEnv(workdir, exchange, server, busybox_rootfs, request.param)
    try:
        with namespaces.use(NAMESPACE):
            yield env
    finally:
        with namespaces.use(NAMESPACE):
            for tm in env.managers:
                for task in await tm.tasks(all=True):
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(10):
                            with contextlib.suppress(Exception):
                                await task.kill(signal.SIGKILL, all=True)
                            with contextlib.suppress(Exception):
                                await task.wait()
                            await tm.delete(task.id)
                await tm.shims.close()
        await server.stop(0)
        # nothing may stay mounted below the work dir
        leftovers = [p for p in _mounts() if p.startswith(workdir)]
        for p in sorted(leftovers, key=len, reverse=True):
            os.system(f"umount -l {p}")
        assert not leftovers, leftovers


def _mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]
