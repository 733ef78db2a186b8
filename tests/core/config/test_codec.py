from __future__ import annotations

import enum
from typing import Any, Literal

import attrs
import pytest

from pycontainerd.core.config import ConfigError, decode_plugin_config, encode_plugin_config

URI = "io.containerd.test.v1.sample"


class Mode(enum.Enum):
    SHARED = "shared"
    ISOLATED = "isolated"


@attrs.frozen(kw_only=True)
class Runtime:
    runtime_type: str = "io.containerd.runc.v2"
    options: dict[str, Any] = attrs.field(factory=dict)
    privileged_without_host_devices: bool = False


@attrs.frozen(kw_only=True)
class Cni:
    bin_dirs: tuple[str, ...] = ("/opt/cni/bin",)
    max_conf_num: int = 1


@attrs.frozen(kw_only=True)
class Sample:
    pause_threshold: float = 0.02
    mutation_threshold: int = 100
    schedule_delay: str = "0ms"
    no_sync: bool = False
    policy: Mode = Mode.SHARED
    io_type: Literal["fifo", "streaming"] = "fifo"
    systemd_cgroup: bool = attrs.field(default=False, metadata={"toml": "SystemdCgroup"})
    cni: Cni = attrs.field(factory=Cni)
    runtimes: dict[str, Runtime] = attrs.field(factory=dict)
    env: list[str] = attrs.field(factory=list)
    address: str | None = None


def test_missing_section_gives_defaults():
    obj, warnings = decode_plugin_config(Sample, None, URI)
    assert obj == Sample()
    assert warnings == []


def test_values_nested_tables_and_maps_of_classes_are_decoded():
    raw = {
        "pause_threshold": 1,
        "policy": "isolated",
        "io_type": "streaming",
        "SystemdCgroup": True,
        "cni": {"bin_dirs": ["/a", "/b"]},
        "runtimes": {
            "runc": {"options": {"SystemdCgroup": True, "BinaryName": "crun"}},
            "kata": {"runtime_type": "io.containerd.kata.v2"},
        },
        "env": ["A=1"],
        "address": "/run/x.sock",
    }
    obj, warnings = decode_plugin_config(Sample, raw, URI)
    assert warnings == []
    assert obj.pause_threshold == 1.0 and isinstance(obj.pause_threshold, float)
    assert obj.policy is Mode.ISOLATED
    assert obj.io_type == "streaming"
    assert obj.systemd_cgroup is True
    assert obj.cni == Cni(bin_dirs=("/a", "/b"), max_conf_num=1)
    assert obj.runtimes["runc"].options == {"SystemdCgroup": True, "BinaryName": "crun"}
    assert obj.runtimes["kata"] == Runtime(runtime_type="io.containerd.kata.v2")
    assert obj.env == ["A=1"]
    assert obj.address == "/run/x.sock"


def test_unknown_keys_are_warned_with_their_full_dotted_path():
    raw = {
        "pause_treshold": 0.5,
        "cni": {"bin_dir": "/x"},
        "runtimes": {"runc.v2": {"runtime_typ": "x"}},
    }
    obj, warnings = decode_plugin_config(Sample, raw, URI)
    assert obj == Sample(runtimes={"runc.v2": Runtime()})
    assert warnings == [
        f'unknown key plugins."{URI}".cni.bin_dir',
        f'unknown key plugins."{URI}".runtimes."runc.v2".runtime_typ',
        f'unknown key plugins."{URI}".pause_treshold',
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"mutation_threshold": "100"}, "mutation_threshold: expected int, got '100' (str)"),
        ({"mutation_threshold": True}, "mutation_threshold: expected int, got True (bool)"),
        ({"no_sync": 1}, "no_sync: expected bool, got 1 (int)"),
        ({"cni": {"max_conf_num": 1.5}}, "cni.max_conf_num: expected int, got 1.5 (float)"),
        ({"cni": "x"}, "cni: expected table, got 'x' (str)"),
        ({"env": ["a", 2]}, "env[1]: expected str, got 2 (int)"),
        ({"runtimes": {"runc": {"options": 3}}}, "runtimes.runc.options: expected table"),
        ({"SystemdCgroup": "true"}, "SystemdCgroup: expected bool, got 'true' (str)"),
        ({"policy": "other"}, "policy: expected one of 'shared', 'isolated', got 'other'"),
        ({"io_type": "pipe"}, "io_type: expected one of 'fifo', 'streaming', got 'pipe'"),
        ({"address": 5}, "address: expected str, got 5 (int)"),
    ],
)
def test_wrong_type_is_refused_naming_the_key(raw, message):
    with pytest.raises(ConfigError) as info:
        decode_plugin_config(Sample, raw, URI)
    assert f'invalid config at plugins."{URI}".{message}' in str(info.value)


def test_section_that_is_not_a_table_is_refused():
    with pytest.raises(ConfigError, match=f'plugins."{URI}": expected table'):
        decode_plugin_config(Sample, "x", URI)  # type: ignore[arg-type]


def test_encode_uses_toml_keys_and_omits_none():
    table = encode_plugin_config(Sample(policy=Mode.ISOLATED, systemd_cgroup=True))
    assert table["SystemdCgroup"] is True
    assert "systemd_cgroup" not in table
    assert "address" not in table
    assert table["policy"] == "isolated"
    assert table["cni"] == {"bin_dirs": ["/opt/cni/bin"], "max_conf_num": 1}


def test_decode_of_encode_round_trips():
    obj = Sample(
        pause_threshold=0.5,
        policy=Mode.ISOLATED,
        systemd_cgroup=True,
        runtimes={"runc": Runtime(options={"SystemdCgroup": True, "Root": "/r"})},
        env=["X=1"],
        address="/a",
    )
    again, warnings = decode_plugin_config(Sample, encode_plugin_config(obj), URI)
    assert again == obj
    assert warnings == []


@attrs.define
class _Runtime:
    runtime_type: str = "io.containerd.runc.v2"


@attrs.define
class _Runtimes:
    runtimes: dict[str, _Runtime] = attrs.Factory(lambda: {"runc": _Runtime()})


def test_a_table_adds_to_a_default_map_instead_of_replacing_it():
    # containerd decodes into its defaults: configuring a `kata` runtime keeps `runc`
    obj, warnings = decode_plugin_config(
        _Runtimes, {"runtimes": {"kata": {"runtime_type": "io.containerd.kata.v2"}}}, "io.t.v1.x"
    )
    assert warnings == []
    assert obj.runtimes == {"runc": _Runtime(), "kata": _Runtime("io.containerd.kata.v2")}
    obj, _ = decode_plugin_config(_Runtimes, {"runtimes": {"runc": {"runtime_type": "x"}}}, "t")
    assert obj.runtimes == {"runc": _Runtime("x")}
