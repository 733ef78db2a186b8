"""The pod-network front end the CRI plugin uses, as containerd's go-cni.

:class:`CNI` holds the networks loaded from a conf dir (optionally preceded by a loopback
network, ``cni-loopback`` on ``lo``), and attaches a pod's network namespace to all of them:
the first network file gets ``eth0``, the next ``eth1``, ... . ``setup`` runs the networks in
parallel (or one after another with ``setup_serially``) and returns a :class:`Result` whose
addresses are grouped by interface name; a failed setup removes what it attached before raising.
``remove`` is idempotent and tolerates a namespace that is already gone (it passes an empty
``CNI_NETNS``, as the spec allows for DEL). ``status`` says whether a network config is loaded
(the CRI's NetworkReady).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.cni.config import (
    NOT_INITIALIZED,
    NetworkConfigList,
    conf_files,
    conf_list_from_bytes,
    load_conf_dir,
)
from pycontainerd.core.cni.libcni import DEFAULT_CACHE_DIR, CNIConfig, RuntimeConf, merge_args
from pycontainerd.core.cni.types import (
    DNS,
    BandWidth,
    DNSConfig,
    IPRange,
    PluginResult,
    PortMapping,
    Route,
    ip_ranges_json,
    parse_result,
    version_at_least,
)

log = logging.getLogger(__name__)

DEFAULT_BIN_DIRS = ("/opt/cni/bin",)
DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_IF_PREFIX = "eth"
LOOPBACK_NETWORK = "cni-loopback"
_LOOPBACK_CONF = (
    b'{"cniVersion": "0.3.1", "name": "cni-loopback", "plugins": [{"type": "loopback"}]}'
)


@attrs.frozen(kw_only=True)
class Options:
    """The CRI's ``[...cri.v1.runtime".cni]`` settings that shape pod networking here."""

    bin_dirs: tuple[str, ...] = attrs.field(default=DEFAULT_BIN_DIRS, converter=tuple)
    conf_dir: str = DEFAULT_CONF_DIR
    max_conf_num: int = 1
    setup_serially: bool = False
    use_internal_loopback: bool = False
    cache_dir: str = DEFAULT_CACHE_DIR
    if_prefix: str = DEFAULT_IF_PREFIX
    #: seconds one plugin invocation may take (None: unbounded)
    plugin_timeout: float | None = None


@attrs.frozen(kw_only=True)
class Network:
    config: NetworkConfigList
    ifname: str


@attrs.frozen(kw_only=True)
class IPConfigEntry:
    ip: str
    gateway: str = ""
    prefix_len: int = 0

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.ip).version


@attrs.frozen(kw_only=True)
class InterfaceConfig:
    ip_configs: tuple[IPConfigEntry, ...] = ()
    mac: str = ""
    sandbox: str = ""
    pci_id: str = ""
    socket_path: str = ""


@attrs.frozen(kw_only=True)
class Result:
    """A pod's attachments: addresses by interface name (``eth0`` always present), every
    network's DNS and routes, and the per-network results (``raw``, in network order)."""

    interfaces: Mapping[str, InterfaceConfig]
    dns: tuple[DNS, ...] = ()
    routes: tuple[Route, ...] = ()
    raw: tuple[PluginResult, ...] = attrs.field(default=(), eq=False, repr=False)

    def ips(self, ifname: str = "eth0") -> list[str]:
        cfg = self.interfaces.get(ifname)
        return [c.ip for c in cfg.ip_configs] if cfg else []

    def to_json(self) -> list[dict[str, Any]]:
        """What to store to rebuild the result later (see :meth:`from_json`)."""
        return [dict(r.raw) for r in self.raw]

    @classmethod
    def from_json(cls, data: Sequence[Mapping[str, Any]], if_prefix: str = "eth") -> Result:
        return create_result([parse_result(dict(d)) for d in data], if_prefix)


def create_result(results: Sequence[PluginResult], if_prefix: str = "eth") -> Result:
    default = f"{if_prefix}0"
    interfaces: dict[str, dict[str, Any]] = {default: {"ip_configs": []}}
    dns: list[DNS] = []
    routes: list[Route] = []
    for result in results:
        for intf in result.interfaces:
            interfaces[intf.name] = {
                "ip_configs": [],
                "mac": intf.mac,
                "sandbox": intf.sandbox,
                "pci_id": intf.pci_id,
                "socket_path": intf.socket_path,
            }
        for ipc in result.ips:
            if ipc.interface is not None:
                if ipc.interface >= len(result.interfaces):
                    raise errdefs.Internal(
                        f"invalid cni result: interface index {ipc.interface} out of range"
                    )
                name = result.interfaces[ipc.interface].name
            else:
                name = default
            iface = ipaddress.ip_interface(ipc.address)
            interfaces.setdefault(name, {"ip_configs": []})["ip_configs"].append(
                IPConfigEntry(
                    ip=str(iface.ip), gateway=ipc.gateway, prefix_len=iface.network.prefixlen
                )
            )
        dns.append(result.dns)
        routes.extend(result.routes)
    return Result(
        interfaces={
            k: InterfaceConfig(**{**v, "ip_configs": tuple(v["ip_configs"])})
            for k, v in interfaces.items()
        },
        dns=tuple(dns),
        routes=tuple(routes),
        raw=tuple(results),
    )


def select_pod_ips(configs: Sequence[IPConfigEntry], preference: str = "") -> tuple[str, list[str]]:
    """The pod IP and additional IPs by ``ip_pref``: "ipv4" (default), "ipv6" or "cni" (the
    order the plugin returned)."""
    if not configs:
        return "", []
    ips = [c.ip for c in configs]
    if len(ips) == 1 or preference == "cni":
        return ips[0], ips[1:]
    if preference not in ("", "ipv4", "ipv6"):
        log.warning("invalid ip_pref %r, falling back to ipv4", preference)
    want = 6 if preference == "ipv6" else 4
    for i, c in enumerate(configs):
        if c.version == want:
            return c.ip, ips[:i] + ips[i + 1 :]
    return ips[0], ips[1:]


def pod_labels(sandbox_id: str, name: str, namespace: str, uid: str) -> dict[str, str]:
    """The ``CNI_ARGS`` containerd passes for a pod sandbox."""
    return {
        "K8S_POD_NAMESPACE": namespace,
        "K8S_POD_NAME": name,
        "K8S_POD_INFRA_CONTAINER_ID": sandbox_id,
        "K8S_POD_UID": uid,
        "IgnoreUnknown": "1",
    }


def _capabilities(
    port_mappings: Sequence[PortMapping],
    bandwidth: BandWidth | None,
    dns: DNSConfig | None,
    ip_ranges: Sequence[Sequence[IPRange]],
    capabilities: Mapping[str, Any] | None,
) -> dict[str, Any]:
    caps: dict[str, Any] = dict(capabilities or {})
    if port_mappings:
        caps["portMappings"] = [p.to_json() for p in port_mappings]
    if bandwidth is not None:
        caps["bandwidth"] = bandwidth.to_json()
    if dns is not None:
        caps["dns"] = dns.to_json()
    if ip_ranges:
        caps["ipRanges"] = ip_ranges_json(ip_ranges)
    return caps


def _tolerable_on_remove(e: errdefs.ContainerdError, netns: str) -> bool:
    # as go-cni: a DEL that finds things already gone is done
    text = str(e)
    return "not found" in text or (not netns and "no such file or directory" in text.lower())


@attrs.define(eq=False)
class CNI:
    """Pod networking over the CNI plugins and configs of :class:`Options`."""

    options: Options = attrs.field(factory=Options)
    _networks: list[Network] = attrs.field(factory=list, init=False)
    _load_error: str = attrs.field(default="", init=False)
    _signature: tuple[tuple[str, float, int], ...] | None = attrs.field(default=None, init=False)

    @property
    def _exec(self) -> CNIConfig:
        return CNIConfig(
            self.options.bin_dirs, self.options.cache_dir, timeout=self.options.plugin_timeout
        )

    @property
    def networks(self) -> list[Network]:
        return list(self._networks)

    @property
    def min_networks(self) -> int:
        return 1 if self.options.use_internal_loopback else 2

    # --- configuration -------------------------------------------------------------------

    def _dir_signature(self) -> tuple[tuple[str, float, int], ...]:
        out = []
        for path in conf_files(self.options.conf_dir):
            try:
                st = os.stat(path)
            except OSError:
                continue
            out.append((path, st.st_mtime, st.st_size))
        return tuple(out)

    def load(self) -> None:
        """(Re)load the networks from the conf dir. On error no network is loaded, the error
        is remembered for :meth:`status`, and raised."""
        self._signature = self._dir_signature()
        networks: list[Network] = []
        if not self.options.use_internal_loopback:
            networks.append(Network(config=conf_list_from_bytes(_LOOPBACK_CONF), ifname="lo"))
        try:
            confs = load_conf_dir(self.options.conf_dir, self.options.max_conf_num)
        except errdefs.ContainerdError as e:
            self._networks = []
            self._load_error = str(e)
            raise
        for i, conf in enumerate(confs):
            networks.append(Network(config=conf, ifname=f"{self.options.if_prefix}{i}"))
        self._networks = networks
        self._load_error = ""
        log.info(
            "loaded cni networks %s from %s",
            [n.config.name for n in networks],
            self.options.conf_dir,
        )

    def reload_if_changed(self) -> bool:
        """Reload when the conf dir's files changed since the last load; True if it did."""
        if self._signature == self._dir_signature():
            return False
        try:
            self.load()
        except errdefs.ContainerdError as e:
            log.warning("failed to load cni configuration: %s", e)
        return True

    def status(self) -> None:
        """Raise FailedPrecondition ("cni plugin not initialized: ...") unless enough networks
        are loaded to set up a pod."""
        if len(self._networks) < self.min_networks:
            reason = self._load_error or NOT_INITIALIZED
            if not reason.startswith(NOT_INITIALIZED):
                reason = f"{NOT_INITIALIZED}: {reason}"
            raise errdefs.FailedPrecondition(reason)

    def ready(self) -> bool:
        try:
            self.status()
        except errdefs.FailedPrecondition:
            return False
        return True

    # --- pod operations ------------------------------------------------------------------

    def _runtime(
        self,
        network: Network,
        container_id: str,
        netns: str,
        args: tuple[tuple[str, str], ...],
        caps: Mapping[str, Any],
    ) -> RuntimeConf:
        return RuntimeConf(
            container_id=container_id,
            netns=netns,
            ifname=network.ifname,
            args=args,
            capability_args=caps,
        )

    async def setup(
        self,
        container_id: str,
        netns_path: str,
        *,
        labels: Mapping[str, str] | None = None,
        args: Sequence[tuple[str, str]] = (),
        port_mappings: Sequence[PortMapping] = (),
        bandwidth: BandWidth | None = None,
        dns: DNSConfig | None = None,
        ip_ranges: Sequence[Sequence[IPRange]] = (),
        capabilities: Mapping[str, Any] | None = None,
        serially: bool | None = None,
    ) -> Result:
        """Attach ``netns_path`` to every network (CNI ADD). ``labels``/``args`` become
        ``CNI_ARGS``; the capability arguments go to plugins that declare them."""
        self.status()
        if not netns_path:
            raise errdefs.InvalidArgument("setting up a pod network needs a network namespace path")
        networks = list(self._networks)
        cni_args = merge_args(labels or {}, args)
        caps = _capabilities(port_mappings, bandwidth, dns, ip_ranges, capabilities)
        runner = self._exec
        rts = [self._runtime(n, container_id, netns_path, cni_args, caps) for n in networks]
        if self.options.use_internal_loopback:
            from pycontainerd.core.netns import NetNS

            await NetNS.load(netns_path).aloopback_up()
        serial = self.options.setup_serially if serially is None else serially
        results: list[PluginResult] = []
        try:
            if serial:
                for n, rt in zip(networks, rts, strict=True):
                    results.append(await runner.add_network_list(n.config, rt))
            else:
                gathered = await asyncio.gather(
                    *(
                        runner.add_network_list(n.config, rt)
                        for n, rt in zip(networks, rts, strict=True)
                    ),
                    return_exceptions=True,
                )
                for g in gathered:
                    if isinstance(g, BaseException):
                        raise g
                    results.append(g)
            return create_result(results, self.options.if_prefix)
        except BaseException as e:
            log.warning("cni setup of %s failed, removing its attachments: %s", container_id, e)
            await asyncio.shield(self._remove(runner, networks, rts))
            raise

    async def _remove(
        self, runner: CNIConfig, networks: Sequence[Network], rts: Sequence[RuntimeConf]
    ) -> list[errdefs.ContainerdError]:
        errors: list[errdefs.ContainerdError] = []
        for n, rt in zip(networks, rts, strict=True):
            try:
                await runner.del_network_list(n.config, rt)
            except errdefs.ContainerdError as e:
                if _tolerable_on_remove(e, rt.netns):
                    log.debug("ignoring cni DEL error for %s: %s", rt.container_id, e)
                    continue
                errors.append(e)
        return errors

    async def remove(
        self,
        container_id: str,
        netns_path: str,
        *,
        labels: Mapping[str, str] | None = None,
        args: Sequence[tuple[str, str]] = (),
        port_mappings: Sequence[PortMapping] = (),
        bandwidth: BandWidth | None = None,
        dns: DNSConfig | None = None,
        ip_ranges: Sequence[Sequence[IPRange]] = (),
        capabilities: Mapping[str, Any] | None = None,
    ) -> None:
        """Detach from every network (CNI DEL with the cached results). Calling it again, or
        after the namespace is gone, is fine; every network is tried, the first error raised."""
        self.status()
        if netns_path and not os.path.exists(netns_path):
            netns_path = ""
        cni_args = merge_args(labels or {}, args)
        caps = _capabilities(port_mappings, bandwidth, dns, ip_ranges, capabilities)
        networks = list(self._networks)
        rts = [self._runtime(n, container_id, netns_path, cni_args, caps) for n in networks]
        errors = await self._remove(self._exec, networks, rts)
        if errors:
            raise errors[0]

    async def check(
        self,
        container_id: str,
        netns_path: str,
        *,
        labels: Mapping[str, str] | None = None,
        args: Sequence[tuple[str, str]] = (),
        port_mappings: Sequence[PortMapping] = (),
        capabilities: Mapping[str, Any] | None = None,
    ) -> None:
        """CNI CHECK on every network of spec 0.4.0 or later (raises what the first failing
        plugin says)."""
        self.status()
        cni_args = merge_args(labels or {}, args)
        caps = _capabilities(port_mappings, None, None, (), capabilities)
        runner = self._exec
        for n in self._networks:
            if not version_at_least(n.config.cni_version, "0.4.0"):
                # CHECK arrived with spec 0.4.0 (the built-in loopback network is 0.3.1)
                log.debug(
                    "skipping cni CHECK of %s (version %s)", n.config.name, n.config.cni_version
                )
                continue
            await runner.check_network_list(
                n.config, self._runtime(n, container_id, netns_path, cni_args, caps)
            )

    def cached_results(self, container_id: str) -> list[dict[str, Any]]:
        """The cached ADD results of ``container_id`` (e.g. to rebuild a Result after a
        restart), one per network that has one, in network order."""
        runner = self._exec
        out = []
        for n in self._networks:
            rt = RuntimeConf(container_id=container_id, netns="", ifname=n.ifname)
            r = runner.cached_result(n.config.name, rt)
            if r is not None:
                out.append(r)
        return out
