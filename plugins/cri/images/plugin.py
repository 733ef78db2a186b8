"""Registration of ``io.containerd.cri.v1.images``: the CRI image service (pulls, the CRI image
index, image filesystem usage), configured by ``[plugins."io.containerd.cri.v1.images"]``."""

from __future__ import annotations

import logging
import os
from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types
from pycontainerd.plugins.cri.config import ImagesConfig
from pycontainerd.plugins.cri.config_migration import migrate_cri

log = logging.getLogger(__name__)


def _snapshot_root(ic: InitContext, snapshotter: str) -> str:
    for p in ic.get_plugins(types.SNAPSHOTTER):
        if p.registration.id == snapshotter and p.meta.exports.get("root"):
            return p.meta.exports["root"]
    plugin_root = ic.properties[types.PROPERTY_ROOT_DIR]
    return os.path.join(os.path.dirname(plugin_root), f"{types.SNAPSHOTTER}.{snapshotter}")


async def _init(ic: InitContext) -> Any:
    from pycontainerd.core import durations, errdefs, platforms
    from pycontainerd.plugins.cri.client import Client
    from pycontainerd.plugins.cri.images.service import CRIImageService, ImagePlatform

    config: ImagesConfig = ic.config
    try:
        durations.parse(config.image_pull_progress_timeout)
    except errdefs.InvalidArgument as e:
        raise errdefs.InvalidArgument(
            f"invalid cri image config: image_pull_progress_timeout: {e}"
        ) from None
    client = Client.from_init_context(ic)
    if config.snapshotter not in client.snapshotters:
        raise errdefs.NotFound(f"failed to find snapshotter {config.snapshotter!r}")
    fs_paths = {config.snapshotter: _snapshot_root(ic, config.snapshotter)}
    runtime_platforms: dict[str, ImagePlatform] = {}
    for handler, rp in config.runtime_platforms.items():
        snapshotter = rp.snapshotter or config.snapshotter
        if snapshotter not in client.snapshotters:
            raise errdefs.NotFound(
                f"runtime_platforms.{handler}: failed to find snapshotter {snapshotter!r}"
            )
        fs_paths.setdefault(snapshotter, _snapshot_root(ic, snapshotter))
        try:
            plat = platforms.parse(rp.platform) if rp.platform else platforms.default_spec()
        except errdefs.ContainerdError as e:
            raise errdefs.InvalidArgument(
                f"runtime_platforms.{handler}: unable to parse platform {rp.platform!r}: {e}"
            ) from None
        runtime_platforms[handler] = ImagePlatform(snapshotter=snapshotter, platform=plat)
    for name, path in fs_paths.items():
        log.info("cri: image filesystem of snapshotter %s is %s", name, path)
    service = CRIImageService(
        config=config,
        client=client,
        runtime_platforms=runtime_platforms,
        image_fs_paths=fs_paths,
    )
    await service.check_images()
    if config.stats_collect_period > 0:
        ic.spawn(service.snapshot_store.run(float(config.stats_collect_period)), "cri snapshots")
    return service


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.CRI,
            id="images",
            requires=(
                types.LEASE,
                types.METADATA,
                types.SANDBOX_STORE,
                types.SERVICE,
                types.SNAPSHOTTER,
                types.TRANSFER,
                types.WARNING,
            ),
            config=ImagesConfig,
            config_migration=migrate_cri,
            init=_init,
        )
    ]
