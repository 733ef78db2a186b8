"""Pod sandboxes through the CRI RuntimeService of the real daemon (generated ``runtime.v1``
stubs on its socket), with runc, the CNI bridge/host-local/portmap/loopback plugins and the
pause image pulled from a local docker-registry: run (READY, IP on the test bridge inside the
pod's netns, sandbox files, OOM score clamped by ``restrict_oom_score_adj``), status and
list filters, events, stop (CNI DEL frees the IP, netns gone; idempotent), remove
(container, snapshot, lease, files gone; idempotent), bad handlers and duplicate names,
host networking, and a daemon restart under a running pod."""

from __future__ import annotations

import ipaddress
import json
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cni as cni_support
import cri as cri_support
import grpc
import pytest
from cri import CRIClient, pb
from daemon import Daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]

NS_NODE = pb.NamespaceMode.NODE


@pytest.fixture(scope="module")
def pause_ref(registry: Any, pause: Any) -> str:
    registry.push(pause, repository="pause", tag="3.10")
    return registry.ref("pause", "3.10")


def _config(base: Path, network: Any, registry: Any, pause_ref: str) -> str:
    return cri_support.daemon_config(
        base,
        network,
        registry,
        pause_ref,
        runtime="netns_mounts_under_state_dir = false",
        runtimes={
            "runc": 'runtime_type = "io.containerd.runc.v2"\npod_annotations = ["example.com/*"]',
            "pyrunc": 'runtime_type = "io.containerd.pyrunc.v2"',
            "bogus": 'runtime_type = "io.containerd.nosuchshim.v1"',
        },
    )


class Pods(cri_support.CRIDaemon):
    """A daemon with CRI, and the pods a test made (removed at the end)."""

    def __init__(self, base: Path, config: str) -> None:
        env = cri_support.daemon_env()
        self.daemon = Daemon(base / "d", config=config, env=env)
        self.cri: CRIClient | None = None
        self.ids: list[str] = []

    def run(self, config: Any, handler: str = "") -> str:
        resp = self.rs.RunPodSandbox(
            pb.RunPodSandboxRequest(config=config, runtime_handler=handler), timeout=120
        )
        self.ids.append(resp.pod_sandbox_id)
        return str(resp.pod_sandbox_id)

    def status(self, id_: str, verbose: bool = False) -> Any:
        return self.rs.PodSandboxStatus(
            pb.PodSandboxStatusRequest(pod_sandbox_id=id_, verbose=verbose), timeout=60
        )

    def info(self, id_: str) -> dict[str, Any]:
        return json.loads(self.status(id_, verbose=True).info["info"])

    def stop(self, id_: str) -> None:
        self.rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=id_), timeout=60)

    def remove(self, id_: str) -> None:
        self.rs.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=id_), timeout=60)

    def list(self, **filter_: Any) -> list[Any]:
        req = pb.ListPodSandboxRequest()
        if filter_:
            req.filter.CopyFrom(pb.PodSandboxFilter(**filter_))
        return list(self.rs.ListPodSandbox(req, timeout=30).items)

    def ctr(self, *args: str) -> str:
        return self.daemon.ctr(*args, namespace="k8s.io").stdout

    def close(self) -> None:
        if self.cri is not None:
            for id_ in self.ids:
                try:
                    self.stop(id_)
                    self.remove(id_)
                except grpc.RpcError:
                    pass
            self.cri.close()
        self.daemon.stop()


@pytest.fixture
def pods(network: Any, registry: Any, pause_ref: str) -> Iterator[Pods]:
    base = Path(tempfile.mkdtemp(prefix="cripod", dir="/tmp"))
    p = Pods(base, _config(base, network, registry, pause_ref))
    try:
        yield p.start()
    finally:
        p.close()
        shutil.rmtree(base, ignore_errors=True)


def pod_config(name: str = "web", **kw: Any) -> Any:
    config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="default"),
        hostname=kw.pop("hostname", f"{name}-host"),
        log_directory=kw.pop("log_directory", f"/tmp/cripods-logs/{name}"),
        labels=kw.pop("labels", {"app": name, "tier": "front"}),
        annotations=kw.pop("annotations", {"example.com/pass": "yes", "other.io/keep": "no"}),
    )
    for k, v in kw.items():
        getattr(config, k).CopyFrom(v) if hasattr(v, "DESCRIPTOR") else setattr(config, k, v)
    return config


def _code(exc: grpc.RpcError) -> grpc.StatusCode:
    return exc.code()  # type: ignore[no-any-return]


def _leases(pods: Pods) -> str:
    return pods.ctr("leases", "ls")


def _oom_score_adj(pid: int) -> int:
    return int(Path(f"/proc/{pid}/oom_score_adj").read_text())


def test_run_status_list_stop_remove(pods: Pods, network: cni_support.TestNetwork) -> None:
    events: queue.Queue[Any] = queue.Queue()
    stream = pods.rs.GetContainerEvents(pb.GetEventsRequest(), timeout=300)

    def follow() -> None:
        try:
            for e in stream:
                events.put(e)
        except grpc.RpcError:
            pass

    threading.Thread(target=follow, daemon=True).start()
    time.sleep(0.3)

    config = pod_config(
        "web",
        dns_config=pb.DNSConfig(servers=["10.0.0.10"], searches=["svc.local"], options=["ndots:5"]),
    )
    config.port_mappings.append(pb.PortMapping(protocol=pb.TCP, container_port=80, host_port=0))
    id_ = pods.run(config)
    assert len(id_) == 64 and int(id_, 16) >= 0

    status = pods.status(id_).status
    assert status.state == pb.SANDBOX_READY
    assert status.id == id_ and status.metadata.name == "web"
    assert status.labels == {"app": "web", "tier": "front"}
    assert status.annotations["example.com/pass"] == "yes"
    assert status.runtime_handler == ""
    assert status.created_at > 0
    ip = status.network.ip
    assert ipaddress.ip_address(ip) in network.subnet
    assert ip in network.allocated_ips()

    info = pods.info(id_)
    pid = info["pid"]
    assert pid > 0 and info["processStatus"] == "running"
    netns = info["sandboxMetadata"]["NetNSPath"]
    assert netns.startswith("/var/run/netns/cni-")
    assert f"{ip}/24" in cni_support.addresses_in(netns)
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(netns).st_ino
    # restrict_oom_score_adj: -998 clamped to the daemon's own value
    assert _oom_score_adj(pid) == _oom_score_adj(pods.daemon.proc.pid)  # type: ignore[union-attr]
    spec = info["runtimeSpec"]
    assert spec["annotations"]["io.kubernetes.cri.container-type"] == "sandbox"
    assert spec["annotations"]["io.kubernetes.cri.sandbox-id"] == id_
    assert spec["annotations"]["io.kubernetes.cri.sandbox-name"] == "web"
    assert spec["annotations"]["example.com/pass"] == "yes"
    assert "other.io/keep" not in spec["annotations"]
    assert spec["hostname"] == "web-host"
    assert spec["linux"]["sysctl"]["net.ipv4.ip_unprivileged_port_start"] == "0"

    root = pods.daemon.root / "io.containerd.grpc.v1.cri" / "sandboxes" / id_
    state = pods.daemon.state / "io.containerd.grpc.v1.cri" / "sandboxes" / id_
    assert (root / "hostname").read_text() == "web-host\n"
    assert (root / "resolv.conf").read_text() == (
        "search svc.local\nnameserver 10.0.0.10\noptions ndots:5\n"
    )
    assert (root / "hosts").read_text() == Path("/etc/hosts").read_text()
    assert os.path.ismount(state / "shm")

    containers = pods.ctr("containers", "ls")
    assert id_ in containers
    info_ = json.loads(pods.ctr("containers", "info", id_))
    assert info_["Labels"]["io.cri-containerd.kind"] == "sandbox"
    assert info_["Labels"]["app"] == "web"
    assert "io.cri-containerd.sandbox.metadata" in info_["Extensions"]
    assert id_ in _leases(pods)

    # list and its filters
    other = pods.run(pod_config("db", labels={"app": "db"}))
    assert {p.id for p in pods.list()} == {id_, other}
    assert [p.id for p in pods.list(id=id_[:12])] == [id_]
    assert [p.id for p in pods.list(label_selector={"app": "db"})] == [other]
    assert pods.list(label_selector={"app": "db", "tier": "front"}) == []
    ready = pb.PodSandboxStateValue(state=pb.SANDBOX_READY)
    assert {p.id for p in pods.list(state=ready)} == {id_, other}
    # short ids work for status too
    assert pods.status(id_[:16]).status.id == id_

    # stop: CNI DEL frees the IP, netns gone, NOTREADY; twice is fine
    pods.stop(id_)
    st = pods.status(id_).status
    assert st.state == pb.SANDBOX_NOTREADY
    assert st.network.ip == ""
    assert ip not in network.allocated_ips()
    assert not os.path.exists(netns)
    assert (
        not os.path.exists(f"/proc/{pid}")
        or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    )
    assert not os.path.ismount(state / "shm")
    pods.stop(id_)
    notready = pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY)
    assert [p.id for p in pods.list(state=notready)] == [id_]
    assert [p.id for p in pods.list(state=ready)] == [other]

    # remove: container, snapshot, lease, files and record gone; twice is fine
    pods.remove(id_)
    assert id_ not in pods.ctr("containers", "ls")
    assert id_ not in pods.ctr("snapshots", "--snapshotter", "overlayfs", "ls")
    assert id_ not in _leases(pods)
    assert not root.exists() and not state.exists()
    with pytest.raises(grpc.RpcError) as e:
        pods.status(id_)
    assert _code(e.value) == grpc.StatusCode.NOT_FOUND
    pods.remove(id_)
    pods.stop(id_)
    assert [p.id for p in pods.list()] == [other]

    got: list[tuple[str, int]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len([g for g in got if g[0] == id_]) < 4:
        try:
            e = events.get(timeout=0.5)
        except queue.Empty:
            continue
        got.append((e.container_id, e.container_event_type))
    assert [t for c, t in got if c == id_] == [
        pb.CONTAINER_CREATED_EVENT,
        pb.CONTAINER_STARTED_EVENT,
        pb.CONTAINER_STOPPED_EVENT,
        pb.CONTAINER_DELETED_EVENT,
    ]
    stream.cancel()


def test_bad_handlers_and_duplicate_names(pods: Pods, network: cni_support.TestNetwork) -> None:
    netns_before = set(os.listdir("/var/run/netns")) if os.path.isdir("/var/run/netns") else set()
    with pytest.raises(grpc.RpcError) as e:
        pods.run(pod_config("nohandler"), handler="no-such-handler")
    assert _code(e.value) == grpc.StatusCode.NOT_FOUND
    assert "no-such-handler" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        pods.run(pod_config("bogus"), handler="bogus")
    assert _code(e.value) == grpc.StatusCode.FAILED_PRECONDITION
    assert "bogus" in e.value.details() and "containerd-shim-nosuchshim-v1" in e.value.details()
    assert pods.list() == []
    assert "k8s.io" not in _leases(pods) and _leases(pods).count("\n") <= 1
    assert network.allocated_ips() == []

    id_ = pods.run(pod_config("dup"))
    with pytest.raises(grpc.RpcError) as e:
        pods.run(pod_config("dup"))
    assert _code(e.value) == grpc.StatusCode.ALREADY_EXISTS
    assert "dup_default_uid-dup_0" in e.value.details()
    # another attempt is another name
    second = pods.run(
        pod_config(
            "dup",
            metadata=pb.PodSandboxMetadata(
                name="dup", uid="uid-dup", namespace="default", attempt=1
            ),
        )
    )
    assert {p.id for p in pods.list()} == {id_, second}
    assert len(network.allocated_ips()) == 2
    for i in (id_, second):
        pods.stop(i)
        pods.remove(i)
    assert network.allocated_ips() == []
    # the name is free again once removed
    pods.run(pod_config("dup"))
    netns_after = set(os.listdir("/var/run/netns"))
    assert len(netns_after - netns_before) == 1


def test_host_network_pod(pods: Pods) -> None:
    config = pod_config("hostnet")
    ns = config.linux.security_context.namespace_options
    ns.network = NS_NODE
    ns.pid = NS_NODE
    ns.ipc = NS_NODE
    id_ = pods.run(config, handler="runc")
    status = pods.status(id_).status
    assert status.state == pb.SANDBOX_READY
    assert status.network.ip == ""
    assert status.linux.namespaces.options.network == NS_NODE
    assert status.runtime_handler == "runc"
    info = pods.info(id_)
    pid = info["pid"]
    assert info["sandboxMetadata"]["NetNSPath"] == ""
    for kind in ("net", "pid", "ipc"):
        assert os.readlink(f"/proc/{pid}/ns/{kind}") == os.readlink(f"/proc/self/ns/{kind}")
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    pods.stop(id_)
    pods.remove(id_)
    assert pods.list() == []


def test_pod_with_pyrunc_handler(pods: Pods, network: cni_support.TestNetwork) -> None:
    id_ = pods.run(pod_config("py"), handler="pyrunc")
    status = pods.status(id_).status
    assert status.state == pb.SANDBOX_READY and status.runtime_handler == "pyrunc"
    assert ipaddress.ip_address(status.network.ip) in network.subnet
    info = pods.info(id_)
    assert info["runtimeType"] == "io.containerd.pyrunc.v2"
    # the pause process dies on its own: the exit monitor makes the pod NOTREADY
    os.kill(info["pid"], 9)
    deadline = time.monotonic() + 15
    while pods.status(id_).status.state != pb.SANDBOX_NOTREADY:
        assert time.monotonic() < deadline, "sandbox still READY after its pause process died"
        time.sleep(0.1)
    assert pods.info(id_)["processStatus"] == "stopped"
    pods.stop(id_)
    pods.remove(id_)
    assert network.allocated_ips() == []


def test_restart_keeps_pods(pods: Pods, network: cni_support.TestNetwork) -> None:
    running = pods.run(pod_config("survivor"))
    dying = pods.run(pod_config("dying"))
    stopped = pods.run(pod_config("stopped"))
    pods.stop(stopped)
    before = pods.status(running).status
    pid = pods.info(running)["pid"]
    dying_pid = pods.info(dying)["pid"]

    # SIGTERM the daemon, kill one pause process while it is down, start again
    assert pods.cri is not None
    pods.cri.close()
    assert pods.daemon.stop() == 0
    os.kill(dying_pid, 9)
    pods.start()

    after = pods.status(running).status
    assert after.state == pb.SANDBOX_READY
    assert after.network.ip == before.network.ip
    assert after.created_at == before.created_at
    assert pods.info(running)["pid"] == pid
    assert pods.status(dying).status.state == pb.SANDBOX_NOTREADY
    assert pods.status(stopped).status.state == pb.SANDBOX_NOTREADY
    # names are still reserved
    with pytest.raises(grpc.RpcError) as e:
        pods.run(pod_config("survivor"))
    assert _code(e.value) == grpc.StatusCode.ALREADY_EXISTS

    # the recovered pod still stops (exit noticed) and removes cleanly
    pods.stop(running)
    assert pods.status(running).status.state == pb.SANDBOX_NOTREADY
    for i in (running, dying, stopped):
        pods.stop(i)
        pods.remove(i)
    assert pods.list() == []
    assert network.allocated_ips() == []
    assert pods.ctr("containers", "ls").strip().count("\n") == 0


def test_failed_run_leaves_nothing(
    network: cni_support.TestNetwork, registry: Any, pause_ref: str
) -> None:
    """The pause image cannot be pulled: the error says so, and the netns, the CNI
    attachment (IP), the sandbox record, the lease and the name are all undone."""
    base = Path(tempfile.mkdtemp(prefix="cripod", dir="/tmp"))
    missing = registry.ref("no-such-pause", "1")
    p = Pods(base, _config(base, network, registry, missing))
    netns_before = set(os.listdir("/var/run/netns")) if os.path.isdir("/var/run/netns") else set()
    try:
        p.start()
        for _ in range(2):  # the name is free again after the first failure
            with pytest.raises(grpc.RpcError) as e:
                p.run(pod_config("unlucky"))
            assert "no-such-pause" in e.value.details()
            assert _code(e.value) == grpc.StatusCode.NOT_FOUND
        assert p.list() == []
        assert network.allocated_ips() == []
        assert set(os.listdir("/var/run/netns")) == netns_before
        assert p.ctr("leases", "ls").strip().count("\n") == 0
        assert p.ctr("containers", "ls").strip().count("\n") == 0
        sandboxes = p.daemon.root / "io.containerd.grpc.v1.cri" / "sandboxes"
        assert not sandboxes.exists() or list(sandboxes.iterdir()) == []
        assert network.per_container_chains() == []
    finally:
        p.close()
        shutil.rmtree(base, ignore_errors=True)
