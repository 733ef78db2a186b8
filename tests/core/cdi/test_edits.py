"""Applying container edits to OCI spec dicts: every edit kind and CDI's replacement rules."""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.cdi.edits import DeviceNodeError, apply_edits, fill_missing_info
from pycontainerd.core.cdi.specs import (
    ContainerEdits,
    DeviceNode,
    Hook,
    IntelRdt,
    Mount,
    NetDevice,
)


def _rdev(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return os.major(st.st_rdev), os.minor(st.st_rdev), stat.S_IMODE(st.st_mode)


NULL = _rdev("/dev/null")
ZERO = _rdev("/dev/zero")


def _oci() -> dict[str, Any]:
    return {
        "ociVersion": "1.2.0",
        "process": {"user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin", "A=old", "B=keep"]},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm"},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": "mount"}, {"type": "pid"}],
        },
    }


def test_env_replaces_same_key_and_appends_new_ones() -> None:
    spec = _oci()
    apply_edits(spec, ContainerEdits(env=("A=new", "C=1", "C=2", "D")))
    assert spec["process"]["env"] == ["PATH=/bin", "A=new", "B=keep", "C=2", "D"]


def test_env_creates_process_when_missing() -> None:
    spec: dict[str, Any] = {}
    apply_edits(spec, ContainerEdits(env=("A=1",)))
    assert spec == {"process": {"env": ["A=1"]}}


def test_device_node_is_filled_from_the_host_and_allowed_rwm() -> None:
    spec = _oci()
    apply_edits(spec, ContainerEdits(device_nodes=(DeviceNode(path="/dev/null"),)))
    major, minor, mode = NULL
    assert spec["linux"]["devices"] == [
        {"path": "/dev/null", "type": "c", "major": major, "minor": minor, "fileMode": mode}
    ]
    assert spec["linux"]["resources"]["devices"][-1] == {
        "allow": True,
        "type": "c",
        "major": major,
        "minor": minor,
        "access": "rwm",
    }
    # the deny-all rule stays first
    assert spec["linux"]["resources"]["devices"][0] == {"allow": False, "access": "rwm"}


def test_device_node_host_path_is_read_and_path_is_used_in_the_container() -> None:
    spec = _oci()
    node = DeviceNode(path="/dev/vendor0", host_path="/dev/zero", permissions="rw")
    apply_edits(spec, ContainerEdits(device_nodes=(node,)))
    major, minor, mode = ZERO
    assert spec["linux"]["devices"] == [
        {"path": "/dev/vendor0", "type": "c", "major": major, "minor": minor, "fileMode": mode}
    ]
    assert spec["linux"]["resources"]["devices"][-1]["access"] == "rw"


def test_device_node_permissions_none_gives_a_rule_without_access() -> None:
    spec = _oci()
    apply_edits(
        spec, ContainerEdits(device_nodes=(DeviceNode(path="/dev/null", permissions="none"),))
    )
    rule = spec["linux"]["resources"]["devices"][-1]
    assert rule["allow"] is True and "access" not in rule


def test_device_node_given_values_win_over_the_host() -> None:
    spec = _oci()
    node = DeviceNode(path="/dev/null", type="c", major=200, minor=7, file_mode=0o600, uid=5, gid=6)
    apply_edits(spec, ContainerEdits(device_nodes=(node,)))
    assert spec["linux"]["devices"] == [
        {
            "path": "/dev/null",
            "type": "c",
            "major": 200,
            "minor": 7,
            "fileMode": 0o600,
            "uid": 5,
            "gid": 6,
        }
    ]


def test_fully_described_device_node_need_not_exist_on_the_host() -> None:
    spec = _oci()
    node = DeviceNode(path="/dev/nonexistent-cdi-test", type="b", major=8, minor=1)
    apply_edits(spec, ContainerEdits(device_nodes=(node,)))
    assert spec["linux"]["devices"] == [
        {"path": "/dev/nonexistent-cdi-test", "type": "b", "major": 8, "minor": 1}
    ]
    assert spec["linux"]["resources"]["devices"][-1] == {
        "allow": True,
        "type": "b",
        "major": 8,
        "minor": 1,
        "access": "rwm",
    }


def test_device_node_with_only_a_type_still_reads_major_minor() -> None:
    filled = fill_missing_info(DeviceNode(path="/dev/null", type="c"))
    assert (filled.major, filled.minor, filled.file_mode) == NULL
    assert filled.host_path == "/dev/null"


def test_fifo_device_node_gets_no_cgroup_rule(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    spec = _oci()
    apply_edits(
        spec, ContainerEdits(device_nodes=(DeviceNode(path="/dev/fifo", host_path=str(fifo)),))
    )
    (dev,) = spec["linux"]["devices"]
    assert (dev["type"], dev["major"], dev["minor"]) == ("p", 0, 0)
    assert spec["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]


def test_device_node_uid_gid_default_to_a_non_root_process_user() -> None:
    spec = _oci()
    spec["process"]["user"] = {"uid": 1000, "gid": 2000}
    apply_edits(spec, ContainerEdits(device_nodes=(DeviceNode(path="/dev/null"),)))
    (dev,) = spec["linux"]["devices"]
    assert (dev["uid"], dev["gid"]) == (1000, 2000)


def test_device_node_replaces_the_device_with_the_same_path() -> None:
    spec = _oci()
    spec["linux"]["devices"] = [
        {"path": "/dev/a", "type": "c", "major": 9, "minor": 9},
        {"path": "/dev/null", "type": "c", "major": 99, "minor": 99},
        {"path": "/dev/b", "type": "c", "major": 9, "minor": 8},
    ]
    apply_edits(spec, ContainerEdits(device_nodes=(DeviceNode(path="/dev/null"),)))
    paths = [d["path"] for d in spec["linux"]["devices"]]
    assert paths == ["/dev/a", "/dev/b", "/dev/null"]
    assert spec["linux"]["devices"][-1]["major"] == NULL[0]


def test_device_node_missing_on_the_host_fails_and_changes_nothing() -> None:
    spec = _oci()
    before = copy.deepcopy(spec)
    edits = ContainerEdits(
        env=("X=1",),
        device_nodes=(DeviceNode(path="/dev/null"), DeviceNode(path="/dev/nonexistent-cdi-test")),
    )
    with pytest.raises(DeviceNodeError, match="/dev/nonexistent-cdi-test") as info:
        apply_edits(spec, edits)
    assert isinstance(info.value, errdefs.FailedPrecondition)
    assert spec == before


def test_device_node_type_mismatch_with_the_host_fails() -> None:
    with pytest.raises(DeviceNodeError, match="does not match"):
        apply_edits(_oci(), ContainerEdits(device_nodes=(DeviceNode(path="/dev/null", type="b"),)))


def test_a_regular_file_is_not_a_device_node(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(DeviceNodeError, match="not a device node"):
        fill_missing_info(DeviceNode(path="/dev/x", host_path=str(f)))


def test_mounts_replace_same_destination_and_are_sorted_by_depth() -> None:
    spec = _oci()
    spec["mounts"].append({"destination": "/usr/lib/vendor", "type": "bind", "source": "/old"})
    edits = ContainerEdits(
        mounts=(
            Mount(host_path="/host/lib", container_path="/usr/lib/vendor", options=("ro", "bind")),
            Mount(host_path="/host/bin", container_path="/vendor", type="bind", options=("rbind",)),
            Mount(host_path="/host/deep", container_path="/a/b/c/d"),
        )
    )
    apply_edits(spec, edits)
    assert spec["mounts"] == [
        # depth 1, in their order: originals first, then /vendor
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/vendor", "type": "bind", "source": "/host/bin", "options": ["rbind"]},
        # depth 2
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm"},
        # depth 3 (the old /usr/lib/vendor mount is gone)
        {"destination": "/usr/lib/vendor", "source": "/host/lib", "options": ["ro", "bind"]},
        # depth 4
        {"destination": "/a/b/c/d", "source": "/host/deep"},
    ]


def test_mount_sorting_cleans_destinations() -> None:
    spec: dict[str, Any] = {"mounts": [{"destination": "/a/b/../../c/"}]}
    apply_edits(spec, ContainerEdits(mounts=(Mount(host_path="/h", container_path="//x"),)))
    assert [m["destination"] for m in spec["mounts"]] == ["/a/b/../../c/", "//x"]
    spec = {"mounts": [{"destination": "/a/b"}]}
    apply_edits(spec, ContainerEdits(mounts=(Mount(host_path="/h", container_path="//x"),)))
    assert [m["destination"] for m in spec["mounts"]] == ["//x", "/a/b"]


def test_bind_mounts_get_idmap_with_a_user_namespace() -> None:
    spec = _oci()
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["mounts"] = []
    edits = ContainerEdits(
        mounts=(
            Mount(host_path="/h1", container_path="/m1", type="bind"),
            Mount(host_path="/h2", container_path="/m2", options=("rbind", "ro")),
            Mount(host_path="/h3", container_path="/m3", options=("bind", "idmap")),
            Mount(host_path="tmpfs", container_path="/m4", type="tmpfs"),
        )
    )
    apply_edits(spec, edits)
    assert [m.get("options") for m in spec["mounts"]] == [
        ["idmap"],
        ["rbind", "ro", "ridmap"],
        ["bind", "idmap"],
        None,
    ]


def test_hooks_are_appended_per_hook_name() -> None:
    spec = _oci()
    spec["hooks"] = {"createContainer": [{"path": "/existing"}]}
    edits = ContainerEdits(
        hooks=(
            Hook(hook_name="createContainer", path="/a", args=("a", "1"), env=("E=1",), timeout=3),
            Hook(hook_name="prestart", path="/b"),
            Hook(hook_name="createContainer", path="/c"),
            Hook(hook_name="poststop", path="/d"),
        )
    )
    apply_edits(spec, edits)
    assert spec["hooks"] == {
        "createContainer": [
            {"path": "/existing"},
            {"path": "/a", "args": ["a", "1"], "env": ["E=1"], "timeout": 3},
            {"path": "/c"},
        ],
        "prestart": [{"path": "/b"}],
        "poststop": [{"path": "/d"}],
    }


def test_intel_rdt_replaces_the_existing_one() -> None:
    spec = _oci()
    spec["linux"]["intelRdt"] = {"closID": "old", "l3CacheSchema": "L3:0=1"}
    rdt = IntelRdt(
        clos_id="new", mem_bw_schema="MB:0=20", schemata=("L2:0=3",), enable_monitoring=True
    )
    apply_edits(spec, ContainerEdits(intel_rdt=rdt))
    assert spec["linux"]["intelRdt"] == {
        "closID": "new",
        "memBwSchema": "MB:0=20",
        "schemata": ["L2:0=3"],
        "enableMonitoring": True,
    }


def test_additional_gids_skip_zero_and_duplicates() -> None:
    spec = _oci()
    spec["process"]["user"]["additionalGids"] = [10]
    apply_edits(spec, ContainerEdits(additional_gids=(0, 10, 44, 45, 44)))
    assert spec["process"]["user"]["additionalGids"] == [10, 44, 45]


def test_additional_gids_create_the_user() -> None:
    spec: dict[str, Any] = {}
    apply_edits(spec, ContainerEdits(additional_gids=(0,)))
    assert spec == {}
    apply_edits(spec, ContainerEdits(additional_gids=(7,)))
    assert spec == {"process": {"user": {"uid": 0, "gid": 0, "additionalGids": [7]}}}


def test_net_devices_are_set_by_host_interface_name() -> None:
    spec = _oci()
    spec["linux"]["netDevices"] = {"eth1": {"name": "old"}, "eth2": {"name": "keep"}}
    apply_edits(
        spec,
        ContainerEdits(
            net_devices=(
                NetDevice(host_interface_name="eth1", name="net1"),
                NetDevice(host_interface_name="eth3", name="net3"),
            )
        ),
    )
    assert spec["linux"]["netDevices"] == {
        "eth1": {"name": "net1"},
        "eth2": {"name": "keep"},
        "eth3": {"name": "net3"},
    }


def test_empty_edits_change_nothing() -> None:
    spec = _oci()
    before = copy.deepcopy(spec)
    apply_edits(spec, ContainerEdits())
    assert spec == before
