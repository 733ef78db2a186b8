"""Registration of ``io.containerd.transfer.v1.local``: the local transfer service (pull, push,
tag, import, export) over the metadata content and image stores, unpacking through the
configured snapshotter/differ pairs, pulls judged by every image verifier."""

from __future__ import annotations

import logging
from typing import Any

import attrs

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types

log = logging.getLogger(__name__)


@attrs.define(kw_only=True)
class UnpackConfig:
    #: platform whose layers this entry unpacks ("" = this host's)
    platform: str = ""
    snapshotter: str = ""
    #: diff plugin id applying the layers ("" = walking)
    differ: str = ""
    #: skip the entry when its snapshotter or differ is missing instead of failing
    optional: bool = False


@attrs.define(kw_only=True)
class Config:
    #: concurrent blob downloads of all pulls together
    max_concurrent_downloads: int = 3
    #: concurrent blob uploads of all pushes together
    max_concurrent_uploaded_layers: int = 3
    #: ``hosts.toml`` directory for registries a request does not configure itself
    config_path: str = ""
    #: a pull with no progress for this long fails (Go duration; "0s": never)
    progress_timeout: str = "5m0s"
    #: snapshotter/differ per platform; unset: overlayfs then native for this host
    unpack_config: list[UnpackConfig] | None = None
    #: the snapshotter of a request that names none
    default_snapshotter: str = "overlayfs"


def _default_unpack_config() -> list[UnpackConfig]:
    return [
        UnpackConfig(snapshotter="overlayfs", differ="walking", optional=True),
        UnpackConfig(snapshotter="native", differ="walking", optional=True),
    ]


async def _init(ic: InitContext) -> Any:
    from pycontainerd.core import durations, errdefs, platforms
    from pycontainerd.core.plugin.context import PluginNotFound
    from pycontainerd.core.transfer.local import LocalTransferService, TransferConfig
    from pycontainerd.core.transfer.pull import UnpackPlatform

    cfg: Config = ic.config
    md = ic.get_single(types.METADATA)
    if md.content_store is None:
        raise errdefs.FailedPrecondition("metadata has no content store")
    lease_manager = ic.get_single(types.LEASE)
    unpacks: list[UnpackPlatform] = []
    entries = cfg.unpack_config if cfg.unpack_config is not None else _default_unpack_config()
    for uc in entries:
        try:
            plat = platforms.parse(uc.platform) if uc.platform else platforms.default_spec()
        except errdefs.ContainerdError as exc:
            raise errdefs.InvalidArgument(
                f"unpack_config: platform {uc.platform!r}: {exc}"
            ) from None
        sn = md.snapshotter(uc.snapshotter)
        if sn is None:
            if uc.optional:
                log.info("unpack_config: snapshotter %s not available, skipping", uc.snapshotter)
                continue
            raise errdefs.NotFound(f"unpack_config: snapshotter {uc.snapshotter!r} not found")
        try:
            applier = ic.get_by_id(types.DIFF, uc.differ or "walking")
        except errdefs.NotFound:
            if uc.optional:
                continue
            raise
        unpacks.append(
            UnpackPlatform(
                platform=plat, snapshotter_name=uc.snapshotter, snapshotter=sn, applier=applier
            )
        )
    default_sn = cfg.default_snapshotter
    if unpacks and default_sn not in {u.snapshotter_name for u in unpacks}:
        default_sn = unpacks[0].snapshotter_name
    try:
        verifiers = ic.get_by_type(types.IMAGE_VERIFIER)
    except PluginNotFound:
        verifiers = {}
    config = TransferConfig(
        max_concurrent_downloads=cfg.max_concurrent_downloads,
        max_concurrent_uploaded_layers=cfg.max_concurrent_uploaded_layers,
        config_path=cfg.config_path,
        progress_timeout=durations.parse(cfg.progress_timeout),
        unpack_platforms=tuple(unpacks),
        default_snapshotter=default_sn,
        verifiers=verifiers,
    )
    ic.meta.exports["default_snapshotter"] = default_sn
    return LocalTransferService(
        content=md.content_store, images=md.images, leases=lease_manager, config=config
    )


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.TRANSFER,
            id="local",
            requires=(
                types.LEASE,
                types.METADATA,
                types.DIFF,
                types.IMAGE_VERIFIER,
                types.SNAPSHOTTER,
            ),
            config=Config,
            init=_init,
        )
    ]
