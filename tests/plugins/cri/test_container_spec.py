"""The container OCI spec: args from image + config, env order, cwd, namespaces joined through
the pause pid, mounts (sandbox files, binds with propagation and ro), capabilities, user,
readonly rootfs, oom_score_adj clamped, annotations, seccomp profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as pb
from pycontainerd.core import errdefs
from pycontainerd.plugins.cri.container import spec as specs
from pycontainerd.plugins.cri.sandbox.paths import SandboxPaths

IMAGE = {"Env": ["PATH=/bin", "A=image"], "Cmd": ["sh"], "WorkingDir": "/w", "User": ""}


def _sandbox() -> pb.PodSandboxConfig:
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="p", namespace="ns", uid="u"),
        hostname="h",
        linux=pb.LinuxPodSandboxConfig(cgroup_parent="/kubepods/pod1"),
        annotations={"example.com/a": "1"},
    )


def _spec(config: pb.ContainerConfig, **kw: object) -> dict:
    return specs.container_spec(
        id_="c1",
        sandbox_id="s1",
        sandbox_pid=4242,
        config=config,
        sandbox_config=kw.pop("sandbox_config", _sandbox()),
        image_config=kw.pop("image_config", IMAGE),
        image_name="busybox:latest",
        user=kw.pop("user", specs.User(0, 0, (0,))),
        all_caps=["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_KILL"],
        **kw,  # type: ignore[arg-type]
    )


def test_process_env_namespaces_annotations(tmp_path: Path) -> None:
    config = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="c"),
        args=["-c", "echo"],
        envs=[pb.KeyValue(key="A", value=b"config"), pb.KeyValue(key="B", value=b"b")],
    )
    s = _spec(config)
    assert s["process"]["args"] == ["sh", "-c", "echo"] or s["process"]["args"] == ["-c", "echo"]
    assert s["process"]["env"] == ["PATH=/bin", "HOSTNAME=h", "A=config", "B=b"]
    assert s["process"]["cwd"] == "/w" and s["process"]["noNewPrivileges"] is False
    ns = {n["type"]: n.get("path") for n in s["linux"]["namespaces"]}
    assert ns["network"] == "/proc/4242/ns/net" and ns["ipc"] == "/proc/4242/ns/ipc"
    assert ns["pid"] == "/proc/4242/ns/pid" and ns["mount"] is None
    assert s["linux"]["cgroupsPath"] == "/kubepods/pod1/c1"
    a = s["annotations"]
    assert a["io.kubernetes.cri.container-type"] == "container"
    assert a["io.kubernetes.cri.sandbox-id"] == "s1" and a["io.kubernetes.cri.image-name"]
    assert "example.com/a" not in a
    assert not any(m["destination"] == "/run" for m in s["mounts"])
    assert "seccomp" not in s["linux"]


def test_container_pid_namespace_and_missing_command() -> None:
    config = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), command=["x"])
    config.linux.security_context.namespace_options.pid = pb.CONTAINER
    s = _spec(config)
    assert {n["type"]: n.get("path") for n in s["linux"]["namespaces"]}["pid"] is None
    with pytest.raises(errdefs.InvalidArgument):
        _spec(pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c")), image_config={})


def test_mounts_and_sandbox_files(tmp_path: Path) -> None:
    paths = SandboxPaths(str(tmp_path / "root"), str(tmp_path / "state"), "s1")
    Path(paths.root).mkdir(parents=True)
    Path(paths.hosts).write_text("127.0.0.1 localhost\n")
    Path(paths.hostname).write_text("h\n")
    host = tmp_path / "data"
    host.mkdir()
    config = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="c"),
        command=["x"],
        mounts=[pb.Mount(container_path="/data", host_path=str(host), readonly=True)],
    )
    config.linux.security_context.readonly_rootfs = True
    s = _spec(config, paths=paths)
    by_dest = {m["destination"]: m for m in s["mounts"]}
    assert by_dest["/data"]["options"] == ["rbind", "rprivate", "ro"]
    assert by_dest["/etc/hosts"]["source"] == paths.hosts
    assert "ro" in by_dest["/etc/hostname"]["options"]
    assert "/etc/resolv.conf" not in by_dest  # no such sandbox file
    assert by_dest["/sys/fs/cgroup"]["options"][-1] == "ro"
    assert s["root"]["readonly"] is True
    config.mounts[0].recursive_read_only = True
    with pytest.raises(errdefs.InvalidArgument):
        _spec(config, paths=paths)


def test_capabilities_user_oom_and_privileged() -> None:
    config = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), command=["x"])
    sc = config.linux.security_context
    sc.capabilities.add_capabilities.append("SYS_ADMIN")
    sc.capabilities.drop_capabilities.append("KILL")
    sc.supplemental_groups.append(77)
    config.linux.resources.oom_score_adj = -1000
    s = _spec(
        config,
        user=specs.User(5, 6, (6, 9)),
        options=specs.SpecOptions(restrict_oom_score_adj=True),
    )
    caps = s["process"]["capabilities"]["bounding"]
    assert "CAP_SYS_ADMIN" in caps and "CAP_KILL" not in caps
    assert s["process"]["user"] == {"uid": 5, "gid": 6, "additionalGids": [6, 9, 77]}
    assert s["process"]["oomScoreAdj"] == max(-1000, specs.oom_score_adj(-1000, True))
    sc.capabilities.drop_capabilities[:] = ["ALL"]
    sc.capabilities.add_capabilities[:] = []
    assert _spec(config)["process"]["capabilities"]["bounding"] == []
    sc.privileged = True
    with pytest.raises(errdefs.InvalidArgument):
        _spec(config)
    sandbox = _sandbox()
    sandbox.linux.security_context.privileged = True
    s = _spec(config, sandbox_config=sandbox)
    assert s["process"]["capabilities"]["bounding"] == ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_KILL"]
    assert "maskedPaths" not in s["linux"]


def test_supplemental_groups_policy_strict_keeps_primary_gid() -> None:
    config = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), command=["x"])
    sc = config.linux.security_context
    sc.supplemental_groups.append(1234)
    sc.supplemental_groups_policy = pb.SupplementalGroupsPolicy.Strict
    # the image's /etc/group puts the user in 50000: Strict leaves it out, keeps the own gid
    s = _spec(config, user=specs.User(1000, 1000, (1000, 50000)))
    assert s["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 1234]}
    sc.supplemental_groups_policy = pb.SupplementalGroupsPolicy.Merge
    s = _spec(config, user=specs.User(1000, 1000, (1000, 50000)))
    assert s["process"]["user"]["additionalGids"] == [1000, 50000, 1234]


def test_image_volume_mount_becomes_a_readonly_bind_of_its_view(tmp_path: Path) -> None:
    view = tmp_path / "view"
    view.mkdir()
    config = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="c"),
        command=["x"],
        mounts=[
            pb.Mount(
                container_path="/mnt/image-volume",
                readonly=True,
                image=pb.ImageSpec(image="sha256:" + "1" * 64),
            )
        ],
    )
    # not prepared (no view mounted for it): refused, naming the mount
    with pytest.raises(errdefs.FailedPrecondition) as e:
        _spec(config)
    assert "/mnt/image-volume" in str(e.value)
    # prepared: a read-only, exec-able bind of the view
    config.mounts[0].host_path = str(view)
    s = _spec(config)
    (m,) = [m for m in s["mounts"] if m["destination"] == "/mnt/image-volume"]
    assert m["type"] == "bind" and m["source"] == str(view)
    assert "ro" in m["options"] and "noexec" not in m["options"]
    # a mount with neither host path nor image is still a bad argument
    config.mounts[0].ClearField("image")
    config.mounts[0].host_path = ""
    with pytest.raises(errdefs.InvalidArgument):
        _spec(config)


def test_seccomp_profiles(tmp_path: Path) -> None:
    config = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), command=["x"])
    config.linux.security_context.seccomp.profile_type = pb.SecurityProfile.RuntimeDefault
    prof = _spec(config)["linux"]["seccomp"]
    denied = prof["syscalls"][0]["names"]
    assert "kexec_load" in denied and "mount" in denied
    config.linux.security_context.capabilities.add_capabilities.append("SYS_ADMIN")
    assert "mount" not in _spec(config)["linux"]["seccomp"]["syscalls"][0]["names"]
    local = tmp_path / "p.json"
    local.write_text(
        '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], '
        '"action": "SCMP_ACT_ALLOW"}]}'
    )
    config.linux.security_context.seccomp.profile_type = pb.SecurityProfile.Localhost
    config.linux.security_context.seccomp.localhost_ref = str(local)
    assert _spec(config)["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    config.linux.security_context.seccomp.profile_type = pb.SecurityProfile.Unconfined
    assert "seccomp" not in _spec(config)["linux"]


def test_resolve_user(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nbob:x:1000:100::/:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nusers:x:100:\nwheel:x:10:bob,other\n")
    assert specs.resolve_user(str(tmp_path), "bob") == specs.User(1000, 100, (100, 10))
    assert specs.resolve_user(str(tmp_path), "1000:5") == specs.User(1000, 5, (5, 10))
    assert specs.resolve_user(str(tmp_path), "42") == specs.User(42, 0, (0,))
    with pytest.raises(errdefs.NotFound):
        specs.resolve_user(str(tmp_path), "nobody")
