"""Fixtures shared by the integration tests that run pods: a CNI test network per module."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import cni as cni_support
import peers
import pytest


@pytest.fixture(scope="module")
def network(request: pytest.FixtureRequest) -> Iterator[cni_support.TestNetwork]:
    """A bridge + host-local + portmap network of the module's own (needs the CNI plugins,
    runc and containerd's shim, which CI installs)."""
    bin_dir = cni_support.plugin_dir()
    if bin_dir is None:
        pytest.skip("containernetworking-plugins (bridge, host-local, loopback, portmap) missing")
    for name in ("runc", "containerd-shim-runc-v2"):
        peers.require_binary(name)
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")[:12]
    net = cni_support.TestNetwork(Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")), bin_dir)
    net.write(net.conflist())
    try:
        yield net
    finally:
        net.cleanup()
