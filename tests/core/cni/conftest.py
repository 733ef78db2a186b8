"""Fixtures for the CNI tests: one throw-away bridge network per session (tests/support/cni.py),
a fresh conf dir and network namespaces per test, and a check that every test leaves no
iptables rule, chain or IP allocation behind."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import cni as support
import pytest

from pycontainerd.core.netns import NetNS


def _require_root_and_plugins() -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = support.plugin_dir()
    if d is None:
        msg = f"containernetworking-plugins not found in {support.PLUGIN_DIRS}"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must install it", pytrace=False)
        pytest.skip(msg)
    for tool in ("nsenter", "iptables", "ip"):
        if not support.shutil.which(tool):
            pytest.skip(f"{tool} not installed")
    return d


@pytest.fixture(scope="session")
def cni_session_network(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[support.TestNetwork]:
    net = support.TestNetwork(tmp_path_factory.mktemp("cni"), _require_root_and_plugins())
    try:
        yield net
    finally:
        net.cleanup()


@pytest.fixture
def cni_net(cni_session_network: support.TestNetwork) -> Iterator[support.TestNetwork]:
    """The session network with an empty conf dir; after the test, nothing may be left."""
    net = cni_session_network
    net.clear_confs()
    yield net
    leftovers = net.leftover_rules() + net.per_container_chains()
    ips = net.allocated_ips()
    net.clear_confs()
    assert not leftovers, f"iptables left behind: {leftovers}"
    assert not ips, f"ip addresses still allocated: {ips}"


@pytest.fixture
def make_netns(tmp_path: Path) -> Iterator[Callable[[], NetNS]]:
    """``make_netns()`` creates a namespace under the test's tmp dir; all removed afterwards."""
    made: list[NetNS] = []

    def make() -> NetNS:
        ns = NetNS.create(str(tmp_path / "netns"))
        made.append(ns)
        return ns

    yield make
    for ns in made:
        ns.remove()
