"""Merging adjustments from several plugins, and applying them to OCI specs."""

from __future__ import annotations

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.nri import Container, PodSandbox, apply_adjustment
from pycontainerd.core.nri.adjustment import CreateResult, UpdateResult
from pycontainerd.core.nri.api import pb


def _request(spec: dict | None = None) -> pb.CreateContainerRequest:
    spec = spec or {"process": {"env": ["PATH=/bin", "OLD=1"], "args": ["sh"]}}
    ctr = Container.from_oci_spec(spec, id="c1", pod_sandbox_id="p1", name="c")
    return pb.CreateContainerRequest(pod=PodSandbox(id="p1").to_proto(), container=ctr.to_proto())


def _adj(**kw) -> pb.CreateContainerResponse:
    adj = pb.ContainerAdjustment()
    for k, v in kw.get("env", {}).items():
        adj.env.add(key=k, value=v)
    adj.annotations.update(kw.get("annotations", {}))
    for m in kw.get("mounts", []):
        adj.mounts.add(**m)
    if "memory" in kw:
        adj.linux.resources.memory.limit.value = kw["memory"]
    return pb.CreateContainerResponse(adjust=adj)


def test_adjustments_from_plugins_are_merged_in_order():
    r = CreateResult(_request())
    r.apply(_adj(env={"A": "1"}, annotations={"x": "1"}), "10-a")
    r.apply(
        _adj(
            env={"B": "2"},
            memory=1 << 20,
            mounts=[{"destination": "/data", "source": "/src", "type": "bind"}],
        ),
        "20-b",
    )
    adj = r.response().adjust
    assert [(e.key, e.value) for e in adj.env] == [("A", "1"), ("B", "2")]
    assert dict(adj.annotations) == {"x": "1"}
    assert adj.linux.resources.memory.limit.value == 1 << 20
    assert [m.destination for m in adj.mounts] == ["/data"]
    # later plugins see the container as earlier ones left it
    assert list(r.request.container.env) == ["PATH=/bin", "OLD=1", "A=1", "B=2"]


@pytest.mark.parametrize(
    "first,second,field",
    [
        (dict(memory=1), dict(memory=2), "MemLimit"),
        (dict(env={"A": "1"}), dict(env={"A": "2"}), "Env A"),
        (dict(annotations={"k": "1"}), dict(annotations={"k": "2"}), "Annotations k"),
        (dict(mounts=[{"destination": "/m"}]), dict(mounts=[{"destination": "/m"}]), "Mounts /m"),
    ],
)
def test_two_plugins_setting_one_field_conflict_naming_both(first, second, field):
    r = CreateResult(_request())
    r.apply(_adj(**first), "10-first")
    with pytest.raises(errdefs.Conflict) as e:
        r.apply(_adj(**second), "20-second")
    assert str(e.value) == f'plugins "20-second" and "10-first" both tried to set {field}'


def test_a_plugin_may_remove_and_another_set_again():
    r = CreateResult(_request())
    r.apply(_adj(env={"A": "1"}), "10-a")
    r.apply(
        pb.CreateContainerResponse(
            adjust=pb.ContainerAdjustment(env=[pb.KeyValue(key="-A"), pb.KeyValue(key="-OLD")])
        ),
        "20-b",
    )
    adj = r.response().adjust
    assert sorted(e.key for e in adj.env) == ["-A", "-OLD"]
    # the remover itself may set it again
    r.apply(_adj(env={"A": "3"}), "20-b")
    assert [(e.key, e.value) for e in r.response().adjust.env] == [("-OLD", ""), ("A", "3")]


def test_updates_for_the_container_being_created_are_refused():
    r = CreateResult(_request())
    rpl = pb.CreateContainerResponse(update=[pb.ContainerUpdate(container_id="c1")])
    with pytest.raises(
        errdefs.Conflict, match='plugin "10-a" asked update of "c1" during creation'
    ):
        r.apply(rpl, "10-a")


def test_update_results_merge_with_the_requested_resources():
    req = pb.UpdateContainerRequest(container=pb.Container(id="c1"))
    req.linux_resources.cpu.shares.value = 512
    u = UpdateResult(req)
    up = pb.ContainerUpdate(container_id="c1")
    up.linux.resources.memory.limit.value = 100
    other = pb.ContainerUpdate(container_id="c2")
    other.linux.resources.cpu.cpus = "0-1"
    u.update([up, other], "10-a")
    got = u.requested_resources()
    assert got.cpu.shares.value == 512 and got.memory.limit.value == 100
    assert [x.container_id for x in u.updates()] == ["c2", "c1"]
    with pytest.raises(errdefs.Conflict, match="CPUSetCPUs"):
        u.update([other], "20-b")


def test_apply_adjustment_to_an_oci_spec():
    spec = {
        "process": {"args": ["sh"], "env": ["PATH=/bin", "DROP=1", "KEEP=1"]},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/gone", "type": "bind", "source": "/x"},
        ],
        "annotations": {"old": "1"},
        "linux": {"resources": {"memory": {"limit": 10}}},
    }
    adj = pb.ContainerAdjustment()
    adj.annotations.update({"new": "v", "-old": ""})
    adj.env.extend(
        [
            pb.KeyValue(key="KEEP", value="2"),
            pb.KeyValue(key="-DROP"),
            pb.KeyValue(key="ADD", value="3"),
        ]
    )
    adj.mounts.add(destination="/a/b", source="/host", type="bind", options=["rbind", "ro"])
    adj.mounts.add(destination="-/gone")
    adj.hooks.prestart.add(path="/bin/hook", args=["hook", "x"]).timeout.value = 5
    adj.linux.devices.add(path="/dev/fuse", type="c", major=10, minor=229).file_mode.value = 0o666
    adj.linux.resources.memory.limit.value = 1 << 26
    adj.linux.resources.cpu.shares.value = 256
    adj.linux.resources.pids.limit = 100
    adj.linux.cgroups_path = "/kubepods/x"
    adj.linux.oom_score_adj.value = -500
    adj.rlimits.add(type="RLIMIT_NOFILE", hard=1024, soft=512)
    apply_adjustment(spec, adj)
    assert spec["annotations"] == {"new": "v"}
    assert spec["process"]["env"] == ["PATH=/bin", "KEEP=2", "ADD=3"]
    assert [m["destination"] for m in spec["mounts"]] == ["/proc", "/a/b"]
    assert spec["mounts"][1] == {
        "destination": "/a/b",
        "type": "bind",
        "source": "/host",
        "options": ["rbind", "ro"],
    }
    assert spec["hooks"]["prestart"] == [{"path": "/bin/hook", "args": ["hook", "x"], "timeout": 5}]
    res = spec["linux"]["resources"]
    assert res["memory"] == {"limit": 1 << 26, "swap": 1 << 26}
    assert res["cpu"] == {"shares": 256} and res["pids"] == {"limit": 100}
    assert res["devices"] == [
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"}
    ]
    assert spec["linux"]["devices"] == [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666}
    ]
    assert spec["linux"]["cgroupsPath"] == "/kubepods/x"
    assert spec["process"]["oomScoreAdj"] == -500
    assert spec["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512}]


def test_cdi_devices_need_an_injector():
    adj = pb.ContainerAdjustment(CDI_devices=[pb.CDIDevice(name="vendor.com/gpu=0")])
    with pytest.raises(errdefs.FailedPrecondition, match="CDI"):
        apply_adjustment({}, adj)
    seen = []
    apply_adjustment({}, adj, cdi_injector=lambda spec, names: seen.extend(names))
    assert seen == ["vendor.com/gpu=0"]


def test_container_from_oci_spec_round_trips_to_proto():
    spec = {
        "process": {
            "args": ["a"],
            "env": ["X=1"],
            "oomScoreAdj": 5,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 2, "soft": 1}],
        },
        "mounts": [{"destination": "/d", "type": "bind", "source": "/s", "options": ["ro"]}],
        "annotations": {"a": "b"},
        "linux": {
            "cgroupsPath": "/cg",
            "resources": {"memory": {"limit": 7}},
            "namespaces": [{"type": "pid"}],
        },
    }
    c = Container.from_oci_spec(spec, id="c", pod_sandbox_id="p", state="running").to_proto()
    assert c.state == pb.CONTAINER_RUNNING and list(c.args) == ["a"]
    assert c.linux.resources.memory.limit.value == 7 and c.linux.oom_score_adj.value == 5
    assert c.mounts[0].destination == "/d" and c.rlimits[0].hard == 2
    assert c.linux.namespaces[0].type == "pid" and dict(c.annotations) == {"a": "b"}
