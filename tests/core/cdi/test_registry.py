"""The registry: loading spec directories, priorities, errors, resolution and injection."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from pycontainerd.core import cdi, errdefs
from pycontainerd.core.cdi import InvalidDeviceNames, Registry, UnresolvableDevices


def _spec(kind: str, devices: dict[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "cdiVersion": "0.6.0",
        "kind": kind,
        "devices": [{"name": n, "containerEdits": e} for n, e in devices.items()],
        **extra,
    }


def _write(path: Path, raw: dict[str, Any] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(raw if isinstance(raw, str) else json.dumps(raw))
    return path


YAML_SPEC = """\
cdiVersion: 0.6.0
kind: example.com/gpu
containerEdits:
  env: [GPU_SPEC=1]
devices:
  - name: gpu0
    containerEdits:
      env: [GPU=0]
  - name: gpu1
    containerEdits:
      env: [GPU=1]
"""


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "etc-cdi", tmp_path / "run-cdi"


def test_loads_json_yaml_and_yml_files(dirs: tuple[Path, Path]) -> None:
    static, dynamic = dirs
    _write(static / "vendor.json", _spec("vendor.com/device", {"dev0": {"env": ["D=0"]}}))
    _write(static / "gpu.yaml", YAML_SPEC)
    _write(
        dynamic / "nic.yml",
        "cdiVersion: 0.6.0\nkind: net.io/nic\ndevices:\n"
        "  - name: nic0\n    containerEdits: {env: [NIC=0]}\n",
    )
    _write(static / "README.txt", "not a spec")
    (static / "sub.json").mkdir()  # directories are not entered or read
    _write(static / "sub" / "inner.json", _spec("inner.com/x", {"d": {"env": ["A=1"]}}))

    reg = Registry([static, dynamic])
    assert reg.list_devices() == [
        "example.com/gpu=gpu0",
        "example.com/gpu=gpu1",
        "net.io/nic=nic0",
        "vendor.com/device=dev0",
    ]
    assert reg.list_vendors() == ["example.com", "net.io", "vendor.com"]
    assert reg.list_classes() == ["device", "gpu", "nic"]
    assert reg.errors() == {}
    dev = reg.get_device("example.com/gpu=gpu1")
    assert dev is not None and dev.name == "gpu1"
    spec = reg.get_device_spec("example.com/gpu=gpu1")
    assert spec is not None and spec.path == str(static / "gpu.yaml") and spec.priority == 0
    assert reg.get_device("example.com/gpu=gpu9") is None
    assert [s.path for s in reg.get_vendor_specs("net.io")] == [str(dynamic / "nic.yml")]


def test_missing_directories_are_fine(tmp_path: Path) -> None:
    reg = Registry([tmp_path / "nope", tmp_path / "neither"])
    assert reg.list_devices() == []
    assert reg.refresh() == {}


def test_default_directories() -> None:
    assert cdi.DEFAULT_SPEC_DIRS == ("/etc/cdi", "/var/run/cdi")
    assert Registry().spec_dirs == ("/etc/cdi", "/var/run/cdi")
    assert Registry([]).spec_dirs == ("/etc/cdi", "/var/run/cdi")
    assert Registry(["/a/b/", "/c//d"]).spec_dirs == ("/a/b", "/c/d")


def test_later_directories_override_earlier_ones(dirs: tuple[Path, Path]) -> None:
    static, dynamic = dirs
    _write(
        static / "v.json",
        _spec(
            "vendor.com/device",
            {"dev0": {"env": ["FROM=static"]}, "dev1": {"env": ["FROM=static"]}},
        ),
    )
    _write(dynamic / "v.json", _spec("vendor.com/device", {"dev0": {"env": ["FROM=dynamic"]}}))
    reg = Registry([static, dynamic])
    assert reg.list_devices() == ["vendor.com/device=dev0", "vendor.com/device=dev1"]
    spec: dict[str, Any] = {}
    reg.inject(spec, ["vendor.com/device=dev0"])
    assert spec["process"]["env"] == ["FROM=dynamic"]
    spec = {}
    reg.inject(spec, ["vendor.com/device=dev1"])
    assert spec["process"]["env"] == ["FROM=static"]
    assert reg.errors() == {}


def test_same_priority_conflict_is_reported_and_drops_the_device(dirs: tuple[Path, Path]) -> None:
    static, dynamic = dirs
    a = _write(
        static / "a.json",
        _spec("vendor.com/device", {"dev0": {"env": ["A=1"]}, "ok": {"env": ["A=1"]}}),
    )
    b = _write(static / "b.yaml", _spec("vendor.com/device", {"dev0": {"env": ["B=1"]}}))
    reg = Registry([static, dynamic])
    assert reg.list_devices() == ["vendor.com/device=ok"]
    errors = reg.errors()
    assert set(errors) == {str(a), str(b)}
    assert "conflicting CDI device 'vendor.com/device=dev0'" in errors[str(a)][0]

    # a definition in a higher-priority directory settles the conflict
    _write(dynamic / "c.json", _spec("vendor.com/device", {"dev0": {"env": ["C=1"]}}))
    assert reg.list_devices() == ["vendor.com/device=dev0", "vendor.com/device=ok"]


def test_invalid_specs_are_reported_by_path_and_skipped(dirs: tuple[Path, Path]) -> None:
    static, dynamic = dirs
    good = _write(static / "good.json", _spec("vendor.com/device", {"dev0": {"env": ["A=1"]}}))
    bad_json = _write(static / "bad.json", "{not json")
    bad_kind = _write(dynamic / "kind.yaml", _spec("nokind", {"d": {"env": ["A=1"]}}))
    bad_version = _write(
        dynamic / "version.json",
        dict(_spec("other.com/x", {"d": {"env": ["A=1"]}}), cdiVersion="9.9.9"),
    )
    bad_node = _write(
        dynamic / "node.json", _spec("other.com/y", {"d": {"deviceNodes": [{"path": "rel"}]}})
    )
    empty = _write(dynamic / "empty.yaml", "")
    latin1 = dynamic / "latin1.json"
    latin1.write_bytes(b'{"kind": "caf\xe9"}')
    odd_key = _write(dynamic / "oddkey.yaml", "? [a, b]\n: 1\n")

    reg = Registry([static, dynamic])
    assert reg.list_devices() == ["vendor.com/device=dev0"]
    errors = reg.refresh()
    assert errors == reg.errors()
    assert set(errors) == {
        str(bad_json),
        str(bad_kind),
        str(bad_version),
        str(bad_node),
        str(empty),
        str(latin1),
        str(odd_key),
    }
    for path, msgs in errors.items():
        assert len(msgs) == 1 and path in msgs[0]
    assert "invalid kind 'nokind'" in errors[str(bad_kind)][0]
    assert "invalid cdiVersion '9.9.9'" in errors[str(bad_version)][0]
    assert "not absolute" in errors[str(bad_node)][0]
    assert "no spec data" in errors[str(empty)][0]
    assert "not UTF-8" in errors[str(latin1)][0]
    assert "invalid key ['a', 'b']" in errors[str(odd_key)][0]
    assert str(good) not in errors


def test_unreadable_directory_is_reported(tmp_path: Path) -> None:
    not_a_dir = _write(tmp_path / "file", "x")
    other = tmp_path / "other"
    _write(other / "v.json", _spec("vendor.com/device", {"dev0": {"env": ["A=1"]}}))
    reg = Registry([not_a_dir, other])
    assert reg.list_devices() == ["vendor.com/device=dev0"]
    assert list(reg.errors()) == [str(not_a_dir)]


def test_auto_refresh_sees_added_changed_and_removed_specs(dirs: tuple[Path, Path]) -> None:
    static, dynamic = dirs
    reg = Registry([static, dynamic])
    assert reg.list_devices() == []
    p = _write(dynamic / "v.json", _spec("vendor.com/device", {"dev0": {"env": ["A=1"]}}))
    assert reg.list_devices() == ["vendor.com/device=dev0"]
    _write(p, _spec("vendor.com/device", {"dev0": {"env": ["A=1"]}, "dev1": {"env": ["A=2"]}}))
    assert reg.get_device("vendor.com/device=dev1") is not None
    p.unlink()
    assert reg.get_device("vendor.com/device=dev0") is None


def test_without_auto_refresh_only_refresh_reloads(dirs: tuple[Path, Path]) -> None:
    static, dynamic = dirs
    reg = Registry([static, dynamic], auto_refresh=False)
    assert reg.list_devices() == []
    _write(static / "v.json", _spec("vendor.com/device", {"dev0": {"env": ["A=1"]}}))
    assert reg.list_devices() == []
    reg.refresh()
    assert reg.list_devices() == ["vendor.com/device=dev0"]


def _registry(tmp_path: Path) -> Registry:
    _write(
        tmp_path / "a" / "vendor.json",
        _spec(
            "vendor.com/device",
            {
                "dev0": {"env": ["DEV=0", "SHARED=dev0"], "deviceNodes": [{"path": "/dev/null"}]},
                "dev1": {
                    "env": ["DEV=1"],
                    "deviceNodes": [{"path": "/dev/vendor1", "hostPath": "/dev/zero"}],
                    "mounts": [{"hostPath": "/opt/v", "containerPath": "/opt/vendor"}],
                },
            },
            containerEdits={
                "env": ["VENDOR=1", "SHARED=spec"],
                "hooks": [{"hookName": "createContainer", "path": "/bin/vendor-hook"}],
            },
        ),
    )
    _write(tmp_path / "a" / "gpu.yaml", YAML_SPEC)
    _write(
        tmp_path / "a" / "broken.json",
        _spec("broken.com/x", {"d": {"deviceNodes": [{"path": "/dev/nonexistent-cdi-test"}]}}),
    )
    return Registry([tmp_path / "a"])


def test_inject_applies_spec_edits_once_then_each_devices_edits(tmp_path: Path) -> None:
    reg = _registry(tmp_path)
    spec: dict[str, Any] = {"process": {"env": ["PATH=/bin"]}, "mounts": []}
    reg.inject(spec, ["vendor.com/device=dev0", "example.com/gpu=gpu1", "vendor.com/device=dev1"])
    # vendor spec edits, dev0, gpu spec edits, gpu1, dev1 (the vendor spec's edits only once)
    assert spec["process"]["env"] == [
        "PATH=/bin",
        "VENDOR=1",
        "SHARED=dev0",
        "DEV=1",
        "GPU_SPEC=1",
        "GPU=1",
    ]
    assert [d["path"] for d in spec["linux"]["devices"]] == ["/dev/null", "/dev/vendor1"]
    assert len(spec["linux"]["resources"]["devices"]) == 2
    assert spec["mounts"] == [{"destination": "/opt/vendor", "source": "/opt/v"}]
    assert spec["hooks"] == {"createContainer": [{"path": "/bin/vendor-hook"}]}


def test_resolve_returns_the_merged_edits(tmp_path: Path) -> None:
    reg = _registry(tmp_path)
    edits = reg.resolve(["example.com/gpu=gpu0", "example.com/gpu=gpu1"])
    assert edits.env == ("GPU_SPEC=1", "GPU=0", "GPU=1")


def test_unresolvable_devices_raise_not_found_listing_all_and_change_nothing(
    tmp_path: Path,
) -> None:
    reg = _registry(tmp_path)
    spec: dict[str, Any] = {"process": {"env": ["PATH=/bin"]}}
    before = copy.deepcopy(spec)
    with pytest.raises(UnresolvableDevices) as info:
        reg.inject(spec, ["vendor.com/device=dev0", "vendor.com/device=nope", "x.com/y=z"])
    assert isinstance(info.value, errdefs.NotFound)
    assert info.value.devices == ("vendor.com/device=nope", "x.com/y=z")
    assert "'vendor.com/device=nope', 'x.com/y=z'" in str(info.value)
    assert spec == before


def test_malformed_names_raise_invalid_argument_and_change_nothing(tmp_path: Path) -> None:
    reg = _registry(tmp_path)
    spec: dict[str, Any] = {}
    with pytest.raises(InvalidDeviceNames) as info:
        reg.inject(spec, ["vendor.com/device=dev0", "dev0", "x.com/y=z", "/dev/null"])
    assert isinstance(info.value, errdefs.InvalidArgument)
    assert info.value.devices == ("dev0", "x.com/y=z", "/dev/null")
    assert "unqualified CDI device 'dev0'" in str(info.value)
    assert spec == {}


def test_failing_device_node_changes_nothing(tmp_path: Path) -> None:
    reg = _registry(tmp_path)
    spec: dict[str, Any] = {"process": {"env": []}}
    with pytest.raises(errdefs.FailedPrecondition, match="nonexistent-cdi-test"):
        reg.inject(spec, ["vendor.com/device=dev0", "broken.com/x=d"])
    assert spec == {"process": {"env": []}}


def test_inject_nothing_is_a_no_op(tmp_path: Path) -> None:
    spec: dict[str, Any] = {}
    Registry([tmp_path]).inject(spec, [])
    assert spec == {}


def test_module_level_inject_uses_the_configured_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = _registry(tmp_path)
    spec: dict[str, Any] = {}
    cdi.inject(spec, ["example.com/gpu=gpu0"], registry=reg)
    assert spec["process"]["env"] == ["GPU_SPEC=1", "GPU=0"]

    monkeypatch.setattr(cdi.registry, "_default", None)
    assert cdi.default_registry().spec_dirs == cdi.DEFAULT_SPEC_DIRS
    configured = cdi.configure([tmp_path / "a"], auto_refresh=False)
    assert cdi.default_registry() is configured
    spec = {}
    cdi.inject(spec, ["example.com/gpu=gpu1"])
    assert spec["process"]["env"] == ["GPU_SPEC=1", "GPU=1"]


def test_paths_are_normalised(tmp_path: Path) -> None:
    _write(tmp_path / "v.json", _spec("vendor.com/device", {"dev0": {"env": ["A=1"]}}))
    reg = Registry([str(tmp_path) + "/./"])
    spec = reg.get_device_spec("vendor.com/device=dev0")
    assert spec is not None and spec.path == os.path.join(str(tmp_path), "v.json")
