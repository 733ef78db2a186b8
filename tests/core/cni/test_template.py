from __future__ import annotations

import json
from pathlib import Path

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.cni import conf_list_from_file
from pycontainerd.core.cni.template import (
    CONFIG_FILE_NAME,
    render_conf_template,
    routes_for,
    write_conf_from_template,
)

TEMPLATE = (
    """{
  "cniVersion": "1.0.0",
  "name": "k8s-pod-network",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "ipam": {
        "type": "host-local",
        "subnet": "{{.PodCIDR}}",
        "ranges": [
          {{- range $i, $r := .PodCIDRRanges}}{{if $i}}, {{end}}
          [{"subnet": "{{$r}}"}]
          {{- end}}
        ],
        "routes": ["""
    '{{range $i, $route := .Routes}}{{if $i}},{{else}} {{end}}{"dst": "{{$route}}"}{{end}}]'
    """
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
"""
)


def test_dual_stack_template_renders_ranges_and_routes() -> None:
    text = render_conf_template(TEMPLATE, ["10.88.0.0/16", "fd00:10::/64"])
    doc = json.loads(text)
    ipam = doc["plugins"][0]["ipam"]
    assert ipam["subnet"] == "10.88.0.0/16"
    assert ipam["ranges"] == [[{"subnet": "10.88.0.0/16"}], [{"subnet": "fd00:10::/64"}]]
    assert ipam["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    assert '"ranges": [\n          [{"subnet": "10.88.0.0/16"}]' in text  # {{- trims before


def test_routes_have_one_default_per_family() -> None:
    assert routes_for(["10.1.0.0/24", "10.2.0.0/24"]) == ["0.0.0.0/0"]
    assert routes_for(["fd00::/64"]) == ["::/0"]
    with pytest.raises(errdefs.InvalidArgument, match="invalid pod cidr"):
        routes_for(["nonsense"])


@pytest.mark.parametrize(
    "template", ["{{.Nope}}", "{{printf .PodCIDR}}", "{{range .Routes}}x", "{{end}}"]
)
def test_unsupported_or_broken_templates_are_invalid(template: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        render_conf_template(template, ["10.0.0.0/24"])


def test_written_config_loads_as_a_conflist(tmp_path: Path) -> None:
    tpl = tmp_path / "template.json"
    tpl.write_text(TEMPLATE)
    path = write_conf_from_template(str(tpl), str(tmp_path / "net.d"), ["10.77.0.0/24"])
    assert path == str(tmp_path / "net.d" / CONFIG_FILE_NAME)
    net = conf_list_from_file(path)
    assert net.name == "k8s-pod-network" and [p.type for p in net.plugins] == ["bridge", "portmap"]
    assert sorted(p.name for p in (tmp_path / "net.d").iterdir()) == [CONFIG_FILE_NAME]
    with pytest.raises(errdefs.FailedPrecondition):
        write_conf_from_template(str(tmp_path / "missing"), str(tmp_path / "net.d"), ["10.0.0.0/8"])
