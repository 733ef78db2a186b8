"""UpdateRuntimeConfig with a ``cni.conf_template``: the CNI config is written from the
template for the pod CIDRs, once (not while a network is configured)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from cri import pb

TEMPLATE = """{
  "cniVersion": "1.0.0",
  "name": "containerd-net",
  "plugins": [{"type": "bridge", "ipam": {"type": "host-local",
    "ranges": [{{range $i, $r := .PodCIDRRanges}}{{if $i}}, {{end}}[{"subnet": "{{$r}}"}]{{end}}],
    "routes": [{{range $i, $r := .Routes}}{{if $i}}, {{end}}{"dst": "{{$r}}"}{{end}}]}}]
}
"""


def conditions(resp: Any) -> dict[str, Any]:
    return {c.type: c for c in resp.status.conditions}


def _update(cidr: str) -> Any:
    return pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr=cidr))
    )


@pytest.fixture
def cri_config(tmp_path):
    template = tmp_path / "template.conflist"
    template.write_text(TEMPLATE)
    return {"io.containerd.cri.v1.runtime": {"cni": {"conf_template": str(template)}}}


async def test_update_runtime_config_writes_the_template_once(cri_daemon):
    conf_dir = os.path.join(cri_daemon.base, "net.d")
    await cri_daemon.cri.runtime.UpdateRuntimeConfig(_update("10.88.0.0/16,fd00::/64"))
    path = os.path.join(conf_dir, "10-containerd-net.conflist")
    written = json.loads(open(path).read())
    ipam = written["plugins"][0]["ipam"]
    assert ipam["ranges"] == [[{"subnet": "10.88.0.0/16"}], [{"subnet": "fd00::/64"}]]
    assert ipam["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    assert conditions(await cri_daemon.cri.status())["NetworkReady"].status
    # a network is configured now: a later CIDR does not rewrite it
    await cri_daemon.cri.runtime.UpdateRuntimeConfig(_update("10.99.0.0/16"))
    assert json.loads(open(path).read()) == written
