"""Crash safety of storage against the real daemon: it is killed with SIGKILL in the middle of a
large content write and in the middle of an unpack, then restarted.

What must hold afterwards (issue 3): the ingest is listed and resumes at its offset (only the
remaining bytes are sent), no partial blob is visible, no half-applied snapshot is committed
(``extract-*`` snapshots stay active, nothing beyond the last fully applied layer exists as a
chain ID), and garbage collection removes what the crash orphaned, down to the backend
directories.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import images
import pytest
from daemon import CTR, Daemon

from pycontainerd.api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.root]

CTR_ENV = {**os.environ, "CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS": "1"}
MiB = 1 << 20
CONTENT_ROOT = "io.containerd.content.v1.content"
# the collector runs only when a sync delete asks for it, so the test decides when
CONFIG = (
    "version = 4\n\n"
    '[plugins."io.containerd.gc.v1.scheduler"]\n'
    '  startup_delay = "1h"\n'
    "  mutation_threshold = 1000000\n"
)
LARGE_NAME = "docker.io/library/crash-unpack:latest"


def need_ctr() -> None:
    if not shutil.which("ctr"):
        if os.environ.get("CI"):
            pytest.fail("ctr (Debian package containerd) is not installed")
        pytest.skip("ctr (Debian package containerd) is not installed")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    need_ctr()
    d = Daemon(tmp_path / "d", config=CONFIG)
    d.start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def large(image_cache: Path) -> images.Image:
    """Five layers of 24 MiB random data: long enough to catch an unpack in the middle."""
    return images.large_image(image_cache, [24 * MiB] * 5, seed=31, name=LARGE_NAME)


def _md(namespace: str = "default", lease: str = "") -> list[tuple[str, str]]:
    md = [("containerd-namespace", namespace)]
    if lease:
        md.append(("containerd-lease", lease))
    return md


def gc_now(d: Daemon) -> None:
    """Run a synchronous collection (a sync lease delete waits for it)."""
    d.ctr("leases", "create", "--id", "gc-trigger")
    d.ctr("leases", "rm", "--sync", "gc-trigger")


def ingest_status(d: Daemon, ref: str) -> content_pb2.Status | None:
    with grpc.insecure_channel("unix://" + d.address) as ch:
        try:
            return (
                content_pb2_grpc.ContentStub(ch)
                .Status(content_pb2.StatusRequest(ref=ref), metadata=_md(), timeout=10)
                .status
            )
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise


def active_refs(d: Daemon) -> dict[str, str]:
    """``ctr content active``: ref -> size column."""
    rows = d.ctr("content", "active").stdout.splitlines()[1:]
    return {r.split()[0]: r.split()[1] for r in rows if r.strip()}


def content_ls(d: Daemon) -> list[str]:
    return d.ctr("content", "ls", "-q").stdout.split()


def blob_files(d: Daemon) -> set[str]:
    root = d.root / CONTENT_ROOT / "blobs" / "sha256"
    return {"sha256:" + p.name for p in root.iterdir()} if root.is_dir() else set()


def ingest_dirs(d: Daemon) -> list[Path]:
    root = d.root / CONTENT_ROOT / "ingest"
    return list(root.iterdir()) if root.is_dir() else []


def wait_for(what: str, cond, timeout: float = 60.0, interval: float = 0.01):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkill_mid_ingest_resumes_at_its_offset_and_never_shows_a_partial_blob(
    daemon: Daemon,
) -> None:
    data = os.urandom(64 * MiB)
    dgst = sha(data)
    ref = "crash-ingest"
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
            dgst,
            ref,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=CTR_ENV,
    )
    try:
        assert proc.stdin is not None
        # the pipe pauses after 20 MiB: ctr sends what it has, then waits for more
        proc.stdin.write(data[: 20 * MiB])
        proc.stdin.flush()
        st = wait_for(
            "the ingest to reach 16 MiB",
            lambda: (s := ingest_status(daemon, ref)) is not None and s.offset >= 16 * MiB and s,
        )
        assert st.total == len(data)
        daemon.kill()
    finally:
        proc.kill()
        proc.wait()

    daemon.start()
    # listed, with the bytes that reached the disk before the kill
    assert ref in active_refs(daemon)
    st = ingest_status(daemon, ref)
    assert st is not None
    offset = st.offset
    assert 16 * MiB <= offset <= 20 * MiB and st.total == len(data)
    # nothing of it is visible as a blob
    assert dgst not in content_ls(daemon)
    assert dgst not in blob_files(daemon)
    res = daemon.ctr("content", "get", dgst, check=False)
    assert res.returncode != 0 and "not found" in res.stderr

    # resume with the same ref: STAT gives the offset, and only the rest is sent
    sent = 0

    def requests() -> Iterator[content_pb2.WriteContentRequest]:
        nonlocal sent
        yield content_pb2.WriteContentRequest(
            action=content_pb2.STAT, ref=ref, total=len(data), expected=dgst
        )
        pos = offset
        while pos < len(data):
            chunk = data[pos : pos + MiB]
            last = pos + len(chunk) == len(data)
            sent += len(chunk)
            yield content_pb2.WriteContentRequest(
                action=content_pb2.COMMIT if last else content_pb2.WRITE,
                ref=ref,
                offset=pos,
                data=chunk,
                total=len(data),
                expected=dgst,
            )
            pos += len(chunk)

    with grpc.insecure_channel("unix://" + daemon.address) as ch:
        responses = list(
            content_pb2_grpc.ContentStub(ch).Write(requests(), metadata=_md(), timeout=60)
        )
    assert responses[0].action == content_pb2.STAT and responses[0].offset == offset
    assert responses[1].offset == offset + MiB  # the first write continued where it stopped
    assert responses[-1].action == content_pb2.COMMIT
    assert responses[-1].offset == len(data) and responses[-1].digest == dgst
    assert sent == len(data) - offset

    assert ref not in active_refs(daemon)
    assert dgst in content_ls(daemon)
    got = subprocess.run(
        [CTR, "-a", daemon.address, "content", "get", dgst],
        capture_output=True,
        env=CTR_ENV,
        check=True,
    ).stdout
    assert sha(got) == dgst
    assert ingest_dirs(daemon) == []
    # written without a lease and referenced by nothing: the next collection removes it
    gc_now(daemon)
    assert dgst not in content_ls(daemon)
    assert dgst not in blob_files(daemon)


def test_sigkill_mid_leased_ingest_then_lease_delete_collects_the_ingest(
    daemon: Daemon,
) -> None:
    daemon.ctr("leases", "create", "--id", "ingest-lease")
    ref = "leased-ingest"
    data = os.urandom(8 * MiB)
    ch = grpc.insecure_channel("unix://" + daemon.address)
    stop = False

    def requests() -> Iterator[content_pb2.WriteContentRequest]:
        yield content_pb2.WriteContentRequest(
            action=content_pb2.WRITE,
            ref=ref,
            offset=0,
            data=data,
            total=3 * len(data),
            expected=sha(data * 3),
        )
        while not stop:  # the client stops sending; the stream stays open
            time.sleep(0.05)

    call = content_pb2_grpc.ContentStub(ch).Write(requests(), metadata=_md(lease="ingest-lease"))
    try:
        wait_for(
            "the leased ingest to take the first write",
            lambda: (s := ingest_status(daemon, ref)) is not None and s.offset == len(data),
        )
        daemon.kill()
    finally:
        stop = True
        call.cancel()
        ch.close()

    daemon.start()
    assert ref in active_refs(daemon)
    assert len(ingest_dirs(daemon)) == 1
    # the lease holds it through a collection ...
    gc_now(daemon)
    assert ref in active_refs(daemon)
    # ... and its sync delete takes the ingest with it, backend directory included
    daemon.ctr("leases", "rm", "--sync", "ingest-lease")
    assert ref not in active_refs(daemon)
    assert ingest_dirs(daemon) == []


def _snapshots(d: Daemon, snapshotter: str) -> list[snapshots_pb2.Info]:
    with grpc.insecure_channel("unix://" + d.address) as ch:
        out: list[snapshots_pb2.Info] = []
        for resp in snapshots_pb2_grpc.SnapshotsStub(ch).List(
            snapshots_pb2.ListSnapshotsRequest(snapshotter=snapshotter),
            metadata=_md(),
            timeout=10,
        ):
            out.extend(resp.info)
        return out


def _backend_snapshot_dirs(d: Daemon, snapshotter: str) -> list[str]:
    root = d.root / f"io.containerd.snapshotter.v1.{snapshotter}" / "snapshots"
    return sorted(os.listdir(root)) if root.is_dir() else []


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
def test_sigkill_mid_unpack_commits_no_half_snapshot_and_gc_cleans_it(
    daemon: Daemon, large: images.Image, tmp_path: Path, snapshotter: str
) -> None:
    arc = large.oci_archive(tmp_path / "large.tar")
    chain = _chain_ids(large.diff_ids)
    proc = subprocess.Popen(
        [CTR, "-a", daemon.address, "images", "import", "--snapshotter", snapshotter, str(arc)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=CTR_ENV,
    )
    try:

        def mid_extract() -> list[snapshots_pb2.Info] | None:
            assert proc.poll() is None, "the import finished before it could be interrupted"
            infos = _snapshots(daemon, snapshotter)
            committed = [i for i in infos if i.kind == snapshots_pb2.COMMITTED]
            extracting = [i for i in infos if i.name.startswith("extract-")]
            return infos if committed and extracting else None

        wait_for("an extraction on top of a committed layer", mid_extract, timeout=120)
        daemon.kill()
    finally:
        proc.wait(30)
    assert proc.returncode != 0

    daemon.start()
    infos = _snapshots(daemon, snapshotter)
    committed = {i.name for i in infos if i.kind == snapshots_pb2.COMMITTED}
    extracting = [i for i in infos if i.name.startswith("extract-")]
    # extraction snapshots stay active and are never committed under any name
    assert extracting and all(i.kind == snapshots_pb2.ACTIVE for i in extracting)
    assert not any(n.startswith("extract-") for n in committed)
    # committed chain IDs are a prefix of the chain: every layer below was fully applied,
    # nothing above the last one exists
    applied = len(committed)
    assert 1 <= applied < len(chain)
    assert committed == set(chain[:applied])
    for info in extracting:
        assert info.name.split(" ", 1)[1] == chain[applied]
        assert info.parent == chain[applied - 1]
    # the image record and its blobs are there (ctr records before it unpacks), unpack is not
    assert LARGE_NAME in daemon.ctr("images", "ls", "-q").stdout.split()
    blobs = {la.descriptor.digest for la in large.layers} | {
        large.config.digest,
        large.manifest.digest,
    }
    assert blobs <= set(content_ls(daemon))
    leases = daemon.ctr("leases", "ls", "-q").stdout.split()
    assert len(leases) == 1  # the lease ctr import took (24h gc.expire), left by the kill

    # the lease still holds the extraction and the applied layers through a collection
    gc_now(daemon)
    assert {i.name for i in _snapshots(daemon, snapshotter)} == {i.name for i in infos}
    # deleting it orphans them: the collector removes them, backend directories included
    daemon.ctr("leases", "rm", "--sync", leases[0])
    assert _snapshots(daemon, snapshotter) == []
    assert _backend_snapshot_dirs(daemon, snapshotter) == []
    # the image alone keeps its blobs; removing it frees them
    assert blobs <= set(content_ls(daemon))
    daemon.ctr("images", "rm", "--sync", LARGE_NAME)
    assert content_ls(daemon) == []
    assert blob_files(daemon) == set()

    # and the same archive imports and unpacks completely after all that
    daemon.ctr("images", "import", "--snapshotter", snapshotter, str(arc), timeout=300)
    infos = _snapshots(daemon, snapshotter)
    assert {i.name for i in infos} == set(chain)
    assert all(i.kind == snapshots_pb2.COMMITTED for i in infos)


def _chain_ids(diff_ids: tuple[str, ...]) -> list[str]:
    """OCI chain IDs: ChainID(n) = sha256(ChainID(n-1) + " " + DiffID(n))."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else sha(f"{out[-1]} {d}".encode()))
    return out
