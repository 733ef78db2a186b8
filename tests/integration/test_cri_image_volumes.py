"""Kubernetes image volumes (KEP-4639) through the CRI of the real daemon, with runc, the test
CNI network and images from a local docker-registry: a busybox image (one layer, its view a
bind mount) and a two-layer image built on it (its view an overlay) mounted into a busybox
container by reference and by image ID, read-only, executable, a sub path reached through an
absolute symlink of the image; ContainerStatus reporting the image ID; removal leaving no mount,
directory, snapshot or lease. Refused requests (read-write, missing image, missing or escaping
sub path, a file) leave nothing either. Across daemon restarts: a live container keeps its
volume (mounted again when the host mount went away), the volume of a container deleted behind
the CRI's back is cleaned up. A runtime handler using ``native`` gets the image unpacked there
on demand."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cri as cri_support
import grpc
import images as images_support
import pytest
from cri import CRIClient, pb
from daemon import Daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]

VOLUME_TREE: images_support.Tree = {
    "data": images_support.Dir(),
    "data/hello.txt": "hello from the image\n",
    "data/run.sh": images_support.File(data=b"#!/bin/sh\necho ran from the volume\n", mode=0o755),
    "data/sub": images_support.Dir(),
    "data/sub/inner.txt": "inner\n",
    "data/abs-sub": images_support.Symlink("/data/sub"),
    "data/escape": images_support.Symlink("../../.."),
}


@pytest.fixture(scope="module")
def refs(registry: Any, pause: Any, busybox: Any, image_cache: Path) -> dict[str, str]:
    volume = images_support.busybox_image(
        image_cache, name="docker.io/library/volume:v1", extra=VOLUME_TREE
    )
    registry.push(pause, repository="pause", tag="3.10")
    registry.push(busybox, repository="busybox", tag="latest")
    registry.push(volume, repository="volume", tag="v1")
    return {
        "pause": registry.ref("pause", "3.10"),
        "busybox": registry.ref("busybox", "latest"),
        "volume": registry.ref("volume", "v1"),
    }


def _config(base: Path, network: Any, registry: Any, pause_ref: str) -> str:
    return cri_support.daemon_config(
        base,
        network,
        registry,
        pause_ref,
        runtimes={
            "runc": 'runtime_type = "io.containerd.runc.v2"',
            "nativerunc": 'runtime_type = "io.containerd.runc.v2"\nsnapshotter = "native"',
        },
    )


class Env(cri_support.CRIDaemon):
    def __init__(self, base: Path, config: str, refs: dict[str, str]) -> None:
        env = cri_support.daemon_env()
        self.base = base
        self.daemon = Daemon(base / "d", config=config, env=env)
        self.refs = refs
        self.ids: dict[str, str] = {}
        self.cri: CRIClient | None = None
        self.pods: list[str] = []

    @property
    def volumes_dir(self) -> Path:
        return self.daemon.state / "io.containerd.grpc.v1.cri" / "image-volumes"

    def start(self) -> Env:
        super().start()
        # container calls wait until recovery (image volumes included) is done
        self.rs.ListContainers(pb.ListContainersRequest(), timeout=60)
        return self

    def run_pod(self, name: str, handler: str = "") -> tuple[str, Any]:
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="default"),
            hostname=name,
        )
        resp = self.rs.RunPodSandbox(
            pb.RunPodSandboxRequest(config=config, runtime_handler=handler), timeout=120
        )
        self.pods.append(resp.pod_sandbox_id)
        return str(resp.pod_sandbox_id), config

    def config(self, name: str, mounts: list[Any]) -> Any:
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name),
            image=pb.ImageSpec(image=self.refs["busybox"]),
            command=["sleep", "1000"],
            mounts=mounts,
        )

    def create(self, pod: tuple[str, Any], config: Any) -> str:
        resp = self.rs.CreateContainer(
            pb.CreateContainerRequest(pod_sandbox_id=pod[0], config=config, sandbox_config=pod[1]),
            timeout=120,
        )
        return str(resp.container_id)

    def start_c(self, id_: str) -> None:
        self.rs.StartContainer(pb.StartContainerRequest(container_id=id_), timeout=60)

    def remove_c(self, id_: str) -> None:
        self.rs.RemoveContainer(pb.RemoveContainerRequest(container_id=id_), timeout=60)

    def status(self, id_: str) -> Any:
        return self.rs.ContainerStatus(pb.ContainerStatusRequest(container_id=id_), timeout=30)

    def sh(self, id_: str, script: str) -> Any:
        return self.rs.ExecSync(
            pb.ExecSyncRequest(container_id=id_, cmd=["sh", "-c", script], timeout=30), timeout=60
        )

    def mount_points(self) -> list[str]:
        """Mounts at or below the image volumes directory (host mount namespace)."""
        prefix = str(self.volumes_dir)
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        return [p for p in points if p == prefix or p.startswith(prefix + "/")]

    def volume_snapshots(self, snapshotter: str = "overlayfs") -> list[str]:
        out = self.daemon.ctr("snapshots", "--snapshotter", snapshotter, "ls", namespace="k8s.io")
        return [line.split()[0] for line in out.stdout.splitlines() if "image-volumes" in line]

    def leases(self) -> list[str]:
        out = self.daemon.ctr("leases", "ls", "-q", namespace="k8s.io").stdout
        return [line for line in out.split() if line.startswith("cri-container-")]

    def container_dirs(self) -> list[str]:
        return sorted(os.listdir(self.volumes_dir)) if self.volumes_dir.exists() else []

    def assert_nothing_left(self) -> None:
        assert self.mount_points() == []
        assert self.container_dirs() == []
        assert self.volume_snapshots() == [] and self.volume_snapshots("native") == []
        assert self.leases() == []

    def close(self) -> None:
        if self.cri is not None:
            for id_ in self.pods:
                try:
                    self.rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=id_), timeout=60)
                    self.rs.RemovePodSandbox(
                        pb.RemovePodSandboxRequest(pod_sandbox_id=id_), timeout=60
                    )
                except grpc.RpcError:
                    pass
            self.cri.close()
        self.daemon.stop()
        for p in reversed(self.mount_points()):  # never leave a test's mount behind
            subprocess.run(["umount", "-l", p], check=False)


@pytest.fixture(scope="module")
def env(network: Any, registry: Any, refs: dict[str, str]) -> Iterator[Env]:
    base = Path(tempfile.mkdtemp(prefix="criiv", dir="/tmp"))
    e = Env(base, _config(base, network, registry, refs["pause"]), refs)
    try:
        e.start()
        assert e.cri is not None
        for name in ("busybox", "volume"):
            e.ids[name] = e.cri.pull(refs[name])
        yield e
    finally:
        e.close()
        if not os.environ.get("PYCONTAINERD_KEEP_TEST_DIRS"):
            shutil.rmtree(base, ignore_errors=True)


def _image_mount(path: str, image: str, sub_path: str = "", readonly: bool = True) -> Any:
    return pb.Mount(
        container_path=path,
        readonly=readonly,
        image=pb.ImageSpec(image=image),
        image_sub_path=sub_path,
    )


def test_image_volumes_readonly_executable_sub_path_status_and_removal(env: Env) -> None:
    pod = env.run_pod("volumes")
    config = env.config(
        "reader",
        [
            _image_mount("/mnt/bb", env.refs["busybox"]),  # by reference
            _image_mount("/mnt/vol", env.ids["volume"]),  # by image ID
            _image_mount("/mnt/sub", env.refs["volume"], "data/abs-sub"),  # same view
        ],
    )
    cid = env.create(pod, config)
    # one view per image, each mounted once on the host, and a record label holding each
    assert env.container_dirs() == [cid]
    assert sorted(os.listdir(env.volumes_dir / cid)) == sorted(
        env.ids[n].split(":")[1] for n in ("busybox", "volume")
    )
    assert len(env.mount_points()) == 2 and len(env.volume_snapshots()) == 2
    info = env.daemon.ctr("containers", "info", cid, namespace="k8s.io").stdout
    assert info.count("containerd.io/gc.ref.snapshot.overlayfs/image-volume.") == 2
    assert env.leases() == []

    env.start_c(cid)
    r = env.sh(cid, "cat /mnt/vol/data/hello.txt /mnt/sub/inner.txt; /mnt/vol/data/run.sh")
    assert (r.exit_code, r.stdout) == (0, b"hello from the image\ninner\nran from the volume\n")
    r = env.sh(cid, "/mnt/bb/bin/busybox echo exec ok && ls /mnt/bb/etc/passwd")
    assert (r.exit_code, r.stdout) == (0, b"exec ok\n/mnt/bb/etc/passwd\n")
    assert env.sh(cid, "test -e /mnt/bb/data || test -e /mnt/sub/data").exit_code != 0
    for target in ("/mnt/bb/new", "/mnt/vol/data/hello.txt", "/mnt/sub/x"):
        r = env.sh(cid, f"echo x > {target}")
        assert r.exit_code != 0 and b"Read-only file system" in r.stderr, target
    r = env.sh(cid, "grep -E ' /mnt/(bb|vol|sub) ' /proc/self/mounts")
    assert r.exit_code == 0 and all(" ro," in line for line in r.stdout.decode().splitlines())
    assert b"noexec" not in r.stdout

    mounts = {m.container_path: m for m in env.status(cid).status.mounts}
    assert set(mounts) == {"/mnt/bb", "/mnt/vol", "/mnt/sub"}
    assert mounts["/mnt/bb"].image.image == env.refs["busybox"]
    assert mounts["/mnt/bb"].image.image_ref == env.ids["busybox"]
    assert mounts["/mnt/vol"].image.image_ref == env.ids["volume"]
    assert mounts["/mnt/sub"].image.image_ref == env.ids["volume"]
    assert mounts["/mnt/sub"].image_sub_path == "data/abs-sub" and mounts["/mnt/sub"].readonly

    env.remove_c(cid)
    env.assert_nothing_left()
    assert env.cri is not None and env.cri.image_status(env.refs["volume"]).image.id


@pytest.mark.parametrize(
    ("mount", "code", "text"),
    [
        (
            _image_mount("/mnt/v", "@busybox", readonly=False),
            grpc.StatusCode.INVALID_ARGUMENT,
            "readonly must be true",
        ),
        (
            _image_mount("/mnt/v", "registry.invalid/missing:1"),
            grpc.StatusCode.NOT_FOUND,
            "'registry.invalid/missing:1' not found",
        ),
        (
            _image_mount("/mnt/v", "@volume", "not-existing"),
            grpc.StatusCode.NOT_FOUND,
            "'not-existing' does not exist",
        ),
        (
            _image_mount("/mnt/v", "@volume", "data/escape"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "out of the image",
        ),
        (_image_mount("/mnt/v", "@volume", "../etc"), grpc.StatusCode.INVALID_ARGUMENT, "'..'"),
        (
            _image_mount("/mnt/v", "@volume", "data/hello.txt"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "not a directory",
        ),
    ],
    ids=["read-write", "missing-image", "missing-sub-path", "escape", "dotdot", "file"],
)
def test_refused_image_volumes_leave_nothing(
    env: Env, mount: Any, code: grpc.StatusCode, text: str
) -> None:
    if mount.image.image.startswith("@"):
        mount.image.image = env.refs[mount.image.image[1:]]
    pod = env.run_pod(f"refused{len(env.pods)}")
    # a good image volume beside the bad one: its view is undone too
    config = env.config("bad", [_image_mount("/mnt/ok", env.refs["busybox"]), mount])
    with pytest.raises(grpc.RpcError) as exc:
        env.create(pod, config)
    assert exc.value.code() == code, exc.value.details()
    assert text in exc.value.details() and "ImageVolumeMountFailed" in exc.value.details()
    env.assert_nothing_left()
    listed = env.rs.ListContainers(pb.ListContainersRequest(), timeout=30).containers
    assert [c for c in listed if c.pod_sandbox_id == pod[0]] == []
    # the name was released: the same container without the bad mount is created
    cid = env.create(pod, env.config("bad", [_image_mount("/mnt/ok", env.refs["busybox"])]))
    env.remove_c(cid)
    env.assert_nothing_left()


def test_image_volumes_across_daemon_restarts(env: Env) -> None:
    pod = env.run_pod("restart")
    live = env.create(pod, env.config("live", [_image_mount("/mnt/vol", env.refs["volume"])]))
    env.start_c(live)
    gone = env.create(pod, env.config("gone", [_image_mount("/mnt/vol", env.refs["volume"])]))
    assert env.container_dirs() == sorted([live, gone]) and len(env.mount_points()) == 2

    # a restart keeps a live container's volume; one whose host mount went away (a reboot
    # empties the state dir) is mounted again
    (view,) = [p for p in env.mount_points() if f"/{live}/" in p]
    subprocess.run(["umount", view], check=True)
    # the container record of the other one disappears behind the CRI's back
    env.daemon.ctr("containers", "rm", gone, namespace="k8s.io")
    env.restart()
    assert env.container_dirs() == [live]
    assert env.mount_points() == [view]
    assert len(env.volume_snapshots()) == 1
    assert (Path(view) / "data" / "hello.txt").read_text() == "hello from the image\n"
    assert env.sh(live, "cat /mnt/vol/data/hello.txt").stdout == b"hello from the image\n"

    env.remove_c(live)
    env.assert_nothing_left()


def test_image_volume_unpacked_on_demand_into_the_handlers_snapshotter(env: Env) -> None:
    """The volume image was pulled for overlayfs; a pod of a runtime handler using ``native``
    gets it unpacked there, its view a native snapshot."""
    pod = env.run_pod("native", handler="nativerunc")
    cid = env.create(pod, env.config("c", [_image_mount("/mnt/vol", env.refs["volume"], "data")]))
    assert len(env.volume_snapshots("native")) == 1 and env.volume_snapshots() == []
    env.start_c(cid)
    r = env.sh(cid, "cat /mnt/vol/hello.txt && /mnt/vol/run.sh && ! touch /mnt/vol/x")
    assert (r.exit_code, r.stdout) == (0, b"hello from the image\nran from the volume\n")
    env.remove_c(cid)
    env.assert_nothing_left()
