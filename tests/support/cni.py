"""A throw-away CNI network for tests: a bridge (``pycni<hex>``, unique per session) with a
gateway address, host-local IPAM on a free private /24 (its allocations under the work dir),
ipMasq, portmap, and the loopback network; everything it leaves on the host is removed by
:meth:`TestNetwork.cleanup`.

- :func:`plugin_dir` finds the installed containernetworking-plugins (Debian: /usr/lib/cni).
- :class:`TestNetwork` writes conflists into its conf dir and gives :class:`Options` for
  ``pycontainerd.core.cni.CNI``; it snapshots the nat/filter tables first so that cleanup only
  removes chains and rules this network (or portmap's shared chains, when they were absent
  before) added.
- :func:`in_netns` runs a command inside a namespace by path (``nsenter --net=``).

No pytest import here; fixtures live in the tests' conftest.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import random
import re
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

log = logging.getLogger(__name__)

PLUGIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
REQUIRED_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
PORTMAP_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ")


def plugin_dir() -> str | None:
    """The first directory holding the plugins the test network needs, or None."""
    for d in PLUGIN_DIRS:
        if all(os.access(os.path.join(d, p), os.X_OK) for p in REQUIRED_PLUGINS):
            return d
    return None


def run(*cmd: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout)


def in_netns(path: str, *cmd: str, check: bool = True, timeout: float = 20) -> str:
    """stdout of ``cmd`` run inside the network namespace at ``path``."""
    return run("nsenter", f"--net={path}", *cmd, check=check, timeout=timeout).stdout


def addresses_in(path: str, ifname: str = "eth0") -> list[str]:
    """IPv4 addresses (CIDR) of ``ifname`` inside the namespace at ``path``."""
    out = in_netns(path, "ip", "-j", "-4", "addr", "show", "dev", ifname)
    return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(out) for a in link["addr_info"]]


def ping(address: str, timeout: float = 2.0) -> bool:
    """One ICMP echo to ``address`` (a raw socket; needs root). True when it is answered."""
    import select
    import socket
    import struct
    import time

    ident = os.getpid() & 0xFFFF
    payload = b"pycontainerd-cni-test"

    def checksum(data: bytes) -> int:
        if len(data) % 2:
            data += b"\0"
        total = sum(struct.unpack(f"!{len(data) // 2}H", data))
        total = (total >> 16) + (total & 0xFFFF)
        total += total >> 16
        return ~total & 0xFFFF

    header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, 1) + payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.sendto(packet, (address, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([s], [], [], left)
            if not ready:
                return False
            data, (src, _) = s.recvfrom(2048)
            ihl = (data[0] & 0x0F) * 4
            typ, _, _, rid, _ = struct.unpack("!BBHHH", data[ihl : ihl + 8])
            if src == address and typ == 0 and rid == ident:
                return True
    return False


def _used_networks() -> list[ipaddress.IPv4Network]:
    nets: list[ipaddress.IPv4Network] = []
    for line in run("ip", "-4", "-o", "addr").stdout.splitlines():
        m = re.search(r"inet (\S+)", line)
        if m:
            nets.append(ipaddress.ip_interface(m.group(1)).network)
    for line in run("ip", "-4", "route", "show", "table", "all").stdout.splitlines():
        dst = line.split()[0] if line.split() else ""
        if dst in ("default", "local", "broadcast", "unreachable", "blackhole", "prohibit"):
            continue
        try:
            nets.append(ipaddress.ip_network(dst, strict=False))  # type: ignore[arg-type]
        except ValueError:
            continue
    return nets


def free_subnet() -> ipaddress.IPv4Network:
    """A private /24 under 10.0.0.0/8 that no address or route on this host overlaps."""
    used = _used_networks()
    rng = random.Random()
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.{rng.randint(100, 250)}.{rng.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free private /24 found for the test cni network")


IPTABLES = ("iptables", "ip6tables")


def _chains(table: str, binary: str = "iptables") -> set[str]:
    if not shutil.which(binary):
        return set()
    out = run(binary, "-t", table, "-S", check=False).stdout
    return {line.split()[1] for line in out.splitlines() if line.startswith("-N ")}


def _rules(table: str, binary: str = "iptables") -> list[str]:
    if not shutil.which(binary):
        return []
    out = run(binary, "-t", table, "-S", check=False).stdout
    return [line for line in out.splitlines() if line.startswith("-A ")]


@attrs.define(eq=False)
class TestNetwork:
    """One bridge network for a test session. ``workdir`` holds conf, cache and IPAM data."""

    __test__ = False  # not a pytest test class

    workdir: Path
    bin_dir: str
    suffix: str = attrs.field(factory=lambda: uuid.uuid4().hex[:8])
    subnet: ipaddress.IPv4Network = attrs.field(factory=free_subnet)
    _chains_before: dict[str, set[str]] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        for d in (self.conf_dir, self.cache_dir, self.ipam_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._chains_before = {
            f"{b}/{t}": _chains(t, b) for b in IPTABLES for t in ("nat", "filter")
        }

    @property
    def name(self) -> str:
        return f"pycni-{self.suffix}"

    @property
    def bridge(self) -> str:
        return f"pycni{self.suffix[:8]}"  # 13 characters: within IFNAMSIZ

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def conf_dir(self) -> Path:
        return self.workdir / "net.d"

    @property
    def cache_dir(self) -> Path:
        return self.workdir / "cache"

    @property
    def ipam_dir(self) -> Path:
        return self.workdir / "ipam"

    def allocated_ips(self) -> list[str]:
        """Addresses host-local currently holds for this network."""
        d = self.ipam_dir / self.name
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", p.name))

    def bridge_plugin(self, *, ip_masq: bool = True) -> dict[str, Any]:
        return {
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": True,
            "ipMasq": ip_masq,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "dataDir": str(self.ipam_dir),
                "ranges": [[{"subnet": str(self.subnet), "gateway": self.gateway}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        }

    def conflist(
        self,
        *,
        cni_version: str = "1.0.0",
        portmap: bool = True,
        ip_masq: bool = True,
        extra_plugins: Sequence[dict[str, Any]] = (),
        name: str | None = None,
    ) -> dict[str, Any]:
        plugins: list[dict[str, Any]] = [self.bridge_plugin(ip_masq=ip_masq)]
        if portmap:
            plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
        plugins.extend(extra_plugins)
        return {"cniVersion": cni_version, "name": name or self.name, "plugins": plugins}

    def write(self, doc: dict[str, Any] | str, filename: str = "10-pycni.conflist") -> Path:
        """Write a conflist (a dict is JSON-encoded, a str written as is) into the conf dir."""
        path = self.conf_dir / filename
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2))
        return path

    def clear_confs(self) -> None:
        for p in self.conf_dir.iterdir():
            p.unlink()

    def options(self, **kw: Any) -> Any:
        """``pycontainerd.core.cni.Options`` for this network's dirs (``kw`` overrides)."""
        from pycontainerd.core.cni import Options

        base: dict[str, Any] = {
            "bin_dirs": (self.bin_dir,),
            "conf_dir": str(self.conf_dir),
            "cache_dir": str(self.cache_dir),
            "plugin_timeout": 60.0,
        }
        base.update(kw)
        return Options(**base)

    # --- what is left on the host -------------------------------------------------------

    def leftover_rules(self) -> list[str]:
        """``<binary>/<table>: <rule>`` for nat/filter rules that mention this network (there
        should be none after every DEL)."""
        marks = (self.name, self.bridge, str(self.subnet.network_address).rsplit(".", 1)[0] + ".")
        out = []
        for b in IPTABLES:
            for table in ("nat", "filter"):
                out += [f"{b}/{table}: {r}" for r in _rules(table, b) if any(m in r for m in marks)]
        return out

    def per_container_chains(self) -> list[str]:
        """``<binary>/<chain>`` for chains bridge/portmap made for single containers that
        still exist (none after every DEL)."""
        out = []
        for b in IPTABLES:
            new = _chains("nat", b) - self._chains_before.get(f"{b}/nat", set())
            out += [
                f"{b}/{c}"
                for c in sorted(new)
                if c.startswith(("CNI-DN-", "CNI-SN-")) or re.fullmatch(r"CNI-[0-9a-f]{24}", c)
            ]
        return out

    def cleanup(self) -> None:
        """Remove the bridge, any rule or chain this network left, and portmap's shared
        chains when this session created them and nothing uses them any more."""
        for rule in reversed(self.leftover_rules()):
            where, _, spec = rule.partition(": ")
            b, table = where.split("/")
            run(b, "-t", table, *_delete_args(spec), check=False)
        for item in self.per_container_chains():
            b, chain = item.split("/")
            run(b, "-t", "nat", "-F", chain, check=False)
            run(b, "-t", "nat", "-X", chain, check=False)
        for b in IPTABLES:
            before = self._chains_before.get(f"{b}/nat", set())
            now = _chains("nat", b)
            created = [c for c in PORTMAP_CHAINS if c in now and c not in before]
            if not created:
                continue
            rules = _rules("nat", b)
            if any(r.startswith("-A CNI-HOSTPORT-DNAT ") for r in rules):
                continue  # someone else's pods still forward ports
            for r in rules:
                if any(f"-j {c}" in r for c in created) and not r.startswith("-A CNI-HOSTPORT-"):
                    run(b, "-t", "nat", *_delete_args(r), check=False)
            for c in created:
                run(b, "-t", "nat", "-F", c, check=False)
            for c in created:
                run(b, "-t", "nat", "-X", c, check=False)
        if os.path.exists(f"/sys/class/net/{self.bridge}"):
            run("ip", "link", "del", self.bridge, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _delete_args(rule: str) -> list[str]:
    """``-A CHAIN spec...`` as iptables -S prints it -> the argv of ``-D CHAIN spec...``."""
    import shlex

    args = shlex.split(rule)
    if args and args[0] == "-A":
        args[0] = "-D"
    return args
