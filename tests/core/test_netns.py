from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.mount import linux
from pycontainerd.core.netns import DEFAULT_BASE_DIR, NetNS, is_netns

pytestmark = [pytest.mark.root, pytest.mark.integration]


def netns_inode(path: str) -> int:
    return os.stat(path).st_ino


def own_netns() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def links_in(path: str) -> str:
    return subprocess.run(
        ["nsenter", f"--net={path}", "ip", "-o", "link"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout


def test_create_pins_a_new_namespace_at_a_random_cni_name(tmp_path: Path) -> None:
    before = own_netns()
    ns = NetNS.create(str(tmp_path / "netns"))
    try:
        assert re.fullmatch(
            r"cni-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", ns.name
        )
        assert os.path.dirname(ns.path) == str(tmp_path / "netns")
        assert is_netns(ns.path) and not ns.closed()
        assert linux.is_mount_point(ns.path)
        # a different namespace from ours, and ours did not move
        assert netns_inode(ns.path) != os.stat("/proc/self/ns/net").st_ino
        assert own_netns() == before
        # nothing but a loopback, down
        out = links_in(ns.path)
        assert out.count(": lo:") == 1 and len(out.splitlines()) == 1
        assert "state DOWN" in out
        other = NetNS.create(str(tmp_path / "netns"))
        try:
            assert other.path != ns.path
            assert netns_inode(other.path) != netns_inode(ns.path)
        finally:
            other.remove()
    finally:
        ns.remove()


def test_remove_unmounts_and_unlinks_and_is_idempotent(tmp_path: Path) -> None:
    ns = NetNS.create(str(tmp_path))
    ns.remove()
    assert not os.path.lexists(ns.path)
    assert not linux.is_mount_point(ns.path)
    assert ns.closed()
    ns.remove()
    NetNS.load(str(tmp_path / "never-existed")).remove()


def test_a_leftover_plain_file_counts_as_closed_and_is_removed(tmp_path: Path) -> None:
    # what a reboot leaves: the file without the namespace mounted on it
    stale = tmp_path / "cni-stale"
    stale.touch()
    ns = NetNS.load(str(stale))
    assert ns.closed()
    assert not stale.exists()


def test_run_in_executes_inside_the_namespace_and_leaves_the_caller_alone(
    tmp_path: Path,
) -> None:
    ns = NetNS.create(str(tmp_path))
    try:
        before = own_netns()
        caller = threading.get_native_id()
        inside, tid = ns.run_in(lambda: (own_netns(), threading.get_native_id()))
        assert inside == f"net:[{netns_inode(ns.path)}]"
        assert tid != caller
        assert own_netns() == before
        with pytest.raises(ZeroDivisionError):
            ns.run_in(lambda: 1 / 0)
    finally:
        ns.remove()
    with pytest.raises(errdefs.NotFound):
        ns.run_in(lambda: None)


def test_loopback_up(tmp_path: Path) -> None:
    ns = NetNS.create(str(tmp_path))
    try:
        ns.loopback_up()
        assert "LOWER_UP" in links_in(ns.path)
        ns.loopback_up()  # already up: fine
    finally:
        ns.remove()


def test_pin_the_namespace_of_a_process(tmp_path: Path) -> None:
    proc = subprocess.Popen(["unshare", "--net", "sleep", "30"])
    try:
        target = f"/proc/{proc.pid}/ns/net"
        for _ in range(100):  # until unshare has exec'd sleep in its new namespace
            if os.stat(target).st_ino != os.stat("/proc/self/ns/net").st_ino:
                break
            threading.Event().wait(0.02)
        ns = NetNS.create(str(tmp_path), pid=proc.pid)
        try:
            assert netns_inode(ns.path) == os.stat(target).st_ino
        finally:
            ns.remove()
    finally:
        proc.kill()
        proc.wait()


async def test_async_wrappers(tmp_path: Path) -> None:
    ns = await NetNS.acreate(str(tmp_path))
    try:
        await ns.aloopback_up()
        assert await ns.arun_in(own_netns) == f"net:[{netns_inode(ns.path)}]"
    finally:
        await ns.aremove()
    assert ns.closed()


@pytest.mark.skipif(not shutil.which("ip"), reason="iproute2 not installed")
def test_default_base_dir_is_where_ip_netns_looks() -> None:
    existed = os.path.isdir(DEFAULT_BASE_DIR)
    ns = NetNS.create()
    try:
        assert os.path.dirname(ns.path) == DEFAULT_BASE_DIR
        listed = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout
        assert ns.name in listed
        out = subprocess.run(
            ["ip", "-n", ns.name, "-o", "link"], capture_output=True, text=True, check=True
        ).stdout
        assert ": lo:" in out
    finally:
        ns.remove()
        if not existed:
            with contextlib.suppress(OSError):
                os.rmdir(DEFAULT_BASE_DIR)
    assert not os.path.exists(ns.path)
