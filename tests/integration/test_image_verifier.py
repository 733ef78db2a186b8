"""Image verifiers in the real daemon: ``io.containerd.image-verifier.v1.bindir`` with
``bin_dir`` pointing at verifier scripts written here, pulls from a local docker-registry
through ``pyctr images pull`` (Transfer) and the CRI PullImage (which pulls through Transfer).
A refusal fails the pull naming the verifier and its reason, fetches no blob and leaves no
image, content, ingest or lease behind; with the plugin disabled, pulls go through."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cri import CRIClient
from daemon import Daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]

URI = "io.containerd.image-verifier.v1.bindir"
CONTENT_ROOT = "io.containerd.content.v1.content"


def write_script(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _hosts(base: Path, registry: Any) -> Path:
    root = base / "certs.d"
    d = root / registry.host
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts.toml").write_text(
        f'server = "http://{registry.host}"\n'
        f'[host."http://{registry.host}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    return root


@pytest.fixture
def start(tmp_path: Path, registry: Any) -> Iterator[Callable[..., Daemon]]:
    """``start(bin_dir, disabled=False, timeout="30s")``: a daemon whose bindir verifier runs
    ``bin_dir``."""
    started: list[Daemon] = []

    def start_(bin_dir: Path, disabled: bool = False, timeout: str = "30s") -> Daemon:
        certs = _hosts(tmp_path, registry)
        config = f"""version = 3
{f'disabled_plugins = ["{URI}"]' if disabled else ""}
[plugins."{URI}"]
  bin_dir = "{bin_dir}"
  per_verifier_timeout = "{timeout}"
[plugins."io.containerd.cri.v1.images".registry]
  config_path = "{certs}"
[plugins."io.containerd.cri.v1.runtime".cni]
  conf_dir = "{tmp_path / "net.d"}"
"""
        d = Daemon(tmp_path / f"d{len(started)}", config=config)
        started.append(d)
        d.start()
        return d

    yield start_
    for d in started:
        d.stop()


def _alive(pid: int) -> bool:
    """Running (a zombie left for an init that does not reap counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def push(registry: Any, busybox: Any, repository: str) -> str:
    registry.push(busybox, repository=repository)
    return registry.ref(repository)


def blob_fetches(registry: Any, repository: str) -> list[Any]:
    """The blob downloads from ``repository`` (a push only checks and uploads)."""
    return [
        e for e in registry.access_log() if e.method == "GET" and f"/{repository}/blobs/" in e.path
    ]


def assert_nothing_left(d: Daemon, namespace: str, busybox: Any) -> None:
    names = d.ctr("images", "ls", "-q", namespace=namespace).stdout.split()
    assert names == []
    assert d.ctr("content", "ls", "-q", namespace=namespace).stdout.split() == []
    assert d.ctr("leases", "ls", "-q", namespace=namespace).stdout.split() == []
    blobs = d.root / CONTENT_ROOT / "blobs" / "sha256"
    image_blobs = {busybox.digest, busybox.manifest.digest, busybox.config.digest}
    image_blobs |= {layer.descriptor.digest for layer in busybox.layers}
    on_disk = {f"sha256:{p.name}" for p in blobs.iterdir()} if blobs.exists() else set()
    assert not on_disk & image_blobs
    ingest = d.root / CONTENT_ROOT / "ingest"
    assert not ingest.exists() or list(ingest.iterdir()) == []


def test_accepting_verifier_allows_the_pull_and_sees_name_digest_and_descriptor(
    start, registry, busybox, tmp_path
):
    ref = push(registry, busybox, "verifier-accept/busybox")
    bins = tmp_path / "bin"
    args_file, stdin_file = tmp_path / "args", tmp_path / "stdin"
    write_script(
        bins,
        "10-record",
        f'echo "$@" > {args_file}\ncat > {stdin_file}\necho "signed by the test"\n',
    )
    d = start(bins)
    out = d.pyctr("images", "pull", "--plain-http", ref).stdout
    assert "Completed pull" in out
    # announced once the verifiers allowed it, as containerd does
    assert "Pulling from" in out
    assert ref in d.pyctr("images", "ls", "-q").stdout.split()
    assert args_file.read_text().split() == [
        "-name",
        ref,
        "-digest",
        busybox.digest,
        "-stdin-media-type",
        "application/vnd.oci.descriptor.v1+json",
    ]
    desc = json.loads(stdin_file.read_text())
    assert (desc["mediaType"], desc["digest"], desc["size"]) == (
        busybox.target.media_type,
        busybox.digest,
        busybox.target.size,
    )


def test_rejecting_verifier_refuses_the_pyctr_pull_and_nothing_is_left(
    start, registry, busybox, tmp_path
):
    repo = "verifier-deny/busybox"
    ref = push(registry, busybox, repo)
    bins = tmp_path / "bin"
    write_script(bins, "10-allow", "echo fine\n")
    write_script(bins, "20-deny", "echo 'image is not signed by ACME'\nexit 7\n")
    d = start(bins)
    res = d.pyctr("images", "pull", "--plain-http", ref, check=False)
    assert res.returncode != 0
    assert "Pulling from" not in res.stdout + res.stderr
    assert (
        f"image verifier bindir blocked pull of {ref} with digest {busybox.digest} for reason: "
        "verifier 20-deny rejected image (exit code 7): image is not signed by ACME"
    ) in res.stderr, res.stderr
    # refused before anything was fetched
    assert blob_fetches(registry, repo) == []
    assert_nothing_left(d, "default", busybox)


def test_rejecting_verifier_refuses_the_cri_pull_and_nothing_is_left(
    start, registry, busybox, tmp_path
):
    repo = "verifier-cri/busybox"
    ref = push(registry, busybox, repo)
    bins = tmp_path / "bin"
    write_script(bins, "deny", "echo 'blocked by policy'\nexit 1\n")
    d = start(bins)
    with CRIClient(d.address) as cri:
        with pytest.raises(grpc.RpcError) as ei:
            cri.pull(ref)
        err = ei.value
        assert err.code() == grpc.StatusCode.UNKNOWN
        assert f"failed to pull and unpack image {ref!r}" in err.details()
        assert (
            "image verifier bindir blocked pull of "
            f"{ref} with digest {busybox.digest} for reason: "
            "verifier deny rejected image (exit code 1): blocked by policy"
        ) in err.details()
        assert cri.list_images() == []
    assert blob_fetches(registry, repo) == []
    assert_nothing_left(d, "k8s.io", busybox)


def test_a_verifier_that_times_out_blocks_the_pull(start, registry, busybox, tmp_path):
    repo = "verifier-slow/busybox"
    ref = push(registry, busybox, repo)
    bins = tmp_path / "bin"
    pids = tmp_path / "pids"
    write_script(bins, "slow", f"sleep 300 &\necho $$ $! > {pids}\nsleep 300\n")
    d = start(bins, timeout="1s")
    res = d.pyctr("images", "pull", "--plain-http", ref, check=False)
    assert res.returncode != 0
    assert (
        f"blocking pull of {ref} with digest {busybox.digest}: image verifier bindir returned "
        "error: failed to call verifier slow (runtime "
    ) in res.stderr, res.stderr
    assert "timed out after 1s, process group killed" in res.stderr
    left = [int(p) for p in pids.read_text().split()]
    deadline = time.monotonic() + 10
    while any(map(_alive, left)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(_alive, left)), "the verifier's process group survived its timeout"
    assert blob_fetches(registry, repo) == []
    assert_nothing_left(d, "default", busybox)


def test_with_the_bindir_plugin_disabled_the_transfer_service_still_pulls(
    start, registry, busybox, tmp_path
):
    ref = push(registry, busybox, "verifier-disabled/busybox")
    bins = tmp_path / "bin"
    write_script(bins, "deny", "echo no\nexit 1\n")
    d = start(bins, disabled=True)
    assert URI not in d.ctr("plugins", "ls").stdout
    d.pyctr("images", "pull", "--plain-http", "--no-progress", ref)
    assert ref in d.pyctr("images", "ls", "-q").stdout.split()
