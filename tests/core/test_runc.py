"""core/runc against the real runc: the container lifecycle through the wrapper, stdio handed
over as file descriptors, exec with a process spec, errors carrying runc's logged message."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import images
import peers
import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.runc import ConsoleSocket, Runc, RuncNotFound, Stdio, last_error

pytestmark = [pytest.mark.root, pytest.mark.integration]


@pytest.fixture(scope="module")
def rootfs(busybox: images.Image, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("runc") / "rootfs"
    dest.mkdir()
    for layer in busybox.layers:
        with busybox.blob_path(layer.descriptor.digest).open("rb") as raw:
            with tarfile.open(fileobj=gzip.GzipFile(fileobj=raw), mode="r|") as tf:
                images.extract_all(tf, dest, trusted=True)
    return dest


@pytest.fixture
async def env(rootfs: Path) -> AsyncIterator[tuple[Runc, Path]]:
    runc_bin = peers.require_binary("runc")
    base = Path(tempfile.mkdtemp(prefix="rnc", dir="/tmp"))
    rc = Runc(command=runc_bin, root=str(base / "root"), log=str(base / "log.json"))
    try:
        yield rc, base
    finally:
        for c in await rc.list():
            subprocess.run([runc_bin, "--root", rc.root, "delete", "-f", c["id"]], check=False)
        shutil.rmtree(base, ignore_errors=True)


def bundle(base: Path, rootfs: Path, args: list[str], terminal: bool = False) -> Path:
    b = base / "bundle"
    b.mkdir()
    subprocess.run(["runc", "spec", "--bundle", str(b)], check=True)
    spec = json.loads((b / "config.json").read_text())
    spec["process"]["args"] = args
    spec["process"]["terminal"] = terminal
    spec["root"] = {"path": str(rootfs), "readonly": True}
    (b / "config.json").write_text(json.dumps(spec))
    return b


async def wait_status(rc: Runc, id: str, status: str) -> dict:
    async with asyncio.timeout(10):
        while True:
            st = await rc.state(id)
            if st["status"] == status:
                return st
            await asyncio.sleep(0.05)


async def test_lifecycle_with_stdio_fds(env: tuple[Runc, Path], rootfs: Path) -> None:
    rc, base = env
    b = bundle(base, rootfs, ["sh", "-c", "echo out; echo err >&2; sleep 300"])
    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    pid = await rc.create(
        "c1", str(b), pid_file=str(b / "init.pid"), stdio=Stdio(stdout=w_out, stderr=w_err)
    )
    os.close(w_out)
    os.close(w_err)
    assert pid > 0
    st = await rc.state("c1")
    assert (st["status"], st["pid"]) == ("created", pid)
    await rc.start("c1")
    assert os.read(r_out, 100) == b"out\n"
    assert os.read(r_err, 100) == b"err\n"
    assert pid in await rc.ps("c1")
    assert [c["id"] for c in await rc.list()] == ["c1"]

    await rc.pause("c1")
    assert (await rc.state("c1"))["status"] == "paused"
    await rc.resume("c1")
    assert (await rc.state("c1"))["status"] == "running"

    await rc.update("c1", {"pids": {"limit": 50}})
    stats = await rc.stats("c1")
    assert stats["pids"]["current"] >= 1 and stats["pids"]["limit"] == 50
    assert stats["memory"]["usage"]["usage"] > 0

    # exec: a process spec, output through a pipe, detached
    r, w = os.pipe()
    spec = json.loads((b / "config.json").read_text())["process"]
    spec["args"] = ["echo", "exec-out"]
    epid = await rc.exec("c1", spec, pid_file=str(b / "e1.pid"), stdio=Stdio(stdout=w))
    os.close(w)
    assert epid > 0 and epid != pid
    assert os.read(r, 100) == b"exec-out\n"
    assert not list(b.glob(".exec-*.json"))  # the temporary spec file is gone

    await rc.kill("c1", 9, all=True)
    await wait_status(rc, "c1", "stopped")
    await rc.delete("c1")
    assert await rc.list() == []
    for fd in (r_out, r_err, r):
        os.close(fd)


async def test_errors_carry_runcs_message(env: tuple[Runc, Path], rootfs: Path) -> None:
    rc, base = env
    with pytest.raises(
        RuncNotFound, match="runc state failed: container does not exist: exit status 1"
    ):
        await rc.state("nope")
    with pytest.raises(errdefs.NotFound):
        await rc.kill("nope", 9)
    b = bundle(base, rootfs, ["/no/such/binary"])
    with pytest.raises(errdefs.Unknown, match="/no/such/binary.*no such file or directory") as ei:
        await rc.create("bad", str(b), pid_file=str(b / "init.pid"))
    assert "exit status 1" in str(ei.value)
    # the shared log file is read from where each command started
    assert "no such file" in last_error(rc.log)
    with pytest.raises(errdefs.NotFound, match="not found"):
        await Runc(command="/no/such/runc").state("x")


async def test_without_a_log_file_a_temporary_one_is_used(rootfs: Path) -> None:
    rc = Runc(command=peers.require_binary("runc"), root=tempfile.mkdtemp(prefix="rnc", dir="/tmp"))
    try:
        before = set(os.listdir(tempfile.gettempdir()))
        with pytest.raises(RuncNotFound, match="does not exist"):
            await rc.state("nope")
        assert not {
            n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("runc-log-")
        }
    finally:
        shutil.rmtree(rc.root, ignore_errors=True)


async def test_console_socket_hands_over_the_pty(env: tuple[Runc, Path], rootfs: Path) -> None:
    rc, base = env
    b = bundle(base, rootfs, ["sh", "-c", "stty size; sleep 300"], terminal=True)
    cs = ConsoleSocket.new(str(base))
    try:
        receive = asyncio.ensure_future(cs.receive_master())
        await rc.create("tty", str(b), pid_file=str(b / "init.pid"), console_socket=cs.path)
        master = await asyncio.wait_for(receive, 10)
    finally:
        cs.close()
    assert not os.path.exists(cs.path)
    from pycontainerd.core.runc import resize_console

    resize_console(master, 91, 27)
    await rc.start("tty")
    data = b""
    async with asyncio.timeout(10):
        while b"27 91" not in data:
            data += await asyncio.to_thread(os.read, master, 1024)
    os.close(master)
    await rc.delete("tty", force=True)
