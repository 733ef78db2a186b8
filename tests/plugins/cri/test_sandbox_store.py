"""The CRI sandbox store (names, short ids), metadata round trips, CRI conversion and list
filters, CNI arguments of a pod, pass-through annotations, and runtime options."""

from __future__ import annotations

import datetime
import json

import pytest

from pycontainerd.api.containerd.types.runc.options import oci_pb2
from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as pb
from pycontainerd.core import errdefs
from pycontainerd.plugins.cri.config import Runtime
from pycontainerd.plugins.cri.podsandbox.controller import runtime_options
from pycontainerd.plugins.cri.sandbox import annotations, convert
from pycontainerd.plugins.cri.sandbox.store import (
    Metadata,
    NameIndex,
    Sandbox,
    SandboxStore,
    State,
    make_sandbox_name,
    new_id,
)


def _config(name: str = "web", **labels: str) -> pb.PodSandboxConfig:
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid="u1", namespace="ns", attempt=2),
        labels=labels or {"app": name},
        annotations={"a": "b"},
    )


def _sandbox(id_: str, name: str = "web", state: State = State.READY, **labels: str) -> Sandbox:
    sb = Sandbox(metadata=Metadata(id=id_, name=name, config=_config(name, **labels)))
    sb.status.state = state
    return sb


def test_ids_are_64_hex_and_names_are_containerds() -> None:
    id_ = new_id()
    assert len(id_) == 64 and int(id_, 16) >= 0 and new_id() != id_
    assert make_sandbox_name(_config().metadata) == "web_ns_u1_2"


def test_name_index_reserves_once_per_id() -> None:
    names = NameIndex()
    names.reserve("n", "a")
    names.reserve("n", "a")
    with pytest.raises(errdefs.AlreadyExists, match="reserved for 'a'"):
        names.reserve("n", "b")
    names.release_by_id("a")
    names.reserve("n", "b")
    names.release_by_name("n")
    assert names.get("n") is None


def test_store_lookup_by_unique_prefix() -> None:
    store = SandboxStore()
    store.add(_sandbox("abc123"))
    store.add(_sandbox("abd456"))
    assert store.get("abc").id == "abc123"
    assert store.get("abd456").id == "abd456"
    with pytest.raises(errdefs.InvalidArgument, match="ambiguous"):
        store.get("ab")
    with pytest.raises(errdefs.NotFound):
        store.get("zz")
    with pytest.raises(errdefs.AlreadyExists):
        store.add(_sandbox("abc123"))
    store.delete("abc123")
    assert [s.id for s in store] == ["abd456"]


def test_metadata_round_trip() -> None:
    md = Metadata(
        id="x",
        name="web_ns_u1_2",
        config=_config(),
        runtime_handler="runc",
        netns_path="/var/run/netns/cni-1",
        ip="10.1.2.3",
        additional_ips=["fd00::3"],
        cni_result=[{"cniVersion": "1.0.0", "ips": []}],
    )
    back = Metadata.from_typed(md.to_typed())
    assert back.to_json() == md.to_json()
    assert back.config == md.config
    assert not back.host_network
    with pytest.raises(errdefs.InvalidArgument, match="version"):
        Metadata.from_json({"Version": "v9"})


def test_status_conversion_and_states() -> None:
    sb = _sandbox("x" * 64)
    sb.metadata.runtime_handler = "runc"
    sb.status.created_at = datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC)
    st = convert.to_cri_status(sb, "10.0.0.2", ["fd00::2"])
    assert st.state == pb.SANDBOX_READY
    assert st.created_at == 1704153600 * 10**9
    assert st.network.ip == "10.0.0.2" and [i.ip for i in st.network.additional_ips] == ["fd00::2"]
    assert st.labels == {"app": "web"} and st.annotations == {"a": "b"}
    assert st.runtime_handler == "runc"
    for state in (State.NOTREADY, State.UNKNOWN):
        sb.status.state = state
        assert convert.to_cri_sandbox(sb).state == pb.SANDBOX_NOTREADY


def test_list_filters() -> None:
    ready = _sandbox("aa11", app="web", tier="front")
    down = _sandbox("bb22", state=State.NOTREADY, app="db")
    for flt, want in [
        (None, {"aa11", "bb22"}),
        (pb.PodSandboxFilter(id="aa"), {"aa11"}),
        (pb.PodSandboxFilter(state=pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY)), {"bb22"}),
        (pb.PodSandboxFilter(label_selector={"app": "web"}), {"aa11"}),
        (pb.PodSandboxFilter(label_selector={"app": "web", "tier": "back"}), set()),
    ]:
        assert {s.id for s in (ready, down) if convert.matches(s, flt)} == want


def test_cni_arguments_of_a_pod() -> None:
    config = _config()
    config.port_mappings.extend(
        [
            pb.PortMapping(protocol=pb.UDP, container_port=53, host_port=5353, host_ip="1.2.3.4"),
            pb.PortMapping(protocol=pb.TCP, container_port=80, host_port=0),
        ]
    )
    config.dns_config.servers.append("10.0.0.10")
    config.linux.cgroup_parent = "/kubepods"
    args = convert.cni_args("sid", config)
    assert args["labels"]["K8S_POD_NAME"] == "web"
    assert args["labels"]["K8S_POD_INFRA_CONTAINER_ID"] == "sid"
    assert [
        (p.host_port, p.container_port, p.protocol, p.host_ip) for p in args["port_mappings"]
    ] == [(5353, 53, "udp", "1.2.3.4")]
    assert args["dns"].servers == ("10.0.0.10",)
    assert args["capabilities"] == {
        annotations.POD_ANNOTATIONS: {"a": "b"},
        "cgroupPath": "/kubepods",
    }


def test_pod_annotation_passthrough_matches_like_go_path_match() -> None:
    pod = {"example.com/a": "1", "example.com/b/c": "2", "other": "3", "x.io/k": "4"}
    assert annotations.passthrough(pod, ["example.com/*"]) == {"example.com/a": "1"}
    assert annotations.passthrough(pod, ["*"]) == {"other": "3"}
    assert annotations.passthrough(pod, ["x.io/?", "oth[a-f]r"]) == {"x.io/k": "4", "other": "3"}
    assert annotations.passthrough(pod, []) == {}


def test_runtime_options_from_handler_tables() -> None:
    typed = runtime_options(Runtime(options={"SystemdCgroup": True, "BinaryName": "crun"}))
    assert typed is not None and typed[0] == "containerd.runc.v1.Options"
    opts = oci_pb2.Options()
    opts.ParseFromString(typed[1])
    assert opts.systemd_cgroup and opts.binary_name == "crun"
    with pytest.raises(errdefs.InvalidArgument, match="NoSuchKey"):
        runtime_options(Runtime(options={"NoSuchKey": 1}))
    assert runtime_options(Runtime(runtime_type="io.containerd.kata.v2")) is None
    other = runtime_options(
        Runtime(runtime_type="io.containerd.kata.v2", options={"ConfigPath": "/etc/kata.toml"})
    )
    assert other is not None and other[0] == "runtimeoptions.v1.Options"


def test_updated_resources_extension_round_trips_as_containerd_names_it():
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2
    from pycontainerd.plugins.cri.sandbox.store import (
        updated_resources_from_typed,
        updated_resources_to_typed,
    )

    res = api_pb2.LinuxContainerResources(memory_limit_in_bytes=1 << 30, cpu_shares=512)
    type_url, value = updated_resources_to_typed(None, res)
    assert type_url == "io.containerd.cri.v1.UpdatedResources"
    assert json.loads(value)["Overhead"] is None
    assert updated_resources_from_typed(value) == (None, res)
    # containerd writes Go JSON (numbers for int64): read as well
    go = b'{"Overhead":{"cpu_shares":2},"Resources":{"memory_limit_in_bytes":1073741824}}'
    overhead, resources = updated_resources_from_typed(go)
    assert overhead.cpu_shares == 2 and resources.memory_limit_in_bytes == 1 << 30
