"""Pod networking end to end with Debian's containernetworking-plugins: a namespace, the
loopback network and a bridge + host-local + portmap conflist, traffic from the host to the pod
(ICMP, TCP to the pod IP, TCP through host ports), CHECK, DEL, and nothing left afterwards
(the ``cni_net`` fixture asserts no iptables rule/chain and no host-local allocation remains).

Traffic goes only to addresses on this machine: the pod's address on the test bridge, the
bridge's gateway address and 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cni as support
import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.cni import CNI, PluginError, PortMapping, pod_labels
from pycontainerd.core.netns import NetNS

pytestmark = [pytest.mark.root, pytest.mark.integration]

SANDBOX = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
LABELS = pod_labels(SANDBOX, "web", "default", "uid-1")

# A one-file TCP server: prints "ready" once listening, answers each connection with "pod".
SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"pod")
    c.close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server_in(ns: NetNS, port: int) -> Iterator[None]:
    proc = subprocess.Popen(
        ["nsenter", f"--net={ns.path}", sys.executable, "-c", SERVER, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


async def fetch(host: str, port: int) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def link_up(ns: NetNS, ifname: str) -> bool:
    out = support.in_netns(ns.path, "ip", "-j", "link", "show", "dev", ifname, check=False)
    return bool(out) and "UP" in json.loads(out)[0]["flags"]


def cached(net: support.TestNetwork, ifname: str = "eth0", name: str | None = None) -> Path:
    return net.cache_dir / "results" / f"{name or net.name}-{SANDBOX}-{ifname}"


async def test_pod_gets_an_address_reachable_from_the_host_and_through_host_ports(
    cni_net: support.TestNetwork, make_netns: Callable[[], NetNS]
) -> None:
    cni_net.write(cni_net.conflist())
    c = CNI(cni_net.options())
    c.load()
    c.status()
    ns = make_netns()
    host_port, container_port = free_port(), 8080
    ports = [PortMapping(host_port=host_port, container_port=container_port, protocol="TCP")]

    result = await c.setup(SANDBOX, ns.path, labels=LABELS, port_mappings=ports)
    try:
        (eth0,) = result.interfaces["eth0"].ip_configs
        assert ipaddress.ip_address(eth0.ip) in cni_net.subnet
        assert eth0.gateway == cni_net.gateway
        assert result.interfaces["eth0"].sandbox == ns.path
        assert "127.0.0.1" in result.ips("lo")
        assert support.addresses_in(ns.path) == [f"{eth0.ip}/24"]
        assert link_up(ns, "lo")
        assert cni_net.allocated_ips() == [eth0.ip]

        entry = json.loads(cached(cni_net).read_text())
        assert entry["kind"] == "cniCacheV1" and entry["containerId"] == SANDBOX
        assert dict(entry["cniArgs"])["K8S_POD_NAME"] == "web"
        assert entry["capabilityArgs"]["portMappings"][0]["hostPort"] == host_port
        assert entry["result"]["ips"][0]["address"] == f"{eth0.ip}/24"

        assert support.ping(eth0.ip), "pod address does not answer ping from the host"
        with server_in(ns, container_port):
            assert await fetch(eth0.ip, container_port) == b"pod"
            # portmap DNATs host ports for local destinations (OUTPUT chain): the bridge's
            # gateway address, and 127.0.0.1 thanks to route_localnet on the bridge
            assert await fetch(cni_net.gateway, host_port) == b"pod"
            assert await fetch("127.0.0.1", host_port) == b"pod"
    finally:
        await c.remove(SANDBOX, ns.path, labels=LABELS, port_mappings=ports)

    assert not cached(cni_net).exists()
    assert cni_net.allocated_ips() == []
    assert not _has_link(ns, "eth0")
    # DEL is idempotent
    await c.remove(SANDBOX, ns.path, labels=LABELS, port_mappings=ports)


def _has_link(ns: NetNS, ifname: str) -> bool:
    out = support.in_netns(ns.path, "ip", "-j", "link", "show", "dev", ifname, check=False)
    return bool(out.strip())


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
async def test_check_passes_for_a_healthy_attachment_and_fails_when_it_is_broken(
    cni_net: support.TestNetwork, make_netns: Callable[[], NetNS], version: str
) -> None:
    # portmap 1.1.1 (Debian 12) fails CHECK on IPv4-only pods when ip6tables works (it checks
    # an IPv6 chain it never created), so CHECK is exercised on bridge + host-local.
    cni_net.write(cni_net.conflist(cni_version=version, portmap=False))
    c = CNI(cni_net.options())
    c.load()
    ns = make_netns()
    await c.setup(SANDBOX, ns.path, labels=LABELS)
    try:
        await c.check(SANDBOX, ns.path, labels=LABELS)
        # a MAC other than the one ADD reported (deleting the link instead would make the
        # bridge plugin's DEL skip its masquerade teardown, see below)
        support.in_netns(ns.path, "ip", "link", "set", "eth0", "address", "02:00:00:00:00:42")
        with pytest.raises(PluginError) as exc:
            await c.check(SANDBOX, ns.path, labels=LABELS)
        assert 'plugin type="bridge"' in str(exc.value) and "(check)" in str(exc.value)
    finally:
        await c.remove(SANDBOX, ns.path, labels=LABELS)


async def test_0_3_1_network_is_set_up_and_removed_without_cached_prev_result(
    cni_net: support.TestNetwork, make_netns: Callable[[], NetNS]
) -> None:
    cni_net.write(cni_net.conflist(cni_version="0.3.1"))
    c = CNI(cni_net.options())
    c.load()
    ns = make_netns()
    result = await c.setup(SANDBOX, ns.path, labels=LABELS)
    assert len(result.ips()) == 1
    await c.check(SANDBOX, ns.path)  # no network speaks CHECK: nothing to do
    await c.remove(SANDBOX, ns.path, labels=LABELS)


async def test_two_namespaces_get_different_addresses(
    cni_net: support.TestNetwork, make_netns: Callable[[], NetNS]
) -> None:
    cni_net.write(cni_net.conflist())
    c = CNI(cni_net.options())
    c.load()
    a, b = make_netns(), make_netns()
    ra = await c.setup("pod-a", a.path)
    rb = await c.setup("pod-b", b.path)
    try:
        assert ra.ips() and rb.ips() and ra.ips() != rb.ips()
        assert sorted(cni_net.allocated_ips()) == sorted(ra.ips() + rb.ips())
        # the two pods reach each other across the bridge
        assert await a.arun_in(lambda: support.ping(rb.ips()[0]))
    finally:
        await c.remove("pod-a", a.path)
        await c.remove("pod-b", b.path)


async def test_plugin_error_surfaces_with_its_message_and_setup_is_undone(
    cni_net: support.TestNetwork, make_netns: Callable[[], NetNS]
) -> None:
    doc = cni_net.conflist()
    doc["plugins"][0]["ipam"]["ranges"] = [[{"subnet": "10.1.2.0/33"}]]
    cni_net.write(doc)
    c = CNI(cni_net.options())
    c.load()
    ns = make_netns()
    with pytest.raises(PluginError) as exc:
        await c.setup(SANDBOX, ns.path, labels=LABELS)
    err = exc.value
    assert str(err).startswith('plugin type="bridge" failed (add): ')
    assert "invalid CIDR address: 10.1.2.0/33" in str(err)
    assert err.plugin == "bridge" and err.command == "ADD" and err.cni_code != 0
    assert not _has_link(ns, "eth0")
    assert not cached(cni_net).exists()


async def test_missing_plugin_binary_is_not_found_before_anything_runs(
    cni_net: support.TestNetwork, make_netns: Callable[[], NetNS]
) -> None:
    cni_net.write(cni_net.conflist(extra_plugins=[{"type": "pycni-no-such-plugin"}]))
    c = CNI(cni_net.options())
    c.load()
    ns = make_netns()
    with pytest.raises(errdefs.NotFound) as exc:
        await c.setup(SANDBOX, ns.path, labels=LABELS)
    assert 'failed to find plugin "pycni-no-such-plugin" in path [' in str(exc.value)
    assert 'plugin type="pycni-no-such-plugin" failed (add)' in str(exc.value)
    assert not _has_link(ns, "eth0")


async def test_failure_of_a_later_plugin_undoes_the_earlier_ones(
    cni_net: support.TestNetwork, make_netns: Callable[[], NetNS]
) -> None:
    # tuning runs after bridge (which took an address and added masquerade rules) and fails
    bad = {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.pycni_no_such_sysctl": "1"}}
    cni_net.write(cni_net.conflist(extra_plugins=[bad]))
    c = CNI(cni_net.options())
    c.load()
    ns = make_netns()
    with pytest.raises(PluginError) as exc:
        await c.setup(SANDBOX, ns.path, labels=LABELS)
    assert str(exc.value).startswith('plugin type="tuning" failed (add): ')
    assert "pycni_no_such_sysctl" in str(exc.value)
    assert not _has_link(ns, "eth0")
    assert not cached(cni_net).exists()
    # the fixture checks the address is released and the masquerade rules are gone


async def test_malformed_conflist_makes_the_network_not_ready(
    cni_net: support.TestNetwork, make_netns: Callable[[], NetNS]
) -> None:
    path = cni_net.write('{"cniVersion": "1.0.0", "name": "x", "plugins": [')
    c = CNI(cni_net.options())
    with pytest.raises(errdefs.InvalidArgument, match=str(path)):
        c.load()
    assert not c.ready()
    with pytest.raises(errdefs.FailedPrecondition, match="cni plugin not initialized"):
        await c.setup(SANDBOX, make_netns().path)


async def test_remove_after_the_namespace_is_gone_still_releases_the_address(
    cni_net: support.TestNetwork, make_netns: Callable[[], NetNS]
) -> None:
    # bridge (1.1.1 and still upstream) removes its ipMasq rules only when it finds the pod's
    # interface; with the namespace gone they would stay, which is why the CRI tears the network
    # down before it removes the namespace. Here: host-local and portmap must clean up.
    ports = [PortMapping(host_port=free_port(), container_port=80)]
    cni_net.write(cni_net.conflist(ip_masq=False))
    c = CNI(cni_net.options())
    c.load()
    ns = make_netns()
    await c.setup(SANDBOX, ns.path, labels=LABELS, port_mappings=ports)
    assert cni_net.allocated_ips()
    ns.remove()
    assert ns.closed()
    await c.remove(SANDBOX, ns.path, labels=LABELS, port_mappings=ports)
    # the fixture asserts the address and the portmap/masquerade rules are gone


async def test_remove_of_an_unknown_pod_is_a_no_op(
    cni_net: support.TestNetwork, make_netns: Callable[[], NetNS]
) -> None:
    cni_net.write(cni_net.conflist())
    c = CNI(cni_net.options())
    c.load()
    await c.remove("never-set-up", make_netns().path)
    await c.remove("never-set-up", "")


async def test_internal_loopback_brings_lo_up_without_the_loopback_plugin(
    cni_net: support.TestNetwork, make_netns: Callable[[], NetNS]
) -> None:
    cni_net.write(cni_net.conflist(portmap=False))
    c = CNI(cni_net.options(use_internal_loopback=True))
    c.load()
    assert [n.ifname for n in c.networks] == ["eth0"]
    ns = make_netns()
    assert not link_up(ns, "lo")
    result = await c.setup(SANDBOX, ns.path)
    try:
        assert "lo" not in result.interfaces
        assert link_up(ns, "lo")
    finally:
        await c.remove(SANDBOX, ns.path)


@pytest.fixture
def second_net(tmp_path: Path) -> Iterator[support.TestNetwork]:
    d = support.plugin_dir()
    assert d is not None
    net = support.TestNetwork(tmp_path / "second", d)
    try:
        yield net
    finally:
        net.cleanup()


@pytest.mark.parametrize("serially", [True, False])
async def test_every_network_of_the_conf_dir_gets_its_own_interface(
    cni_net: support.TestNetwork,
    second_net: support.TestNetwork,
    make_netns: Callable[[], NetNS],
    serially: bool,
) -> None:
    cni_net.write(cni_net.conflist(portmap=False), "10-first.conflist")
    second = second_net.conflist(portmap=False)
    cni_net.write(second, "20-second.conflist")
    c = CNI(cni_net.options(max_conf_num=2, setup_serially=serially))
    c.load()
    assert [n.ifname for n in c.networks] == ["lo", "eth0", "eth1"]
    ns = make_netns()
    result = await c.setup(SANDBOX, ns.path)
    try:
        assert ipaddress.ip_address(result.ips("eth0")[0]) in cni_net.subnet
        assert ipaddress.ip_address(result.ips("eth1")[0]) in second_net.subnet
        assert support.addresses_in(ns.path, "eth1") == [f"{result.ips('eth1')[0]}/24"]
        assert len(c.cached_results(SANDBOX)) == 3
    finally:
        await c.remove(SANDBOX, ns.path)
    assert second_net.allocated_ips() == []
    assert second_net.leftover_rules() == []
    assert os.listdir(cni_net.cache_dir / "results") == []


async def test_a_plugin_that_hangs_is_killed_at_the_timeout(
    cni_net: support.TestNetwork, make_netns: Callable[[], NetNS], tmp_path: Path
) -> None:
    # a plugin directory of our own, beside the real one: "pycni-hang" sleeps forever
    bins = tmp_path / "bin"
    bins.mkdir()
    hang = bins / "pycni-hang"
    hang.write_text("#!/bin/sh\nexec sleep 60\n")
    hang.chmod(0o755)
    cni_net.write(cni_net.conflist(portmap=False, extra_plugins=[{"type": "pycni-hang"}]))
    c = CNI(cni_net.options(bin_dirs=(cni_net.bin_dir, str(bins)), plugin_timeout=1.0))
    c.load()
    ns = make_netns()
    with pytest.raises(errdefs.DeadlineExceeded) as exc:
        await c.setup(SANDBOX, ns.path, labels=LABELS)
    assert 'plugin type="pycni-hang" failed (add)' in str(exc.value)
    assert "within 1.0s" in str(exc.value)
    assert not _has_link(ns, "eth0")
