"""Debian's containerd ``ctr`` (1.6) against the real pycontainerd daemon: namespaces, leases,
images and containers records, garbage collection on ``images rm --sync`` and ``leases rm
--sync``, and ``ctr events`` decoding the object events the metadata store publishes.

Image and container records are made through the gRPC API with the generated stubs (the
content for images through the Content API under a lease), as a client library would."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from daemon import CTR, Daemon
from google.protobuf import any_pb2

from pycontainerd.api.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from pycontainerd.api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from pycontainerd.api.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from pycontainerd.api.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from pycontainerd.api.containerd.types import descriptor_pb2
from pycontainerd.core.content import digests

pytestmark = [pytest.mark.integration, pytest.mark.root]

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
SPEC_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    if not Path(CTR).exists():
        pytest.skip(f"{CTR} is not installed (Debian package containerd)")
    d = Daemon(tmp_path / "d")
    with d:
        yield d


def channel(d: Daemon) -> grpc.Channel:
    return grpc.insecure_channel(f"unix://{d.address}")


def md(ns: str, lease: str | None = None) -> list[tuple[str, str]]:
    out = [("containerd-namespace", ns)]
    if lease:
        out.append(("containerd-lease", lease))
    return out


def write_blob(ch: grpc.Channel, ns: str, lease: str, data: bytes, labels=None) -> str:  # type: ignore[no-untyped-def]
    dgst = digests.from_bytes(data)
    req = content_pb2.WriteContentRequest(
        action=content_pb2.COMMIT,
        ref=f"test-{dgst}",
        total=len(data),
        expected=dgst,
        offset=0,
        data=data,
        labels=labels or {},
    )
    stub = content_pb2_grpc.ContentStub(ch)
    for _ in stub.Write(iter([req]), metadata=md(ns, lease)):
        pass
    return dgst


def tiny_layer() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        data = b"hello from pycontainerd\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        info.mtime = 0
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_image(d: Daemon, ns: str, name: str, keep_lease: str | None = None) -> dict[str, str]:
    """An OCI image record (manifest -> config, layer) whose blobs were written under a
    temporary lease, which is removed once the image holds them. With ``keep_lease``, that
    lease holds the layer blob too. Returns the digests and total size."""
    with channel(d) as ch:
        leases = leases_pb2_grpc.LeasesStub(ch)
        tmp = leases.Create(leases_pb2.CreateRequest(), metadata=md(ns)).lease.id
        layer = tiny_layer()
        layer_d = write_blob(ch, ns, tmp, layer)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [layer_d]},
                "config": {},
            }
        ).encode()
        config_d = write_blob(ch, ns, tmp, config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": {"mediaType": CONFIG, "digest": config_d, "size": len(config)},
                "layers": [{"mediaType": LAYER, "digest": layer_d, "size": len(layer)}],
            }
        ).encode()
        manifest_d = write_blob(
            ch,
            ns,
            tmp,
            manifest,
            labels={
                "containerd.io/gc.ref.content.config": config_d,
                "containerd.io/gc.ref.content.l.0": layer_d,
            },
        )
        if keep_lease:
            leases.AddResource(
                leases_pb2.AddResourceRequest(
                    id=keep_lease, resource=leases_pb2.Resource(id=layer_d, type="content")
                ),
                metadata=md(ns),
            )
        images_pb2_grpc.ImagesStub(ch).Create(
            images_pb2.CreateImageRequest(
                image=images_pb2.Image(
                    name=name,
                    labels={"made.by": "test"},
                    target=descriptor_pb2.Descriptor(
                        media_type=MANIFEST, digest=manifest_d, size=len(manifest)
                    ),
                )
            ),
            metadata=md(ns),
        )
        leases.Delete(leases_pb2.DeleteRequest(id=tmp), metadata=md(ns))
    return {
        "manifest": manifest_d,
        "config": config_d,
        "layer": layer_d,
        "size": str(len(manifest) + len(config) + len(layer)),
    }


def make_container(d: Daemon, ns: str, id_: str, image: str = "") -> None:
    spec = json.dumps({"ociVersion": "1.1.0", "process": {"args": ["/bin/true"], "cwd": "/"}})
    with channel(d) as ch:
        containers_pb2_grpc.ContainersStub(ch).Create(
            containers_pb2.CreateContainerRequest(
                container=containers_pb2.Container(
                    id=id_,
                    image=image,
                    labels={"made.by": "test"},
                    runtime=containers_pb2.Container.Runtime(name="io.containerd.runc.v2"),
                    spec=any_pb2.Any(type_url=SPEC_URL, value=spec.encode()),
                )
            ),
            metadata=md(ns),
        )


def rows(out: str) -> list[list[str]]:
    """Table rows of ctr output, header dropped, split on whitespace."""
    return [line.split() for line in out.strip().splitlines()[1:]]


def test_ctr_namespaces_create_label_ls_rm(daemon: Daemon) -> None:
    daemon.ctr("namespaces", "create", "team-a", "owner=alice", "tier=gold")
    daemon.ctr("namespaces", "create", "team-b")
    daemon.ctr("namespaces", "label", "team-a", "tier=silver", "owner=")
    out = daemon.ctr("namespaces", "ls").stdout
    assert ["team-a", "tier=silver"] in rows(out), out
    assert ["team-b", "-"] in rows(out) or ["team-b"] in rows(out), out
    assert daemon.ctr("namespaces", "ls", "-q").stdout.split() == ["team-a", "team-b"]

    dup = daemon.ctr("namespaces", "create", "team-b", check=False)
    assert dup.returncode != 0 and "already exists" in dup.stderr

    # a namespace with something in it cannot go, and the message says what is left
    make_container(daemon, "team-a", "c1")
    daemon.ctr("leases", "create", "--id", "l1", namespace="team-a")
    res = daemon.ctr("namespaces", "rm", "team-a", check=False)
    assert res.returncode != 0
    assert "must be empty" in res.stderr and "containers" in res.stderr, res.stderr
    assert "leases" in res.stderr and "failed precondition" in res.stderr, res.stderr
    daemon.ctr("containers", "rm", "c1", namespace="team-a")
    daemon.ctr("leases", "rm", "l1", namespace="team-a")
    daemon.ctr("namespaces", "rm", "team-a", "team-b")
    assert daemon.ctr("namespaces", "ls", "-q").stdout.split() == []


def test_ctr_leases_create_ls_rm(daemon: Daemon) -> None:
    daemon.ctr("leases", "create", "--id", "mine", "purpose=test", "--expires", "1h")
    generated = daemon.ctr("leases", "create", "--expires", "0").stdout.strip()
    assert generated
    out = daemon.ctr("leases", "ls").stdout
    by_id = {r[0]: r for r in rows(out)}
    assert set(by_id) == {"mine", generated}, out
    labels = by_id["mine"][2].split(",")
    assert "purpose=test" in labels
    assert any(x.startswith("containerd.io/gc.expire=") for x in labels), out
    assert by_id[generated][2] == "-", "a lease created with --expires 0 has no labels"
    assert daemon.ctr("leases", "ls", "-q").stdout.split() == sorted([generated, "mine"])
    assert daemon.ctr("leases", "ls", "-q", "labels.purpose==test").stdout.split() == ["mine"]
    # leases are namespaced
    assert daemon.ctr("leases", "ls", "-q", namespace="other").stdout.split() == []
    daemon.ctr("leases", "rm", "mine")
    daemon.ctr("leases", "rm", "--sync", generated)
    assert daemon.ctr("leases", "ls", "-q").stdout.split() == []
    missing = daemon.ctr("leases", "rm", "mine", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr


def test_ctr_containers_ls_info_label_rm_on_a_record_made_through_grpc(daemon: Daemon) -> None:
    make_container(daemon, "work", "web", image="docker.io/library/busybox:latest")
    make_container(daemon, "work", "db")
    out = daemon.ctr("containers", "ls", namespace="work").stdout
    assert rows(out) == [
        ["db", "-", "io.containerd.runc.v2"],
        ["web", "docker.io/library/busybox:latest", "io.containerd.runc.v2"],
    ], out
    assert daemon.ctr(
        "containers", "ls", "-q", "image~=busybox", namespace="work"
    ).stdout.split() == ["web"]
    info = json.loads(daemon.ctr("containers", "info", "web", namespace="work").stdout)
    assert info["ID"] == "web" and info["Image"] == "docker.io/library/busybox:latest"
    assert info["Runtime"]["Name"] == "io.containerd.runc.v2"
    assert info["Labels"] == {"made.by": "test"}
    assert info["Spec"]["process"]["args"] == ["/bin/true"]  # ctr decoded our Any

    daemon.ctr("containers", "label", "web", "tier=front", "made.by=", namespace="work")
    info = json.loads(daemon.ctr("containers", "info", "web", namespace="work").stdout)
    assert info["Labels"] == {"tier": "front"}
    assert info["UpdatedAt"] > info["CreatedAt"]

    daemon.ctr("containers", "rm", "web", "db", namespace="work")
    assert daemon.ctr("containers", "ls", "-q", namespace="work").stdout.split() == []
    missing = daemon.ctr("containers", "info", "web", namespace="work", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr


def content_digests(d: Daemon, ns: str) -> set[str]:
    return set(d.ctr("content", "ls", "-q", namespace=ns).stdout.split())


def test_ctr_images_ls_rm_sync_collects_content_but_not_what_a_lease_holds(daemon: Daemon) -> None:
    ns = "imgs"
    daemon.ctr("leases", "create", "--id", "keep", "--expires", "0", namespace=ns)
    img = make_image(daemon, ns, "example.com/tiny:1", keep_lease="keep")
    out = daemon.ctr("images", "ls", namespace=ns).stdout
    (row,) = rows(out)
    assert row[0] == "example.com/tiny:1"
    assert row[1] == MANIFEST and row[2] == img["manifest"]
    assert "linux/amd64" in row, out
    assert "made.by=test" in row, out
    assert daemon.ctr("images", "ls", "-q", namespace=ns).stdout.split() == ["example.com/tiny:1"]
    assert daemon.ctr("images", "ls", "-q", "name~=^nothing", namespace=ns).stdout.split() == []
    blobs = {img["manifest"], img["config"], img["layer"]}
    assert blobs <= content_digests(daemon, ns)

    daemon.ctr("images", "rm", "--sync", "example.com/tiny:1", namespace=ns)
    assert daemon.ctr("images", "ls", "-q", namespace=ns).stdout.split() == []
    left = content_digests(daemon, ns)
    # the manifest and config went with the image; the layer is held by the lease
    assert img["manifest"] not in left and img["config"] not in left
    assert img["layer"] in left
    daemon.ctr("leases", "rm", "--sync", "keep", namespace=ns)
    assert content_digests(daemon, ns) == set()
    daemon.ctr("namespaces", "rm", ns)


@contextlib.contextmanager
def ctr_events(d: Daemon) -> Iterator[list[str]]:
    """``ctr events`` in the background, ready when the context is entered (probe namespaces
    are created until one shows up); the list holds its output lines."""
    proc = subprocess.Popen(
        [CTR, "-a", d.address, "events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS": "1", "PATH": "/usr/bin:/bin"},
    )
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 15
        n = 0
        while not any("/namespaces/create" in line for line in lines):
            assert time.monotonic() < deadline, f"ctr events saw nothing: {lines}"
            n += 1
            d.ctr("namespaces", "create", f"probe{n}")
            d.ctr("namespaces", "rm", f"probe{n}")
            time.sleep(0.1)
        yield lines
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any("/containers/create" in x for x in lines):
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(5)


def test_ctr_events_decodes_namespace_image_and_container_events(daemon: Daemon) -> None:
    with ctr_events(daemon) as lines:
        daemon.ctr("namespaces", "create", "evspace", "k=v")
        make_image(daemon, "evspace", "example.com/ev:1")
        make_container(daemon, "evspace", "evc", image="example.com/ev:1")
    text = "".join(lines)
    got: dict[str, list[tuple[str, str]]] = {}
    for line in (x.rstrip("\n") for x in lines):
        parts = line.split(" ", 6)
        if len(parts) == 7 and parts[5].startswith("/"):
            got.setdefault(parts[5], []).append((parts[4], parts[6]))
    assert ("evspace", '{"name":"evspace","labels":{"k":"v"}}') in got.get(
        "/namespaces/create", []
    ), text
    assert ("evspace", '{"name":"example.com/ev:1","labels":{"made.by":"test"}}') in got.get(
        "/images/create", []
    ), text
    (container_event,) = got["/containers/create"]
    assert container_event[0] == "evspace"
    decoded = json.loads(container_event[1])
    assert decoded["id"] == "evc" and decoded["image"] == "example.com/ev:1", text
    assert decoded["runtime"]["name"] == "io.containerd.runc.v2", text
    # /content/create (containerd 2.x) is the one event ctr 1.6 has no type for; every other
    # line is an event ctr decoded
    for line in lines:
        if "level=warning" in line:
            assert "containerd.events.ContentCreate: not found" in line, text
