"""Registrations for ``[proxy_plugins.<name>]`` entries of type ``snapshot`` (or
``io.containerd.snapshotter.v1``): each becomes ``io.containerd.snapshotter.v1.<name>``, a
:class:`pycontainerd.core.snapshots.proxy.ProxySnapshotter` on the entry's unix socket.

The entries are known only once the config is loaded, so the daemon calls
:func:`registrations_from_config` and registers the result beside the discovered plugins
(containerd does the same in ``LoadPlugins``). As in containerd, init does not connect: the
channel connects on first use and reconnects with backoff, so a snapshotter process started
after the daemon is picked up.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, types

log = logging.getLogger(__name__)

SNAPSHOT_TYPES = ("snapshot", types.SNAPSHOTTER)


def _make_init(name: str, pp: Any) -> Any:
    async def _init(ic: InitContext) -> Any:
        from pycontainerd.core import platforms
        from pycontainerd.core.snapshots.proxy import ProxySnapshotter

        ic.meta.exports.update(dict(pp.exports or {}))
        ic.meta.exports["address"] = pp.address
        platform = platforms.default_spec()
        if pp.platform:
            try:
                platform = platforms.parse(pp.platform)
            except Exception as e:  # noqa: BLE001 - containerd warns and keeps the default
                log.warning("skipping proxy platform with bad platform plugin=%s error=%s", name, e)
        ic.meta.platforms.append(platform)
        ic.meta.capabilities.extend(pp.capabilities or ())
        return ProxySnapshotter.connect(pp.address, name)

    return _init


def registrations_from_config(proxy_plugins: Mapping[str, Any]) -> list[Registration]:
    """One registration per snapshot proxy in ``proxy_plugins`` (name -> ``ProxyPlugin``),
    in name order. Entries of other types are left out with a warning."""
    regs: list[Registration] = []
    for name in sorted(proxy_plugins):
        pp = proxy_plugins[name]
        if pp.type not in SNAPSHOT_TYPES:
            log.warning("unsupported proxy plugin type plugin=%s type=%s", name, pp.type)
            continue
        if not pp.address:
            log.warning("proxy plugin without address plugin=%s", name)
            continue
        regs.append(
            Registration(
                type=types.SNAPSHOTTER,
                id=name,
                init=_make_init(name, pp),
                source=f"proxy_plugins.{name}",
            )
        )
    return regs
