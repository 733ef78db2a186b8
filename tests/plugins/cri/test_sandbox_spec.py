"""The pause container's OCI spec and the sandbox files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as pb
from pycontainerd.core import errdefs
from pycontainerd.plugins.cri.podsandbox import files
from pycontainerd.plugins.cri.podsandbox.spec import (
    cgroups_path,
    current_oom_score_adj,
    oom_score_adj,
    sandbox_spec,
)
from pycontainerd.plugins.cri.sandbox.paths import SandboxPaths

IMAGE = {"Entrypoint": ["/pause"], "Env": ["PATH=/bin", "A=1"], "User": "65535:65535"}


def _config(**kw: object) -> pb.PodSandboxConfig:
    config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="web", uid="u1", namespace="ns"),
        hostname="web-host",
        log_directory="/var/log/pods/x",
        annotations={"example.com/a": "1", "b": "2"},
    )
    for k, v in kw.items():
        setattr(config, k, v)
    return config


def _spec(config: pb.PodSandboxConfig, tmp_path: Path, **kw: object) -> dict:
    return sandbox_spec(
        id_="sid",
        config=config,
        image_config=IMAGE,
        image_name="registry.k8s.io/pause:3.10",
        netns_path="/var/run/netns/cni-1",
        paths=SandboxPaths(str(tmp_path / "root"), str(tmp_path / "state"), "sid"),
        pod_annotations=["example.com/*"],
        **kw,  # type: ignore[arg-type]
    )


def _ns(spec: dict) -> dict[str, str]:
    return {n["type"]: n.get("path", "") for n in spec["linux"]["namespaces"]}


def test_pod_network_spec(tmp_path: Path) -> None:
    spec = _spec(_config(), tmp_path)
    p = spec["process"]
    assert p["args"] == ["/pause"]
    assert "PATH=/bin" in p["env"] and "A=1" in p["env"]
    assert p["user"] == {"uid": 65535, "gid": 65535}
    assert "rlimits" not in p and "seccomp" not in spec["linux"]
    assert spec["root"] == {"path": "rootfs", "readonly": True}
    assert spec["hostname"] == "web-host"
    assert _ns(spec) == {
        "pid": "",
        "ipc": "",
        "uts": "",
        "mount": "",
        "network": "/var/run/netns/cni-1",
    }
    assert spec["linux"]["cgroupsPath"] == "/k8s.io/sid"
    assert spec["linux"]["resources"]["cpu"]["shares"] == 2
    assert spec["linux"]["sysctl"] == {
        "net.ipv4.ip_unprivileged_port_start": "0",
        "net.ipv4.ping_group_range": "0 2147483647",
    }
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert "/run" not in mounts
    assert mounts["/dev/shm"]["source"] == str(tmp_path / "state" / "sandboxes" / "sid" / "shm")
    assert mounts["/etc/resolv.conf"]["source"].endswith("/sandboxes/sid/resolv.conf")
    assert mounts["/sys"]["options"][-1] == "ro"
    a = spec["annotations"]
    assert a["io.kubernetes.cri.container-type"] == "sandbox"
    assert a["io.kubernetes.cri.sandbox-id"] == "sid"
    assert a["io.kubernetes.cri.sandbox-name"] == "web"
    assert a["io.kubernetes.cri.sandbox-namespace"] == "ns"
    assert a["io.kubernetes.cri.sandbox-uid"] == "u1"
    assert a["io.kubernetes.cri.sandbox-log-directory"] == "/var/log/pods/x"
    assert a["io.kubernetes.cri.podsandbox.image-name"] == "registry.k8s.io/pause:3.10"
    assert a["example.com/a"] == "1" and "b" not in a
    assert p["oomScoreAdj"] == -998


def test_host_namespaces_cgroup_parent_user_and_sysctls(tmp_path: Path) -> None:
    config = _config()
    lx = config.linux
    lx.cgroup_parent = "/kubepods/besteffort"
    lx.sysctls["net.ipv4.ip_unprivileged_port_start"] = "1024"
    sc = lx.security_context
    sc.namespace_options.network = pb.NODE
    sc.namespace_options.pid = pb.NODE
    sc.namespace_options.ipc = pb.NODE
    sc.run_as_user.value = 1000
    sc.run_as_group.value = 2000
    sc.supplemental_groups.extend([3000])
    sc.privileged = True
    spec = _spec(config, tmp_path)
    assert _ns(spec) == {"mount": ""}
    assert "hostname" not in spec  # no UTS namespace of its own
    assert spec["linux"]["cgroupsPath"] == "/kubepods/besteffort/sid"
    assert spec["linux"]["sysctl"] == {"net.ipv4.ip_unprivileged_port_start": "1024"}
    assert spec["process"]["user"] == {"uid": 1000, "gid": 2000, "additionalGids": [3000]}
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert mounts["/dev/shm"]["source"] == "/dev/shm"
    assert "ro" not in mounts["/sys"]["options"]
    assert "maskedPaths" not in spec["linux"]


def test_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="entrypoint and cmd"):
        sandbox_spec(
            id_="sid",
            config=_config(),
            image_config={},
            image_name="img",
            netns_path="",
            paths=SandboxPaths("/r", "/s", "sid"),
        )
    config = _config()
    config.linux.security_context.namespace_options.userns_options.mode = pb.POD
    with pytest.raises(errdefs.NotImplemented_):
        _spec(config, tmp_path)


def test_cgroups_path_and_oom_score_adj() -> None:
    assert cgroups_path("/kubepods", "id") == "/kubepods/id"
    assert (
        cgroups_path("kubepods-besteffort.slice", "id")
        == "kubepods-besteffort.slice:cri-containerd:id"
    )
    current = current_oom_score_adj()
    assert oom_score_adj(-998, False) == -998
    assert oom_score_adj(-998, True) == max(-998, current)
    assert oom_score_adj(1000, True) == 1000


def test_dns_options() -> None:
    assert files.parse_dns_options([], [], []) == ""
    assert files.parse_dns_options(["8.8.8.8", "1.1.1.1"], ["a.b", "c"], ["ndots:2"]) == (
        "search a.b c\nnameserver 8.8.8.8\nnameserver 1.1.1.1\noptions ndots:2\n"
    )
    with pytest.raises(errdefs.InvalidArgument, match="search domains"):
        files.parse_dns_options([], [f"d{i}" for i in range(40)], [])


@pytest.mark.root
def test_sandbox_files_setup_and_remove(tmp_path: Path) -> None:
    paths = SandboxPaths(str(tmp_path / "root"), str(tmp_path / "state"), "sid")
    files.make_dirs(paths)
    config = _config()
    config.dns_config.servers.append("10.0.0.10")
    files.setup(paths, config)
    assert Path(paths.hostname).read_text() == "web-host\n"
    assert Path(paths.hosts).read_text() == Path("/etc/hosts").read_text()
    assert Path(paths.resolv_conf).read_text() == "nameserver 10.0.0.10\n"
    assert os.path.ismount(paths.shm)
    assert oct(os.stat(paths.shm).st_mode & 0o7777) == "0o1777"
    files.unmount_shm(paths)
    assert not os.path.ismount(paths.shm)
    files.remove(paths)
    files.remove(paths)
    assert not os.path.exists(paths.root) and not os.path.exists(paths.volatile_root)

    # host IPC: no tmpfs; no DNS config: the host's resolv.conf
    host = _config(hostname="")
    host.linux.security_context.namespace_options.ipc = pb.NODE
    files.make_dirs(paths)
    files.setup(paths, host)
    assert not os.path.exists(paths.shm)
    assert Path(paths.resolv_conf).read_text() == Path("/etc/resolv.conf").read_text()
    assert Path(paths.hostname).read_text().strip() == os.uname().nodename
    files.remove(paths)
