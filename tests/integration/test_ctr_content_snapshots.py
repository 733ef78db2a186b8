"""The real daemon against Debian's containerd ``ctr``: content ingest/ls/get/label/active/rm,
snapshots prepare/mounts/commit/view/ls/info/usage/rm on overlayfs and native (the printed mount
commands are run for real), a proxy snapshotter served by contrib/snapshot-service, and the
error paths with the gRPC codes ctr shows."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from daemon import CTR, Daemon

from pycontainerd.api.containerd.services.content.v1 import content_pb2, content_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.root]

SERVICE = Path(__file__).resolve().parents[2] / "contrib" / "snapshot-service"
CTR_ENV = {**os.environ, "CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS": "1"}


def need_ctr() -> None:
    if not shutil.which("ctr"):
        if os.environ.get("CI"):
            pytest.fail("ctr (Debian package containerd) is not installed")
        pytest.skip("ctr (Debian package containerd) is not installed")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    need_ctr()
    base = tmp_path_factory.mktemp("ctr-storage")
    sock = base / "snsvc.sock"
    svc_log = open(base / "snsvc.log", "ab")
    svc = subprocess.Popen(
        [
            sys.executable,
            str(SERVICE / "snapshot_service.py"),
            "--address",
            str(sock),
            "--root",
            str(base / "snsvc-root"),
        ],
        stdout=svc_log,
        stderr=subprocess.STDOUT,
    )
    # ctr content ingest writes without a lease (as against containerd), so the blobs are
    # garbage; keep the collector from running on its own while the tests look at them
    config = (
        "version = 4\n\n"
        '[plugins."io.containerd.gc.v1.scheduler"]\n'
        '  startup_delay = "1h"\n'
        "  mutation_threshold = 1000000\n\n"
        f'[proxy_plugins.snsvc]\n  type = "snapshot"\n  address = "{sock}"\n'
    )
    d = Daemon(base / "d", config=config)
    d.start()
    yield d
    d.stop()
    svc.terminate()
    svc.wait(10)


def ingest(
    d: Daemon, ref: str, data: bytes, *, digest: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return d.ctr(
        "content",
        "ingest",
        "--expected-size",
        str(len(data)),
        "--expected-digest",
        digest or sha(data),
        ref,
        input=data,
        check=check,
    )


def content_rows(d: Daemon) -> dict[str, list[str]]:
    lines = d.ctr("content", "ls").stdout.splitlines()
    assert lines[0].split()[:2] == ["DIGEST", "SIZE"]
    return {line.split()[0]: line.split() for line in lines[1:]}


def test_content_ingest_ls_get_label_rm_round_trip(daemon, tmp_path) -> None:
    data = b"round trip through ctr\n" * 10
    dgst = sha(data)
    ingest(daemon, "rt-1", data)
    rows = content_rows(daemon)
    assert dgst in rows and rows[dgst][1] == f"{len(data)}B"
    got = subprocess.run(
        [CTR, "-a", daemon.address, "content", "get", dgst],
        capture_output=True,
        env=CTR_ENV,
        check=True,
    ).stdout
    assert got == data
    assert "foo=bar" in daemon.ctr("content", "label", dgst, "foo=bar").stdout
    assert content_rows(daemon)[dgst][-1] == "foo=bar"
    # the same blob again: already there, nothing to do
    ingest(daemon, "rt-2", data)
    assert daemon.ctr("content", "active").stdout.split("\n", 1)[1].strip() == ""
    assert dgst in daemon.ctr("content", "rm", dgst).stdout
    assert dgst not in content_rows(daemon)
    res = daemon.ctr("content", "get", dgst, check=False)
    assert res.returncode != 0 and "not found" in res.stderr
    # namespaces do not see each other's blobs; under the shared policy a namespace that
    # writes a blob the store already has gets it without sending the bytes again: the writer
    # starts at the end (so ctr needs a seekable stdin, exactly as against containerd)
    assert daemon.ctr("content", "ls", "-q", namespace="elsewhere").stdout.strip() == ""
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    with open(blob, "rb") as stdin:
        subprocess.run(
            [
                CTR,
                "-a",
                daemon.address,
                "-n",
                "elsewhere",
                "content",
                "ingest",
                "--expected-size",
                str(len(data)),
                "--expected-digest",
                dgst,
                "rt-4",
            ],
            stdin=stdin,
            env=CTR_ENV,
            check=True,
            capture_output=True,
        )
    assert daemon.ctr("content", "ls", "-q", namespace="elsewhere").stdout.split() == [dgst]


def test_content_active_shows_a_stalled_ingest(daemon) -> None:
    first = os.urandom((1 << 20) + 1000)  # ctr sends 1 MiB messages
    rest = os.urandom(5000)
    data = first + rest
    proc = subprocess.Popen(
        [
            CTR,
            "-a",
            daemon.address,
            "content",
            "ingest",
            "--expected-size",
            str(len(data)),
            "--expected-digest",
            sha(data),
            "stalled-ref",
        ],
        stdin=subprocess.PIPE,
        env=CTR_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(first)
        proc.stdin.flush()
        deadline = time.monotonic() + 20
        row: list[str] = []
        while time.monotonic() < deadline:
            lines = daemon.ctr("content", "active").stdout.splitlines()[1:]
            row = next((ln.split() for ln in lines if ln.startswith("stalled-ref")), [])
            if row and row[1] != "0B":
                break
            time.sleep(0.1)
        assert row and row[1] == "1.049MB", row
        proc.stdin.write(rest)
        proc.stdin.close()
        assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "stalled-ref" not in daemon.ctr("content", "active").stdout
    assert sha(data) in content_rows(daemon)


def test_content_errors_carry_their_grpc_codes(daemon) -> None:
    data = b"mismatch"
    wrong = sha(b"something else")
    res = ingest(daemon, "bad-digest", data, digest=wrong, check=False)
    assert res.returncode != 0
    assert "unexpected commit digest" in res.stderr and "failed precondition" in res.stderr
    res = daemon.ctr(
        "content", "ingest", "--expected-size", "3", "bad-size", input=b"four", check=False
    )
    assert res.returncode != 0 and "failed precondition" in res.stderr
    res = daemon.ctr("content", "ls", "labels.x==", check=False)
    assert res.returncode != 0 and "invalid argument" in res.stderr
    # ctr checks digests itself; a malformed one sent by any client is InvalidArgument
    with grpc.insecure_channel(f"unix:{daemon.address}") as ch:
        stub = content_pb2_grpc.ContentStub(ch)
        for call, req in (
            (stub.Info, content_pb2.InfoRequest(digest="sha256:bad")),
            (stub.Delete, content_pb2.DeleteContentRequest(digest="nodigest")),
        ):
            with pytest.raises(grpc.RpcError) as ei:
                call(req, metadata=(("containerd-namespace", "default"),))
            assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for ref in ("bad-digest", "bad-size"):
        daemon.ctr("content", "rm", ref, check=False)


def _run_mount_command(printed: str, target: Path) -> None:
    """Run what ``ctr snapshots mounts`` printed (``mount -t T SRC TARGET -o OPTS``)."""
    target.mkdir(parents=True, exist_ok=True)
    for line in printed.strip().splitlines():
        parts = line.split()
        assert parts[0] == "mount" and parts[1] == "-t" and parts[4] == str(target), line
        subprocess.run(parts, check=True, capture_output=True)


def _umount(target: Path) -> None:
    subprocess.run(["umount", str(target)], check=True)


@pytest.mark.parametrize("sn", ["overlayfs", "native", "snsvc"])
def test_snapshots_lifecycle_with_real_mounts(daemon, sn, tmp_path) -> None:
    if sn == "snsvc" and "snsvc" not in daemon.ctr("plugins", "ls").stdout:
        pytest.skip("the daemon does not register [proxy_plugins] yet (cli/daemon.py)")
    X = ("snapshots", "--snapshotter", sn)
    daemon.ctr(*X, "prepare", "work-1", "")
    mnt = tmp_path / "mnt"
    _run_mount_command(daemon.ctr(*X, "mounts", str(mnt), "work-1").stdout, mnt)
    try:
        (mnt / "hello").write_text("from base")
    finally:
        _umount(mnt)
    daemon.ctr(*X, "commit", "base", "work-1")
    daemon.ctr(*X, "prepare", "child", "base")
    _run_mount_command(daemon.ctr(*X, "mounts", str(mnt), "child").stdout, mnt)
    try:
        assert (mnt / "hello").read_text() == "from base"
        (mnt / "more").write_bytes(b"x" * 10000)
    finally:
        _umount(mnt)
    daemon.ctr(*X, "view", "look", "base")

    rows = {ln.split()[0]: ln.split() for ln in daemon.ctr(*X, "ls").stdout.splitlines()[1:]}
    assert rows["base"][1:] == ["Committed"]
    assert rows["child"][1:] == ["base", "Active"]
    assert rows["look"][1:] == ["base", "View"]
    info = daemon.ctr(*X, "info", "child").stdout
    assert '"Kind": "Active"' in info and '"Parent": "base"' in info
    usage = {ln.split()[0]: ln.split() for ln in daemon.ctr(*X, "usage").stdout.splitlines()[1:]}
    assert set(usage) >= {"base", "child", "look"}
    child_usage = daemon.ctr(*X, "usage", "child").stdout.splitlines()[1].split()
    # "KEY SIZE UNIT INODES": the 10000-byte file takes at least 12 KiB (native also copies
    # the parent's files)
    assert child_usage[0] == "child" and child_usage[2] == "KiB" and float(child_usage[1]) >= 12

    res = daemon.ctr(*X, "rm", "base", check=False)
    assert res.returncode != 0
    assert "failed precondition" in res.stderr and "child" in res.stderr
    daemon.ctr(*X, "rm", "child", "look")
    daemon.ctr(*X, "rm", "base")
    assert daemon.ctr(*X, "ls").stdout.splitlines()[1:] == []


def test_unknown_snapshotter_is_invalid_argument(daemon) -> None:
    res = daemon.ctr("snapshots", "--snapshotter", "nope", "ls", check=False)
    assert res.returncode != 0
    assert "snapshotter not loaded: nope: invalid argument" in res.stderr
    res = daemon.ctr(
        "snapshots", "--snapshotter", "native", "prepare", "k", "missing-parent", check=False
    )
    assert res.returncode != 0 and "not found" in res.stderr
