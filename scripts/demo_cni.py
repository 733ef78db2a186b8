"""The demo's CNI network (scripts/demo.sh): ``setup WORKDIR`` writes a conflist (bridge with a
unique name and a free private /24, host-local, portmap; the CRI adds loopback itself) into
``WORKDIR/net.d`` through tests/support/cni.py and records what it needs for cleanup in
``WORKDIR/network.json``; ``cleanup WORKDIR`` removes the bridge, the iptables rules and chains
the network left and the work dir. Prints the bridge and subnet."""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

import cni  # noqa: E402


def setup(workdir: Path) -> int:
    cleanup(workdir)  # a previous run that was interrupted
    bin_dir = cni.plugin_dir()
    if bin_dir is None:
        print(
            "demo: containernetworking-plugins not found (bridge, host-local, portmap)",
            file=sys.stderr,
        )
        return 1
    net = cni.TestNetwork(workdir, bin_dir)
    net.write(net.conflist())
    state = {
        "bin_dir": bin_dir,
        "suffix": net.suffix,
        "subnet": str(net.subnet),
        "chains_before": {k: sorted(v) for k, v in net._chains_before.items()},
    }
    (workdir / "network.json").write_text(json.dumps(state))
    print(f"bridge {net.bridge}, subnet {net.subnet}, conf {net.conf_dir}, plugins {bin_dir}")
    return 0


def cleanup(workdir: Path) -> int:
    path = workdir / "network.json"
    if not path.is_file():
        return 0
    state = json.loads(path.read_text())
    net = cni.TestNetwork(
        workdir,
        state["bin_dir"],
        suffix=state["suffix"],
        subnet=ipaddress.IPv4Network(state["subnet"]),
    )
    net._chains_before = {k: set(v) for k, v in state["chains_before"].items()}
    net.cleanup()
    print(f"removed bridge {net.bridge} and its rules")
    return 0


if __name__ == "__main__":
    cmd, workdir = sys.argv[1], Path(sys.argv[2])
    sys.exit({"setup": setup, "cleanup": cleanup}[cmd](workdir))
