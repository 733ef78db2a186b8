"""The CRI plugins' configuration, in containerd's version-3+ layout.

Three sections: ``[plugins."io.containerd.cri.v1.runtime"]`` (runtime handlers, CNI, security
switches), ``[plugins."io.containerd.cri.v1.images"]`` (snapshotter, pinned images, registry)
and ``[plugins."io.containerd.grpc.v1.cri"]`` (the streaming server). Keys and defaults are
containerd's, with one deliberate difference: CNI ``bin_dirs`` also lists ``/usr/lib/cni``,
where Debian installs the plugins.
"""

from __future__ import annotations

from typing import Any

import attrs

DEFAULT_SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"


@attrs.define
class Runtime:
    """One runtime handler (a Kubernetes RuntimeClass handler)."""

    runtime_type: str = "io.containerd.runc.v2"
    runtime_path: str = ""
    pod_annotations: list[str] = attrs.Factory(list)
    container_annotations: list[str] = attrs.Factory(list)
    privileged_without_host_devices: bool = False
    privileged_without_host_devices_all_devices_allowed: bool = False
    cgroup_writable: bool = False
    base_runtime_spec: str = ""
    cni_conf_dir: str = ""
    cni_max_conf_num: int = 0
    snapshotter: str = ""
    sandboxer: str = "podsandbox"
    io_type: str = "fifo"
    #: Converted to the runtime's options proto (``containerd.runc.v1.Options`` for runc shims,
    #: keyed by Go field names such as ``SystemdCgroup``).
    options: dict[str, Any] = attrs.Factory(dict)


def _default_runtimes() -> dict[str, Runtime]:
    return {"runc": Runtime(options={"SystemdCgroup": False})}


@attrs.define
class ContainerdConfig:
    default_runtime_name: str = "runc"
    ignore_blockio_not_enabled_errors: bool = False
    ignore_rdt_not_enabled_errors: bool = False
    runtimes: dict[str, Runtime] = attrs.Factory(_default_runtimes)


@attrs.define
class CniConfig:
    bin_dir: str = ""
    bin_dirs: list[str] = attrs.Factory(lambda: ["/opt/cni/bin", "/usr/lib/cni"])
    conf_dir: str = "/etc/cni/net.d"
    max_conf_num: int = 1
    setup_serially: bool = False
    conf_template: str = ""
    ip_pref: str = ""
    use_internal_loopback: bool = False


@attrs.define
class RuntimeConfig:
    """``io.containerd.cri.v1.runtime``."""

    containerd: ContainerdConfig = attrs.Factory(ContainerdConfig)
    cni: CniConfig = attrs.Factory(CniConfig)
    enable_selinux: bool = False
    selinux_category_range: int = 1024
    max_container_log_line_size: int = 16384
    disable_apparmor: bool = False
    restrict_oom_score_adj: bool = False
    disable_proc_mount: bool = False
    unset_seccomp_profile: str = ""
    tolerate_missing_hugetlb_controller: bool = True
    disable_hugetlb_controller: bool = True
    device_ownership_from_security_context: bool = False
    ignore_image_defined_volumes: bool = False
    netns_mounts_under_state_dir: bool = False
    enable_unprivileged_ports: bool = True
    enable_unprivileged_icmp: bool = True
    enable_cdi: bool = True
    cdi_spec_dirs: list[str] = attrs.Factory(lambda: ["/etc/cdi", "/var/run/cdi"])
    drain_exec_sync_io_timeout: str = "0s"
    ignore_deprecation_warnings: list[str] = attrs.Factory(list)

    def runtime(self, handler: str) -> Runtime:
        """The runtime for a handler name ("" = the default handler)."""
        from pycontainerd.core import errdefs

        name = handler or self.containerd.default_runtime_name
        try:
            return self.containerd.runtimes[name]
        except KeyError:
            raise errdefs.NotFound(
                f"no runtime for {name!r} is configured "
                f"(known handlers: {', '.join(sorted(self.containerd.runtimes)) or 'none'})"
            ) from None


@attrs.define
class RuntimePlatform:
    platform: str = ""
    snapshotter: str = ""


@attrs.define
class RegistryConfig:
    config_path: str = ""
    headers: dict[str, list[str]] = attrs.Factory(dict)


@attrs.define
class ImageDecryption:
    key_model: str = "node"


@attrs.define
class ImagesConfig:
    """``io.containerd.cri.v1.images``."""

    snapshotter: str = "overlayfs"
    disable_snapshot_annotations: bool = True
    discard_unpacked_layers: bool = False
    max_concurrent_downloads: int = 3
    concurrent_layer_fetch_buffer: int = 0
    image_pull_progress_timeout: str = "5m0s"
    image_pull_with_sync_fs: bool = False
    stats_collect_period: int = 10
    use_local_image_pull: bool = False
    pinned_images: dict[str, str] = attrs.Factory(lambda: {"sandbox": DEFAULT_SANDBOX_IMAGE})
    runtime_platforms: dict[str, RuntimePlatform] = attrs.Factory(dict)
    registry: RegistryConfig = attrs.Factory(RegistryConfig)
    image_decryption: ImageDecryption = attrs.Factory(ImageDecryption)


@attrs.define
class X509KeyPair:
    tls_cert_file: str = ""
    tls_key_file: str = ""


@attrs.define
class ServerConfig:
    """``io.containerd.grpc.v1.cri``: only the server and streaming settings."""

    disable_tcp_service: bool = True
    stream_server_address: str = "127.0.0.1"
    stream_server_port: str = "0"
    stream_idle_timeout: str = "4h0m0s"
    enable_tls_streaming: bool = False
    x509_key_pair_streaming: X509KeyPair = attrs.Factory(X509KeyPair)
