"""CNI value types: plugin results (parsed from every spec version's format, normalised to the
1.0.0 shape) and the runtime capability arguments a runtime passes in ``runtimeConfig``.

Result formats handled (CNI SPEC):

- 0.1.0 / 0.2.0: ``{"ip4": {"ip", "gateway", "routes"}, "ip6": {...}, "dns": {...}}``
- 0.3.0 / 0.3.1 / 0.4.0: ``interfaces``, ``ips`` (with ``version`` "4"/"6" and an optional
  ``interface`` index), ``routes``, ``dns``
- 1.0.0 / 1.1.0: as 0.4.0 without ``version`` in ``ips``

The raw JSON a plugin printed is kept (:attr:`PluginResult.raw`): it is what the next plugin of a
conflist receives as ``prevResult`` and what the result cache stores, byte for byte in meaning.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs

#: spec versions this implementation speaks, oldest first
SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LEGACY_RESULT_VERSIONS = ("0.1.0", "0.2.0")


def version_tuple(version: str) -> tuple[int, int, int]:
    """``"0.4.0"`` -> ``(0, 4, 0)``; a malformed version is InvalidArgument."""
    parts = version.split(".") if version else []
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = []
    if not 1 <= len(nums) <= 3 or any(n < 0 for n in nums):
        raise errdefs.InvalidArgument(f'invalid cni version "{version}"')
    nums += [0] * (3 - len(nums))
    return nums[0], nums[1], nums[2]


def version_at_least(version: str, minimum: str) -> bool:
    return version_tuple(version or "0.1.0") >= version_tuple(minimum)


@attrs.frozen(kw_only=True)
class Interface:
    name: str
    mac: str = ""
    mtu: int = 0
    sandbox: str = ""
    socket_path: str = ""
    pci_id: str = ""


@attrs.frozen(kw_only=True)
class IPConfig:
    """One address of a result: ``address`` in CIDR form (``10.0.0.5/24``)."""

    address: str
    gateway: str = ""
    interface: int | None = None

    @property
    def ip(self) -> str:
        """The address without its prefix length."""
        return str(ipaddress.ip_interface(self.address).ip)

    @property
    def version(self) -> int:
        return ipaddress.ip_interface(self.address).version


@attrs.frozen(kw_only=True)
class Route:
    dst: str
    gw: str = ""
    mtu: int = 0
    advmss: int = 0
    priority: int = 0
    table: int | None = None
    scope: int | None = None


@attrs.frozen(kw_only=True)
class DNS:
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def empty(self) -> bool:
        return not (self.nameservers or self.domain or self.search or self.options)


@attrs.frozen(kw_only=True)
class PluginResult:
    """What one ADD returned: ``cni_version`` is the result's own version."""

    cni_version: str
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = DNS()
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


def _str(d: Mapping[str, Any], key: str, where: str) -> str:
    v = d.get(key, "")
    if v is None:
        return ""
    if not isinstance(v, str):
        raise errdefs.Internal(f"invalid cni result: {where}.{key} is not a string")
    return v


def _int(d: Mapping[str, Any], key: str, where: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool):
        raise errdefs.Internal(f"invalid cni result: {where}.{key} is not an integer")
    return v


def _strs(d: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    v = d.get(key) or []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise errdefs.Internal(f"invalid cni result: {where}.{key} is not a list of strings")
    return tuple(v)


def _cidr(value: str, where: str) -> str:
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        raise errdefs.Internal(f'invalid cni result: {where} "{value}" is not an address') from None
    return value


def _dns(d: Any) -> DNS:
    if not d:
        return DNS()
    if not isinstance(d, dict):
        raise errdefs.Internal("invalid cni result: dns is not an object")
    return DNS(
        nameservers=_strs(d, "nameservers", "dns"),
        domain=_str(d, "domain", "dns"),
        search=_strs(d, "search", "dns"),
        options=_strs(d, "options", "dns"),
    )


def _route(d: Any, where: str) -> Route:
    if not isinstance(d, dict) or not isinstance(d.get("dst"), str):
        raise errdefs.Internal(f"invalid cni result: {where} needs a dst")
    return Route(
        dst=_cidr(d["dst"], f"{where}.dst"),
        gw=_str(d, "gw", where),
        mtu=_int(d, "mtu", where) or 0,
        advmss=_int(d, "advmss", where) or 0,
        priority=_int(d, "priority", where) or 0,
        table=_int(d, "table", where),
        scope=_int(d, "scope", where),
    )


def _legacy(raw: Mapping[str, Any], version: str) -> PluginResult:
    ips: list[IPConfig] = []
    routes: list[Route] = []
    for key in ("ip4", "ip6"):
        block = raw.get(key)
        if not block:
            continue
        if not isinstance(block, dict) or not isinstance(block.get("ip"), str):
            raise errdefs.Internal(f"invalid cni result: {key} needs an ip")
        ips.append(
            IPConfig(address=_cidr(block["ip"], f"{key}.ip"), gateway=_str(block, "gateway", key))
        )
        routes.extend(
            _route(r, f"{key}.routes[{i}]") for i, r in enumerate(block.get("routes") or [])
        )
    return PluginResult(
        cni_version=version, ips=tuple(ips), routes=tuple(routes), dns=_dns(raw.get("dns")), raw=raw
    )


def parse_result(raw: Any, default_version: str = "") -> PluginResult:
    """Parse the JSON object a plugin printed for ADD. Its own ``cniVersion`` wins over
    ``default_version`` (the configuration's)."""
    if not isinstance(raw, dict):
        raise errdefs.Internal("invalid cni result: not a json object")
    version = raw.get("cniVersion") or default_version or "0.1.0"
    if not isinstance(version, str):
        raise errdefs.Internal("invalid cni result: cniVersion is not a string")
    version_tuple(version)
    if version in LEGACY_RESULT_VERSIONS:
        return _legacy(raw, version)
    interfaces = []
    for i, d in enumerate(raw.get("interfaces") or []):
        where = f"interfaces[{i}]"
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise errdefs.Internal(f"invalid cni result: {where} needs a name")
        interfaces.append(
            Interface(
                name=d["name"],
                mac=_str(d, "mac", where),
                mtu=_int(d, "mtu", where) or 0,
                sandbox=_str(d, "sandbox", where),
                socket_path=_str(d, "socketPath", where),
                pci_id=_str(d, "pciID", where),
            )
        )
    ips = []
    for i, d in enumerate(raw.get("ips") or []):
        where = f"ips[{i}]"
        if not isinstance(d, dict) or not isinstance(d.get("address"), str):
            raise errdefs.Internal(f"invalid cni result: {where} needs an address")
        idx = _int(d, "interface", where)
        if idx is not None and not 0 <= idx < len(interfaces):
            raise errdefs.Internal(
                f"invalid cni result: {where}.interface {idx} is out of range "
                f"({len(interfaces)} interfaces)"
            )
        ips.append(
            IPConfig(
                address=_cidr(d["address"], f"{where}.address"),
                gateway=_str(d, "gateway", where),
                interface=idx,
            )
        )
    routes = [_route(r, f"routes[{i}]") for i, r in enumerate(raw.get("routes") or [])]
    return PluginResult(
        cni_version=version,
        interfaces=tuple(interfaces),
        ips=tuple(ips),
        routes=tuple(routes),
        dns=_dns(raw.get("dns")),
        raw=raw,
    )


# --- capability arguments (runtimeConfig) -----------------------------------------------------


def _lower(value: str) -> str:
    return value.lower()


@attrs.frozen(kw_only=True)
class PortMapping:
    """The ``portMappings`` capability: one host port forwarded to a container port."""

    host_port: int
    container_port: int
    protocol: str = attrs.field(default="tcp", converter=_lower)
    host_ip: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol,
            "hostIP": self.host_ip,
        }


@attrs.frozen(kw_only=True)
class BandWidth:
    """The ``bandwidth`` capability (bits per second, burst in bits)."""

    ingress_rate: int = 0
    ingress_burst: int = 0
    egress_rate: int = 0
    egress_burst: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "ingressRate": self.ingress_rate,
            "ingressBurst": self.ingress_burst,
            "egressRate": self.egress_rate,
            "egressBurst": self.egress_burst,
        }


@attrs.frozen(kw_only=True)
class IPRange:
    """One entry of the ``ipRanges`` capability (a list of range sets)."""

    subnet: str
    range_start: str = ""
    range_end: str = ""
    gateway: str = ""

    def to_json(self) -> dict[str, Any]:
        out = {"subnet": self.subnet}
        for key, value in (
            ("rangeStart", self.range_start),
            ("rangeEnd", self.range_end),
            ("gateway", self.gateway),
        ):
            if value:
                out[key] = value
        return out


@attrs.frozen(kw_only=True)
class DNSConfig:
    """The ``dns`` capability."""

    servers: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    searches: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    options: tuple[str, ...] = attrs.field(default=(), converter=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "servers": list(self.servers),
            "searches": list(self.searches),
            "options": list(self.options),
        }


def ip_ranges_json(ranges: Sequence[Sequence[IPRange]]) -> list[list[dict[str, Any]]]:
    return [[r.to_json() for r in rs] for rs in ranges]
