"""The typed top-level configuration and the default paths.

Only the daemon's own keys are typed here; each plugin's section stays a raw table in
:attr:`Config.plugins` until the plugin's registration decodes it with its own class.
"""

from __future__ import annotations

from typing import Any

import attrs

#: The newest configuration version understood (containerd 2.3's).
CURRENT_VERSION = 4

DEFAULT_CONFIG_PATH = "/etc/pycontainerd/config.toml"
DEFAULT_ROOT = "/var/lib/pycontainerd"
DEFAULT_STATE = "/run/pycontainerd"
DEFAULT_ADDRESS = "/run/pycontainerd/pycontainerd.sock"
DEFAULT_TTRPC_ADDRESS = DEFAULT_ADDRESS + ".ttrpc"
DEFAULT_DEBUG_ADDRESS = "/run/pycontainerd/debug.sock"
DEFAULT_MAX_MESSAGE_SIZE = 16 << 20

#: Timeout defaults as containerd registers them (name -> Go duration string).
DEFAULT_TIMEOUTS: dict[str, str] = {
    "io.containerd.timeout.bolt.open": "0s",
    "io.containerd.timeout.cri.defercleanup": "1m0s",
    "io.containerd.timeout.metrics.shimstats": "2s",
    "io.containerd.timeout.shim.cleanup": "5s",
    "io.containerd.timeout.shim.load": "5s",
    "io.containerd.timeout.shim.shutdown": "3s",
    "io.containerd.timeout.task.state": "2s",
}


@attrs.frozen(kw_only=True)
class GRPCConfig:
    """Legacy ``[grpc]`` (version < 4); moved to ``io.containerd.server.v1.grpc``/``grpc-tcp``."""

    address: str = ""
    tcp_address: str = ""
    tcp_tls_ca: str = ""
    tcp_tls_cert: str = ""
    tcp_tls_key: str = ""
    tcp_tls_common_name: str = ""
    uid: int = 0
    gid: int = 0
    max_recv_message_size: int = 0
    max_send_message_size: int = 0


@attrs.frozen(kw_only=True)
class TTRPCConfig:
    """Legacy ``[ttrpc]`` (version < 4); moved to ``io.containerd.server.v1.ttrpc``."""

    address: str = ""
    uid: int = 0
    gid: int = 0


@attrs.frozen(kw_only=True)
class DebugConfig:
    """``[debug]``: ``level``/``format`` are the daemon's logging settings; ``address``,
    ``uid``, ``gid`` are legacy (version < 4) and move to ``io.containerd.server.v1.debug``."""

    level: str = ""
    format: str = ""
    log_trace_id: bool = False
    address: str = ""
    uid: int = 0
    gid: int = 0


@attrs.frozen(kw_only=True)
class MetricsConfig:
    """Legacy ``[metrics]`` (version < 4): ``address`` moves to
    ``io.containerd.server.v1.metrics``, ``grpc_histogram`` to
    ``io.containerd.metrics.v1.grpc-prometheus`` (as containerd 2.3 does)."""

    address: str = ""
    grpc_histogram: bool = False


@attrs.frozen(kw_only=True)
class CgroupConfig:
    path: str = ""


@attrs.frozen(kw_only=True)
class ProxyPlugin:
    """``[proxy_plugins.<name>]``: a plugin served by another process over gRPC."""

    type: str = ""
    address: str = ""
    platform: str = ""
    exports: dict[str, str] = attrs.field(factory=dict)
    capabilities: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class StreamProcessor:
    """``[stream_processors."<id>"]``: a binary that converts one layer media type."""

    accepts: tuple[str, ...] = ()
    returns: str = ""
    path: str = ""
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class Config:
    """The top-level configuration, after imports are merged and migrations applied."""

    version: int = CURRENT_VERSION
    root: str = DEFAULT_ROOT
    state: str = DEFAULT_STATE
    temp: str = ""
    imports: tuple[str, ...] = ()
    disabled_plugins: tuple[str, ...] = ()
    required_plugins: tuple[str, ...] = ()
    oom_score: int = 0
    #: pycontainerd-specific: when true the plugin loader does not load third-party
    #: registrations from the ``pycontainerd.plugins`` entry-point group.
    disable_plugin_autoload: bool = False
    #: Raw per-plugin tables, URI -> table; decoded by each registration's config class.
    plugins: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    proxy_plugins: dict[str, ProxyPlugin] = attrs.field(factory=dict)
    stream_processors: dict[str, StreamProcessor] = attrs.field(factory=dict)
    #: Timeout name -> Go duration string ("5s", "1m0s").
    timeouts: dict[str, str] = attrs.field(factory=dict)
    cgroup: CgroupConfig = attrs.field(factory=CgroupConfig)
    debug: DebugConfig = attrs.field(factory=DebugConfig)
    grpc: GRPCConfig = attrs.field(factory=GRPCConfig)
    ttrpc: TTRPCConfig = attrs.field(factory=TTRPCConfig)
    metrics: MetricsConfig = attrs.field(factory=MetricsConfig)

    def plugin_table(self, uri: str) -> dict[str, Any] | None:
        """The raw ``[plugins."<uri>"]`` table, or None when the file has none."""
        return self.plugins.get(uri)
