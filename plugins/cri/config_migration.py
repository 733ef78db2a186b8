"""The CRI plugin's configuration migration from version 2 to 3.

Up to version 2 all CRI settings lived in one section, ``io.containerd.grpc.v1.cri``. From
version 3 they are split over three plugins:

* ``io.containerd.cri.v1.images``: the sandbox (pause) image as ``pinned_images.sandbox``,
  registry and decryption settings, download limits, and the snapshotter settings that were
  under ``containerd`` (``snapshotter``, ``disable_snapshot_annotations``,
  ``discard_unpacked_layers``); a runtime handler's own ``snapshotter`` also becomes a
  ``runtime_platforms.<handler>`` entry (host platform + snapshotter);
* ``io.containerd.cri.v1.runtime``: everything else (``containerd`` with its ``runtimes``,
  ``cni`` with ``bin_dir`` turned into ``bin_dirs``, selinux/apparmor/cdi switches, ...);
  a runtime's ``sandbox_mode`` is renamed ``sandboxer``;
* ``io.containerd.grpc.v1.cri`` keeps only the server and streaming settings.

Values already present in a version-3 section win over migrated ones. Two slips of
containerd's images migration are not reproduced: it reads a runtime's ``snapshot`` key
(the key is ``snapshotter``) and writes ``runtime_platform`` (the key is
``runtime_platforms``).
"""

from __future__ import annotations

import copy
from collections.abc import MutableMapping
from typing import Any

CRI_SERVER = "io.containerd.grpc.v1.cri"
CRI_RUNTIME = "io.containerd.cri.v1.runtime"
CRI_IMAGES = "io.containerd.cri.v1.images"

#: Keys that stay in ``io.containerd.grpc.v1.cri``.
SERVER_KEYS = (
    "disable_tcp_service",
    "stream_server_address",
    "stream_server_port",
    "stream_idle_timeout",
    "enable_tls_streaming",
    "x509_key_pair_streaming",
)
#: Top-level keys that move to ``io.containerd.cri.v1.images`` (besides ``sandbox_image``).
IMAGE_KEYS = (
    "registry",
    "image_decryption",
    "max_concurrent_downloads",
    "image_pull_progress_timeout",
    "image_pull_with_sync_fs",
    "stats_collect_period",
)
#: Keys of the old ``containerd`` table that move to the images plugin's top level.
IMAGE_CONTAINERD_KEYS = ("snapshotter", "disable_snapshot_annotations", "discard_unpacked_layers")


def host_platform() -> str:
    """The host's OCI platform as ``os/arch[/variant]`` (what a migrated runtime platform gets)."""
    from pycontainerd.core import platforms

    return platforms.format(platforms.default_spec())


def _table(parent: MutableMapping[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def migrate_cri(config_version: int, plugins: MutableMapping[str, Any]) -> None:
    """Split ``plugins."io.containerd.grpc.v1.cri"`` of a version-2 file (in place).

    Has the ``config_migration`` signature; acts only for the 2 -> 3 step.
    """
    if config_version != 2:
        return
    src = plugins.get(CRI_SERVER)
    if not isinstance(src, dict):
        return
    src = copy.deepcopy(src)
    plugins[CRI_IMAGES] = _images(_table(plugins, CRI_IMAGES), src)
    plugins[CRI_RUNTIME] = _runtime(_table(plugins, CRI_RUNTIME), src)
    plugins[CRI_SERVER] = {k: src[k] for k in SERVER_KEYS if k in src}


def _images(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    if "sandbox_image" in src:
        pinned = _table(dst, "pinned_images")
        pinned.setdefault("sandbox", src["sandbox_image"])
        dst["pinned_images"] = pinned
    for key in IMAGE_KEYS:
        if key in src:
            dst.setdefault(key, copy.deepcopy(src[key]))
    containerd = _table(src, "containerd")
    for key in IMAGE_CONTAINERD_KEYS:
        if key in containerd:
            dst.setdefault(key, containerd[key])
    platforms = _table(dst, "runtime_platforms")
    for handler, runtime in _table(containerd, "runtimes").items():
        snapshotter = runtime.get("snapshotter") if isinstance(runtime, dict) else None
        if snapshotter:
            platforms.setdefault(handler, {"platform": host_platform(), "snapshotter": snapshotter})
    if platforms:
        dst["runtime_platforms"] = platforms
    return dst


def _runtime(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    moved_elsewhere = {"cni", "containerd", "sandbox_image", *IMAGE_KEYS, *SERVER_KEYS}
    for key, value in src.items():
        if key not in moved_elsewhere:
            dst.setdefault(key, copy.deepcopy(value))

    if isinstance(src.get("cni"), dict):
        cni = _table(dst, "cni")
        for key, value in src["cni"].items():
            if key == "bin_dir":
                if not cni.get("bin_dirs"):
                    cni["bin_dirs"] = [value]
            else:
                cni.setdefault(key, copy.deepcopy(value))
        dst["cni"] = cni

    if isinstance(src.get("containerd"), dict):
        containerd = _table(dst, "containerd")
        for key, value in src["containerd"].items():
            if key not in IMAGE_CONTAINERD_KEYS:
                containerd.setdefault(key, copy.deepcopy(value))
        for runtime in _table(containerd, "runtimes").values():
            if isinstance(runtime, dict) and "sandbox_mode" in runtime:
                if "sandboxer" not in runtime:
                    runtime["sandboxer"] = runtime.pop("sandbox_mode")
        dst["containerd"] = containerd
    return dst
