from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.cdi import specs
from pycontainerd.core.cdi.specs import (
    ContainerEdits,
    DeviceNode,
    Hook,
    IntelRdt,
    InvalidSpec,
    Mount,
    NetDevice,
    parse_spec,
    read_spec,
)

FULL_YAML = """\
cdiVersion: "1.1.0"
kind: vendor.com/device
annotations:
  vendor.com/info: spec-level
containerEdits:
  env: ["SPEC=1"]
  hooks:
    - hookName: createContainer
      path: /usr/bin/hook
      args: [hook, --flag]
      env: ["HOOK=1"]
      timeout: 5
devices:
  - name: dev0
    annotations:
      vendor.com/idx: "0"
    containerEdits:
      env: ["DEV=0"]
      deviceNodes:
        - path: /dev/vendor0
          hostPath: /dev/null
          type: c
          major: 1
          minor: 3
          fileMode: 0666
          permissions: rw
          uid: 1000
          gid: 1000
      mounts:
        - hostPath: /usr/lib/vendor
          containerPath: /usr/lib/vendor
          type: bind
          options: [ro, rbind]
      intelRdt:
        closID: clos0
        l3CacheSchema: "L3:0=ff"
        memBwSchema: "MB:0=50"
        schemata: ["L2:0=f"]
        enableMonitoring: true
      additionalGids: [44, 0]
      netDevices:
        - hostInterfaceName: eth1
          name: net0
"""


def _spec(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "cdiVersion": "0.6.0",
        "kind": "vendor.com/device",
        "devices": [{"name": "dev0", "containerEdits": {"env": ["A=1"]}}],
    }
    raw.update(over)
    return raw


def _edits(**edits: Any) -> dict[str, Any]:
    return _spec(cdiVersion="1.1.0", devices=[{"name": "dev0", "containerEdits": edits}])


def test_yaml_spec_parses_every_field() -> None:
    spec = parse_spec(FULL_YAML, path="/etc/cdi/vendor.yaml", priority=1)
    assert spec.version == "1.1.0"
    assert (spec.vendor, spec.device_class) == ("vendor.com", "device")
    assert spec.path == "/etc/cdi/vendor.yaml"
    assert spec.priority == 1
    assert spec.annotations == {"vendor.com/info": "spec-level"}
    assert spec.container_edits == ContainerEdits(
        env=("SPEC=1",),
        hooks=(
            Hook(
                hook_name="createContainer",
                path="/usr/bin/hook",
                args=("hook", "--flag"),
                env=("HOOK=1",),
                timeout=5,
            ),
        ),
    )
    (dev,) = spec.devices
    assert dev.qualified_name == "vendor.com/device=dev0"
    assert spec.get_device("dev0") is dev
    assert spec.get_device("dev1") is None
    assert dev.annotations == {"vendor.com/idx": "0"}
    assert dev.container_edits == ContainerEdits(
        env=("DEV=0",),
        device_nodes=(
            DeviceNode(
                path="/dev/vendor0",
                host_path="/dev/null",
                type="c",
                major=1,
                minor=3,
                file_mode=0o666,  # YAML 1.1 octal, as CDI's YAML decoder reads it
                permissions="rw",
                uid=1000,
                gid=1000,
            ),
        ),
        mounts=(
            Mount(
                host_path="/usr/lib/vendor",
                container_path="/usr/lib/vendor",
                type="bind",
                options=("ro", "rbind"),
            ),
        ),
        intel_rdt=IntelRdt(
            clos_id="clos0",
            l3_cache_schema="L3:0=ff",
            mem_bw_schema="MB:0=50",
            schemata=("L2:0=f",),
            enable_monitoring=True,
        ),
        additional_gids=(44, 0),
        net_devices=(NetDevice(host_interface_name="eth1", name="net0"),),
    )


def test_json_and_yaml_give_the_same_spec() -> None:
    import yaml

    raw = yaml.safe_load(FULL_YAML)
    assert parse_spec(json.dumps(raw)) == parse_spec(FULL_YAML)
    # JSON with tabs (which YAML would refuse) is read as JSON
    assert parse_spec(json.dumps(raw, indent="\t")) == parse_spec(FULL_YAML)


def test_read_spec_reads_files(tmp_path: Path) -> None:
    p = tmp_path / "vendor.json"
    p.write_text(json.dumps(_spec()))
    spec = read_spec(p, priority=3)
    assert spec.path == str(p)
    assert spec.priority == 3
    with pytest.raises(FileNotFoundError):
        read_spec(tmp_path / "missing.json")


def test_read_spec_error_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("cdiVersion: 0.6.0\nkind: vendor.com/device\ndevices: []\n")
    with pytest.raises(InvalidSpec) as info:
        read_spec(p)
    assert str(p) in str(info.value)
    assert "no devices" in str(info.value)
    assert isinstance(info.value, errdefs.InvalidArgument)


def test_field_names_match_case_insensitively_as_cdi_decoder() -> None:
    # CDI's SPEC.md spells it additionalGIDs; its Go decoder reads that into additionalGids
    spec = parse_spec(json.dumps(_edits(additionalGIDs=[5])))
    assert spec.devices[0].container_edits.additional_gids == (5,)


def test_null_means_unset() -> None:
    spec = parse_spec(json.dumps(_spec(annotations=None, containerEdits=None, cdiVersion="0.3.0")))
    assert spec.container_edits == ContainerEdits()
    assert spec.annotations == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_spec(cdiVersion=None), "invalid cdiVersion ''"),
        (_spec(cdiVersion="0.9.0"), "invalid cdiVersion '0.9.0'"),
        (_spec(cdiVersion="2.0.0"), "invalid cdiVersion '2.0.0'"),
        (_spec(kind=None), "invalid kind ''"),
        (_spec(kind="device"), "invalid kind 'device'"),
        (_spec(kind="vendor.com/foo/bar"), "invalid kind 'vendor.com/foo/bar'"),
        (_spec(kind="vendor.com/foo/"), "invalid kind"),
        (_spec(kind="-vendor.com/foo"), "invalid vendor name"),
        (_spec(devices=[]), "no devices"),
        (_spec(devices=None), "no devices"),
        (_spec(devices=[{"name": "dev0"}]), "device 'dev0': no container edits"),
        (
            _spec(devices=[{"name": "-x", "containerEdits": {"env": ["A=1"]}}]),
            "invalid device name '-x'",
        ),
        (
            _spec(devices=[{"name": "d", "containerEdits": {"env": ["A=1"]}}] * 2),
            "device 'd' defined more than once",
        ),
        (_spec(extra=1), "spec: unknown field 'extra'"),
        (
            _spec(devices=[{"name": "d", "containerEdits": {"env": ["A=1"], "bogus": []}}]),
            "devices[0].containerEdits: unknown field 'bogus'",
        ),
        (_spec(kind=5), "kind: expected a string, got number"),
        (_spec(devices={"name": "d"}), "devices: expected an array, got object"),
        (_edits(env="A=1"), "env: expected an array, got string"),
        (_edits(env=[1]), "env[0]: expected a string, got number"),
        (_edits(env=["=1"]), "invalid environment variable '=1'"),
        (_edits(env=["NOEQUALS"]), "invalid environment variable 'NOEQUALS'"),
        (_edits(additionalGids=[-1]), "additionalGids[0]: -1 out of range"),
        (_edits(additionalGids=[2**32]), "out of range"),
        (_edits(additionalGids=[True]), "expected an integer, got boolean"),
        (_edits(deviceNodes=[{"path": ""}]), "device node with an empty path"),
        (_edits(deviceNodes=[{"path": "dev/x"}]), "device node path 'dev/x' is not absolute"),
        (
            _edits(deviceNodes=[{"path": "/dev/x", "hostPath": "x"}]),
            "device node hostPath 'x' is not absolute",
        ),
        (_edits(deviceNodes=[{"path": "/dev/x", "type": "z"}]), "invalid type 'z'"),
        (
            _edits(deviceNodes=[{"path": "/dev/x", "permissions": "rwx"}]),
            "invalid permissions 'rwx'",
        ),
        (_edits(deviceNodes=[{"path": "/dev/x", "major": 1.5}]), "major: expected an integer"),
        (_edits(deviceNodes=[{"path": "/dev/x", "uid": -1}]), "uid: -1 out of range"),
        (_edits(deviceNodes=[{"path": "/dev/x", "hsotPath": "/x"}]), "unknown field 'hsotPath'"),
        (_edits(mounts=[{"hostPath": "", "containerPath": "/x"}]), "empty hostPath"),
        (_edits(mounts=[{"hostPath": "/x"}]), "empty containerPath"),
        (_edits(hooks=[{"hookName": "bogus", "path": "/x"}]), "invalid hook name 'bogus'"),
        (_edits(hooks=[{"hookName": "poststop"}]), "poststop hook with an empty path"),
        (_edits(hooks=[{"hookName": "poststop", "path": "x"}]), "hook path 'x' is not absolute"),
        (
            _edits(hooks=[{"hookName": "poststop", "path": "/x", "timeout": 0}]),
            "timeout must be positive",
        ),
        (
            _edits(hooks=[{"hookName": "poststop", "path": "/x", "env": ["X"]}]),
            "invalid environment variable 'X'",
        ),
        (_edits(intelRdt={"closID": "a/b"}), "invalid intelRdt closID 'a/b'"),
        (_edits(intelRdt={"closID": ".."}), "invalid intelRdt closID '..'"),
        (_edits(intelRdt={"enableMonitoring": "yes"}), "expected a boolean, got string"),
        (_edits(netDevices=[{"hostInterfaceName": "", "name": "a"}]), "empty hostInterfaceName"),
        (_edits(netDevices=[{"hostInterfaceName": "eth0"}]), "'eth0' has an empty name"),
        (
            _edits(
                netDevices=[
                    {"hostInterfaceName": "eth0", "name": "a"},
                    {"hostInterfaceName": "eth0", "name": "b"},
                ]
            ),
            "hostInterfaceName 'eth0' used twice",
        ),
        (
            _edits(
                netDevices=[
                    {"hostInterfaceName": "eth0", "name": "a"},
                    {"hostInterfaceName": "eth1", "name": "a"},
                ]
            ),
            "net device name 'a' used twice",
        ),
        (
            _spec(containerEdits={"deviceNodes": [{"path": "x"}]}),
            "containerEdits: device node path 'x' is not absolute",
        ),
        (_spec(annotations={"a": 1}), "annotations.a: expected a string, got number"),
    ],
)
def test_invalid_specs_are_refused_saying_why(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_spec(json.dumps(raw))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("", "no spec data"),
        ("---\n", "no spec data"),
        ("[1, 2]", "spec: expected an object, got array"),
        ("kind: [unclosed", "failed to parse"),
        ('{"kind": "a/b", "kind": "a/c"}', "duplicate key 'kind'"),
        ("kind: a/b\nkind: a/c\n", "duplicate key 'kind'"),
    ],
)
def test_unparsable_data_is_refused(data: str, message: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_spec(data)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("raw", "required"),
    [
        (_spec(), "0.3.0"),
        (_edits(mounts=[{"hostPath": "/a", "containerPath": "/b", "type": "bind"}]), "0.4.0"),
        (_edits(deviceNodes=[{"path": "/dev/x", "hostPath": "/dev/y"}]), "0.5.0"),
        (_spec(devices=[{"name": "0", "containerEdits": {"env": ["A=1"]}}]), "0.5.0"),
        (_spec(annotations={"a": "b"}), "0.6.0"),
        (
            _spec(
                devices=[
                    {"name": "d", "annotations": {"a": "b"}, "containerEdits": {"env": ["A=1"]}}
                ]
            ),
            "0.6.0",
        ),
        (_spec(kind="vendor.com/class.sub"), "0.6.0"),
        (_edits(additionalGids=[1]), "0.7.0"),
        (_edits(intelRdt={"closID": "c"}), "0.7.0"),
        (_edits(intelRdt={"schemata": []}), "1.1.0"),
        (_edits(intelRdt={"enableMonitoring": True}), "1.1.0"),
        (_edits(netDevices=[{"hostInterfaceName": "eth0", "name": "a"}]), "1.1.0"),
    ],
)
def test_minimum_required_version_follows_the_features_used(
    raw: dict[str, Any], required: str
) -> None:
    raw = dict(raw, cdiVersion=specs.CURRENT_VERSION)
    spec = parse_spec(json.dumps(raw))
    assert specs.minimum_required_version(spec) == required
    # exactly the required version is accepted, with or without a "v"
    parse_spec(json.dumps(dict(raw, cdiVersion=required)))
    parse_spec(json.dumps(dict(raw, cdiVersion="v" + required)))
    older = specs.KNOWN_VERSIONS[specs.KNOWN_VERSIONS.index(required) - 1]
    with pytest.raises(InvalidSpec, match=f"must be at least {required}"):
        parse_spec(json.dumps(dict(raw, cdiVersion=older)))


def test_versions_before_0_3_0_are_known_but_too_old_as_in_cdi() -> None:
    for v in ("0.1.0", "0.2.0"):
        with pytest.raises(InvalidSpec, match="must be at least 0.3.0"):
            parse_spec(json.dumps(_spec(cdiVersion=v)))


def test_merge_edits_concatenates_and_keeps_last_intel_rdt() -> None:
    a = ContainerEdits(env=("A=1",), intel_rdt=IntelRdt(clos_id="a"), additional_gids=(1,))
    b = ContainerEdits(env=("B=1",), additional_gids=(2,))
    c = ContainerEdits(intel_rdt=IntelRdt(clos_id="c"))
    merged = specs.merge_edits([a, b, c])
    assert merged.env == ("A=1", "B=1")
    assert merged.additional_gids == (1, 2)
    assert merged.intel_rdt == IntelRdt(clos_id="c")
    assert specs.merge_edits([]).is_empty()
