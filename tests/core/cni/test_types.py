from __future__ import annotations

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.cni import IPConfigEntry, Result, create_result, parse_result, select_pod_ips
from pycontainerd.core.cni.invoke import Args, _plugin_error

RESULT_100 = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "cni0", "mac": "aa:bb:cc:dd:ee:00"},
        {"name": "eth0", "mac": "aa:bb:cc:dd:ee:01", "sandbox": "/var/run/netns/x"},
    ],
    "ips": [
        {"address": "10.22.0.5/24", "gateway": "10.22.0.1", "interface": 1},
        {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 1},
    ],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.22.0.1"}],
    "dns": {"nameservers": ["10.22.0.1"], "search": ["svc.local"]},
}


def test_1_0_0_result_is_parsed() -> None:
    r = parse_result(RESULT_100)
    assert r.cni_version == "1.0.0"
    assert [i.name for i in r.interfaces] == ["cni0", "eth0"]
    assert r.interfaces[1].sandbox == "/var/run/netns/x"
    assert [(ip.ip, ip.gateway, ip.interface, ip.version) for ip in r.ips] == [
        ("10.22.0.5", "10.22.0.1", 1, 4),
        ("fd00::5", "fd00::1", 1, 6),
    ]
    assert r.routes[0].dst == "0.0.0.0/0" and r.routes[0].gw == "10.22.0.1"
    assert r.dns.nameservers == ("10.22.0.1",) and r.dns.search == ("svc.local",)
    assert r.raw is RESULT_100


def test_0_4_0_result_with_version_fields_is_parsed() -> None:
    raw = {
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "eth0"}],
        "ips": [{"version": "4", "address": "10.1.0.2/16", "interface": 0}],
        "dns": {},
    }
    r = parse_result(raw)
    assert r.ips[0].address == "10.1.0.2/16" and r.ips[0].interface == 0
    assert r.dns.empty()


def test_0_2_0_result_is_converted() -> None:
    raw = {
        "cniVersion": "0.2.0",
        "ip4": {"ip": "10.3.0.9/24", "gateway": "10.3.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
        "dns": {"nameservers": ["1.1.1.1"]},
    }
    r = parse_result(raw)
    ips = [(i.address, i.gateway, i.interface) for i in r.ips]
    assert ips == [("10.3.0.9/24", "10.3.0.1", None)]
    assert r.routes[0].dst == "0.0.0.0/0"


@pytest.mark.parametrize(
    "raw",
    [
        [],
        {"cniVersion": "1.0.0", "ips": [{"address": "nonsense"}]},
        {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/24", "interface": 3}]},
        {"cniVersion": "1.0.0", "interfaces": [{"mac": "x"}]},
        {"cniVersion": "1.0.0", "routes": [{"gw": "10.0.0.1"}]},
    ],
)
def test_invalid_results_are_rejected(raw: object) -> None:
    with pytest.raises(errdefs.Internal, match="invalid cni result"):
        parse_result(raw)


def test_result_groups_addresses_by_interface_and_round_trips() -> None:
    lo = {
        "cniVersion": "0.3.1",
        "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00"}],
        "ips": [{"version": "4", "address": "127.0.0.1/8", "interface": 0}],
    }
    res = create_result([parse_result(lo), parse_result(RESULT_100)])
    assert res.ips("eth0") == ["10.22.0.5", "fd00::5"]
    assert res.ips("lo") == ["127.0.0.1"]
    assert res.interfaces["eth0"].mac == "aa:bb:cc:dd:ee:01"
    assert res.interfaces["eth0"].ip_configs[0].prefix_len == 24
    assert res.routes[0].gw == "10.22.0.1"
    again = Result.from_json(res.to_json())
    assert again == res


def test_address_without_interface_index_goes_to_the_default_interface() -> None:
    raw = {"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.3/24"}]}
    res = create_result([parse_result(raw)])
    assert res.ips("eth0") == ["10.9.0.3"]


def test_pod_ip_selection_follows_ip_pref() -> None:
    cfgs = [IPConfigEntry(ip="fd00::5"), IPConfigEntry(ip="10.0.0.5"), IPConfigEntry(ip="10.0.0.6")]
    assert select_pod_ips(cfgs, "") == ("10.0.0.5", ["fd00::5", "10.0.0.6"])
    assert select_pod_ips(cfgs, "ipv4") == ("10.0.0.5", ["fd00::5", "10.0.0.6"])
    assert select_pod_ips(cfgs, "ipv6") == ("fd00::5", ["10.0.0.5", "10.0.0.6"])
    assert select_pod_ips(cfgs, "cni") == ("fd00::5", ["10.0.0.5", "10.0.0.6"])
    assert select_pod_ips(cfgs[:1], "ipv4") == ("fd00::5", [])
    assert select_pod_ips([], "") == ("", [])


def test_cni_args_and_path_in_the_plugin_environment() -> None:
    env = Args(
        command="ADD",
        container_id="c1",
        netns="/run/netns/x",
        ifname="eth0",
        plugin_args=(("K8S_POD_NAME", "web"), ("IgnoreUnknown", "1")),
        path=("/opt/cni/bin", "/usr/lib/cni"),
    ).environ({"PATH": "/usr/bin", "CNI_IFNAME": "stale"})
    assert env == {
        "PATH": "/usr/bin",
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/run/netns/x",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "K8S_POD_NAME=web;IgnoreUnknown=1",
        "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
    }


def test_plugin_error_output_forms() -> None:
    out = b'{"code": 7, "msg": "bad config", "details": "no ipam"}'
    e = _plugin_error("bridge", "ADD", 1, out, b"")
    assert (e.cni_code, e.msg, e.details) == (7, "bad config", "no ipam")
    assert str(e) == "bad config; no ipam"
    e = _plugin_error("bridge", "ADD", 2, b"", b"panic: boom\n")
    assert str(e) == "netplugin failed: 'panic: boom': exit status 2"
    e = _plugin_error("bridge", "ADD", 1, b"", b"")
    assert "no error message" in str(e)
    e = _plugin_error("bridge", "ADD", 1, b"garbage", b"")
    assert "error parsing its diagnostic message 'garbage'" in str(e)
