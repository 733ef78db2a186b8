"""Debian's ``ctr`` (containerd 1.6) pulls a multi-layer image from a local docker-registry over
plain HTTP against the daemon (client-side: Content writes, Images, Leases, then Snapshots +
Diff to unpack), then ``ctr run --rm`` runs it through containerd's shim and runc: what the
layers stacked (files added above busybox, a file whited out) is what the container sees."""

from __future__ import annotations

import os
from pathlib import Path

import images
import peers
import pytest
from daemon import Daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]


@pytest.fixture(scope="module")
def layered(image_cache: Path) -> images.Image:
    return images.layered_image(
        image_cache,
        [
            images.busybox_tree(),
            {"etc/motd": b"from layer two\n", "opt/gone": b"x", "opt/kept": b"kept\n"},
            {images.whiteout("opt/gone"): images.WHITEOUT, "etc/layer3": b"three\n"},
        ],
        name="docker.io/library/pullrun:1",
        config={"Env": [images.DEFAULT_PATH_ENV], "Cmd": ["sh"]},
        media_types="docker",
    )


@pytest.fixture
def daemon(tmp_path: Path):
    for name in ("ctr", "containerd-shim-runc-v2", "runc"):
        peers.require_binary(name)
    env = {"PATH": ":".join(filter(None, [os.environ.get("PATH"), *peers.SBIN_DIRS]))}
    d = Daemon(tmp_path / "d", env=env)
    d.start()
    try:
        yield d
    finally:
        d.stop()


def test_ctr_pull_plain_http_then_run_rm(daemon, registry, layered):
    registry.push(layered, repository="library/pullrun")
    ref = registry.ref("library/pullrun", "1")
    res = daemon.ctr("images", "pull", "--plain-http", ref, timeout=180)
    assert "done" in res.stdout or "elapsed" in res.stdout, res.stdout
    assert ref in daemon.ctr("images", "ls", "-q").stdout.split()

    res = daemon.ctr(
        "run",
        "--rm",
        ref,
        "pullrun1",
        "sh",
        "-c",
        "cat /etc/motd /etc/layer3 /opt/kept; test ! -e /opt/gone && echo ok",
        timeout=120,
    )
    assert res.stdout == "from layer two\nthree\nkept\nok\n", res.stderr
    # --rm removed the container, its task and its snapshot; the image's chain stays
    assert daemon.ctr("containers", "ls", "-q").stdout.split() == []
    assert daemon.ctr("tasks", "ls", "-q").stdout.split() == []
    snaps = daemon.ctr("snapshots", "ls").stdout
    assert "pullrun1" not in snaps
    assert len([ln for ln in snaps.splitlines()[1:] if ln.strip().endswith("Committed")]) == 3
    # and the exit code comes back through ctr
    res = daemon.ctr("run", "--rm", ref, "pullrun2", "sh", "-c", "exit 3", check=False)
    assert res.returncode == 3, res.stderr
