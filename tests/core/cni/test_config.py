from __future__ import annotations

import json
from pathlib import Path

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.cni import CNI, Options, conf_list_from_bytes, load_conf_dir
from pycontainerd.core.cni.libcni import CNIConfig, RuntimeConf
from pycontainerd.core.cni.types import PortMapping


def _write(d: Path, name: str, doc: object) -> Path:
    p = d / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def _list(name: str, *types: str, version: str = "1.0.0") -> dict:
    return {"cniVersion": version, "name": name, "plugins": [{"type": t} for t in types]}


def test_conf_dir_files_load_sorted_by_name_and_limited_by_max_conf_num(tmp_path: Path) -> None:
    _write(tmp_path, "20-b.conflist", _list("b", "bridge"))
    _write(tmp_path, "10-a.conflist", _list("a", "bridge", "portmap"))
    _write(tmp_path, "30-c.json", {"cniVersion": "0.4.0", "name": "c", "type": "ptp"})
    _write(tmp_path, "40-ignored.txt", "not a config")
    assert [n.name for n in load_conf_dir(str(tmp_path), 1)] == ["a"]
    nets = load_conf_dir(str(tmp_path), 0)
    assert [n.name for n in nets] == ["a", "b", "c"]
    assert [p.type for p in nets[0].plugins] == ["bridge", "portmap"]
    assert nets[0].source == str(tmp_path / "10-a.conflist")


def test_single_plugin_conf_is_wrapped_into_a_list(tmp_path: Path) -> None:
    _write(tmp_path, "10-one.conf", {"cniVersion": "0.4.0", "name": "one", "type": "bridge"})
    (net,) = load_conf_dir(str(tmp_path), 1)
    assert net.name == "one" and net.cni_version == "0.4.0"
    assert [p.type for p in net.plugins] == ["bridge"]
    assert json.loads(net.raw)["plugins"][0]["type"] == "bridge"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ("{not json", "malformed json"),
        ({"cniVersion": "1.0.0", "plugins": [{"type": "bridge"}]}, "no network name"),
        ({"cniVersion": "1.0.0", "name": "x"}, "no 'plugins' key"),
        ({"cniVersion": "1.0.0", "name": "x", "plugins": []}, "no plugins in list"),
        (
            {"cniVersion": "1.0.0", "name": "x", "plugins": [{"bridge": "b"}]},
            "plugin 0 has no 'type'",
        ),
        (_list("x", "bridge", version="9.9.9"), "newer than supported"),
        (_list("x", "bridge", version="one"), 'invalid cniVersion "one"'),
        (_list("bad name", "bridge"), 'invalid network name "bad name"'),
        (
            {"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "a", "capabilities": 1}]},
            "capabilities must map names to booleans",
        ),
    ],
)
def test_malformed_conflist_is_invalid_argument_naming_the_file(
    tmp_path: Path, doc: object, expected: str
) -> None:
    path = _write(tmp_path, "10-bad.conflist", doc)
    with pytest.raises(errdefs.InvalidArgument) as exc:
        load_conf_dir(str(tmp_path), 1)
    assert str(path) in str(exc.value)
    assert expected in str(exc.value)


def test_empty_or_missing_conf_dir_is_not_initialized(tmp_path: Path) -> None:
    for d in (tmp_path, tmp_path / "missing"):
        with pytest.raises(errdefs.FailedPrecondition, match="cni plugin not initialized"):
            load_conf_dir(str(d), 1)


def test_cni_versions_list_picks_the_highest_supported(tmp_path: Path) -> None:
    doc = {"cniVersions": ["0.4.0", "1.0.0", "7.0.0"], "name": "n", "plugins": [{"type": "x"}]}
    assert conf_list_from_bytes(json.dumps(doc)).cni_version == "1.0.0"


def test_status_needs_loopback_plus_one_network_unless_internal_loopback(tmp_path: Path) -> None:
    c = CNI(Options(conf_dir=str(tmp_path)))
    with pytest.raises(errdefs.FailedPrecondition, match="cni plugin not initialized"):
        c.status()
    with pytest.raises(errdefs.FailedPrecondition):
        c.load()
    assert not c.ready()
    _write(tmp_path, "10-a.conflist", _list("a", "bridge"))
    assert c.reload_if_changed()
    c.status()
    names = [(n.config.name, n.ifname) for n in c.networks]
    assert names == [("cni-loopback", "lo"), ("a", "eth0")]
    assert not c.reload_if_changed()

    internal = CNI(Options(conf_dir=str(tmp_path), use_internal_loopback=True, max_conf_num=0))
    _write(tmp_path, "20-b.conflist", _list("b", "ptp"))
    internal.load()
    assert [(n.config.name, n.ifname) for n in internal.networks] == [("a", "eth0"), ("b", "eth1")]


def test_broken_config_makes_status_report_the_reason(tmp_path: Path) -> None:
    _write(tmp_path, "10-a.conflist", _list("a", "bridge"))
    c = CNI(Options(conf_dir=str(tmp_path)))
    c.load()
    _write(tmp_path, "05-broken.conflist", "{")
    c.reload_if_changed()
    with pytest.raises(errdefs.FailedPrecondition) as exc:
        c.status()
    assert "05-broken.conflist" in str(exc.value) and "malformed json" in str(exc.value)


def test_config_sent_to_a_plugin_has_name_version_prev_result_and_declared_capabilities() -> None:
    net = conf_list_from_bytes(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "net1",
                "plugins": [
                    {"type": "bridge", "cniVersion": "0.3.1", "bridge": "b0"},
                    {"type": "portmap", "capabilities": {"portMappings": True, "bandwidth": False}},
                ],
            }
        )
    )
    rt = RuntimeConf(
        container_id="c1",
        netns="/n",
        ifname="eth0",
        capability_args={
            "portMappings": [PortMapping(host_port=80, container_port=8080, protocol="TCP")],
            "bandwidth": {"ingressRate": 1},
        },
    )
    runner = CNIConfig(["/nowhere"])
    first = json.loads(runner.build_config(net, net.plugins[0], None, rt))
    assert first == {"type": "bridge", "cniVersion": "1.0.0", "bridge": "b0", "name": "net1"}
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}
    second = json.loads(runner.build_config(net, net.plugins[1], prev, rt))
    assert second["prevResult"] == prev
    assert second["runtimeConfig"] == {
        "portMappings": [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp", "hostIP": ""}]
    }
