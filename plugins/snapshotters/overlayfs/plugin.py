"""Registration of ``io.containerd.snapshotter.v1.overlayfs``."""

from __future__ import annotations

from typing import Any

import attrs

from pycontainerd.core.plugin import InitContext, Registration, SkipPlugin, hookimpl, types


@attrs.define(kw_only=True)
class Config:
    #: where snapshots live; "" = the plugin's root directory
    root_path: str = ""
    #: add ``containerd.io/snapshot/overlay.upperdir`` to every snapshot's labels
    upperdir_label: bool = False
    #: delete a snapshot's directory at remove instead of at the next cleanup
    sync_remove: bool = False
    #: extra options for overlay mounts (not used for bind mounts)
    mount_options: list[str] = attrs.Factory(list)


async def _init(ic: InitContext) -> Any:
    import asyncio

    from pycontainerd.core import errdefs
    from pycontainerd.plugins.snapshotters import host_platform
    from pycontainerd.plugins.snapshotters.overlayfs.snapshotter import (
        OverlaySnapshotter,
        check_supported,
    )

    config: Config = ic.config
    root = config.root_path or ic.properties[types.PROPERTY_ROOT_DIR]
    try:
        await asyncio.to_thread(_check_once, root, check_supported)
    except (errdefs.NotImplemented_, OSError) as e:
        raise SkipPlugin(f"overlayfs: not supported on {root}: {e}") from e
    ic.meta.platforms.append(host_platform())
    ic.meta.exports["root"] = root
    return await OverlaySnapshotter.open(
        root,
        upperdir_label=config.upperdir_label,
        sync_remove=config.sync_remove,
        mount_options=config.mount_options,
    )


def _check_once(root: str, check: Any) -> None:
    """Run the real overlay test mount once per kernel and backing filesystem: a mount and
    unmount costs 0.1-1 s (the kernel waits for a grace period), so a passed check is
    remembered in the root, keyed by kernel release and device."""
    import os

    key = f"{os.uname().release} {os.stat(root).st_dev if os.path.exists(root) else ''}"
    marker = os.path.join(root, ".overlay-supported")
    try:
        with open(marker) as f:
            if f.read() == key:
                return
    except OSError:
        pass
    check(root)
    key = f"{os.uname().release} {os.stat(root).st_dev}"
    with open(marker, "w") as f:
        f.write(key)


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [Registration(type=types.SNAPSHOTTER, id="overlayfs", config=Config, init=_init)]
