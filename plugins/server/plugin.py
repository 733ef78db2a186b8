"""Server plugins (``io.containerd.server.v1.*``, as containerd 2.3): the listeners.

Each is initialised like any plugin; after every plugin has initialised the daemon calls
``start(instances)`` on each, and ``stop()`` first at shutdown.
"""

from __future__ import annotations

from typing import Any

import attrs

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types

DEFAULT_ADDRESS = "/run/pycontainerd/pycontainerd.sock"


@attrs.define
class GRPCConfig:
    address: str = DEFAULT_ADDRESS
    uid: int = 0
    gid: int = 0
    max_recv_message_size: int = 16 << 20
    max_send_message_size: int = 16 << 20


@attrs.define
class TTRPCConfig:
    address: str = ""
    uid: int = 0
    gid: int = 0


@attrs.define
class MetricsConfig:
    address: str = ""
    grpc_histogram: bool = False


@attrs.define
class DebugConfig:
    address: str = ""
    uid: int = 0
    gid: int = 0


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(type=types.SERVER, id="grpc", config=GRPCConfig, init=_init_grpc),
        Registration(type=types.SERVER, id="ttrpc", config=TTRPCConfig, init=_init_ttrpc),
        Registration(type=types.SERVER, id="metrics", config=MetricsConfig, init=_init_metrics),
        Registration(type=types.SERVER, id="debug", config=DebugConfig, init=_init_debug),
    ]


async def _init_grpc(ic: InitContext) -> Any:
    from pycontainerd.core.server.grpcserver import GRPCServer

    cfg: GRPCConfig = ic.config
    address = ic.grpc_address or cfg.address
    ic.meta.exports["address"] = address
    return GRPCServer(
        address=address,
        uid=cfg.uid,
        gid=cfg.gid,
        max_recv_message_size=cfg.max_recv_message_size,
        max_send_message_size=cfg.max_send_message_size,
    )


async def _init_ttrpc(ic: InitContext) -> Any:
    from pycontainerd.core.plugin import SkipPlugin

    try:
        from pycontainerd.core.ttrpc.server import Server
    except ImportError as e:  # the ttrpc machinery lands with the runtime work
        raise SkipPlugin(f"ttrpc server not available: {e}") from e
    cfg: TTRPCConfig = ic.config
    address = ic.ttrpc_address or cfg.address
    ic.meta.exports["address"] = address
    return Server(address=address, uid=cfg.uid, gid=cfg.gid)


async def _init_metrics(ic: InitContext) -> Any:
    from pycontainerd.core.plugin import SkipPlugin

    cfg: MetricsConfig = ic.config
    if not cfg.address:
        raise SkipPlugin("metrics: no address configured")
    from pycontainerd.plugins.server.metrics import metrics_server

    ic.meta.exports["address"] = cfg.address
    return metrics_server(cfg.address, ic.plugins)


async def _init_debug(ic: InitContext) -> Any:
    from pycontainerd.core.plugin import SkipPlugin

    cfg: DebugConfig = ic.config
    if not cfg.address:
        raise SkipPlugin("debug: no address configured")
    from pycontainerd.plugins.server.debug import debug_server

    ic.meta.exports["address"] = cfg.address
    return debug_server(cfg.address, cfg.uid, cfg.gid, ic.plugins)
