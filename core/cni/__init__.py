"""CNI: network configurations, plugin invocation (libcni) and pod attachment (go-cni).

- :mod:`.config`: load and validate ``.conf``/``.conflist``/``.json`` from a conf dir
- :mod:`.invoke`: run one plugin binary (``CNI_*`` environment, JSON errors)
- :mod:`.libcni`: run a network list (ADD/CHECK/DEL, ``prevResult`` chaining, capability
  injection, the result cache)
- :mod:`.cni`: :class:`CNI`, what the CRI plugin uses (setup/remove/check/status)
- :mod:`.types`: results and capability arguments
- :mod:`.template`: ``conf_template`` rendering for UpdateRuntimeConfig's pod CIDRs
"""

from __future__ import annotations

from pycontainerd.core.cni.cni import (
    CNI,
    InterfaceConfig,
    IPConfigEntry,
    Network,
    Options,
    Result,
    create_result,
    pod_labels,
    select_pod_ips,
)
from pycontainerd.core.cni.config import (
    NetworkConfigList,
    PluginConfig,
    conf_from_bytes,
    conf_list_from_bytes,
    conf_list_from_file,
    load_conf_dir,
)
from pycontainerd.core.cni.invoke import PluginError
from pycontainerd.core.cni.libcni import CNIConfig, RuntimeConf
from pycontainerd.core.cni.types import (
    DNS,
    BandWidth,
    DNSConfig,
    Interface,
    IPConfig,
    IPRange,
    PluginResult,
    PortMapping,
    Route,
    parse_result,
)

__all__ = [
    "CNI",
    "DNS",
    "BandWidth",
    "CNIConfig",
    "DNSConfig",
    "IPConfig",
    "IPConfigEntry",
    "IPRange",
    "Interface",
    "InterfaceConfig",
    "Network",
    "NetworkConfigList",
    "Options",
    "PluginConfig",
    "PluginError",
    "PluginResult",
    "PortMapping",
    "Result",
    "Route",
    "RuntimeConf",
    "conf_from_bytes",
    "conf_list_from_bytes",
    "conf_list_from_file",
    "create_result",
    "load_conf_dir",
    "parse_result",
    "pod_labels",
    "select_pod_ips",
]
