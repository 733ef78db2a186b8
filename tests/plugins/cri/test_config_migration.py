from __future__ import annotations

import copy

from pycontainerd.plugins.cri.config_migration import (
    CRI_IMAGES,
    CRI_RUNTIME,
    CRI_SERVER,
    host_platform,
    migrate_cri,
)

V2_CRI = {
    "sandbox_image": "registry.k8s.io/pause:3.9",
    "stream_server_port": "10010",
    "enable_selinux": True,
    "registry": {"config_path": "/etc/containerd/certs.d"},
    "cni": {"bin_dir": "/opt/cni/bin", "conf_dir": "/etc/cni/net.d"},
    "containerd": {
        "snapshotter": "overlayfs",
        "discard_unpacked_layers": True,
        "default_runtime_name": "runc",
        "runtimes": {
            "runc": {"runtime_type": "io.containerd.runc.v2", "sandbox_mode": "shim"},
            "kata": {"runtime_type": "io.containerd.kata.v2", "snapshotter": "devmapper"},
        },
    },
}


def test_cri_section_is_split_into_runtime_images_and_server():
    plugins = {CRI_SERVER: copy.deepcopy(V2_CRI)}
    migrate_cri(2, plugins)
    assert plugins[CRI_SERVER] == {"stream_server_port": "10010"}
    assert plugins[CRI_IMAGES] == {
        "pinned_images": {"sandbox": "registry.k8s.io/pause:3.9"},
        "registry": {"config_path": "/etc/containerd/certs.d"},
        "snapshotter": "overlayfs",
        "discard_unpacked_layers": True,
        "runtime_platforms": {"kata": {"platform": host_platform(), "snapshotter": "devmapper"}},
    }
    assert plugins[CRI_RUNTIME] == {
        "enable_selinux": True,
        "cni": {"bin_dirs": ["/opt/cni/bin"], "conf_dir": "/etc/cni/net.d"},
        "containerd": {
            "default_runtime_name": "runc",
            "runtimes": {
                "runc": {"runtime_type": "io.containerd.runc.v2", "sandboxer": "shim"},
                "kata": {"runtime_type": "io.containerd.kata.v2", "snapshotter": "devmapper"},
            },
        },
    }


def test_values_already_in_v3_sections_win():
    plugins = {
        CRI_SERVER: copy.deepcopy(V2_CRI),
        CRI_IMAGES: {"pinned_images": {"sandbox": "mine:1"}, "snapshotter": "native"},
        CRI_RUNTIME: {"cni": {"bin_dirs": ["/usr/lib/cni"]}, "enable_selinux": False},
    }
    migrate_cri(2, plugins)
    assert plugins[CRI_IMAGES]["pinned_images"] == {"sandbox": "mine:1"}
    assert plugins[CRI_IMAGES]["snapshotter"] == "native"
    assert plugins[CRI_RUNTIME]["cni"]["bin_dirs"] == ["/usr/lib/cni"]
    assert plugins[CRI_RUNTIME]["enable_selinux"] is False


def test_only_the_2_to_3_step_acts():
    for version in (1, 3):
        plugins = {CRI_SERVER: copy.deepcopy(V2_CRI)}
        migrate_cri(version, plugins)
        assert plugins == {CRI_SERVER: V2_CRI}


def test_without_a_cri_section_nothing_is_added():
    plugins: dict = {"io.containerd.gc.v1.scheduler": {}}
    migrate_cri(2, plugins)
    assert plugins == {"io.containerd.gc.v1.scheduler": {}}


def test_host_platform_is_os_slash_arch():
    os_name, arch = host_platform().split("/")
    assert os_name and arch and arch not in ("x86_64", "aarch64")
