"""The CRI proof: one flow as kubelet drives it, against the real daemon with runc, the CNI
bridge + host-local + loopback + portmap network and a local docker-registry holding busybox
and pause. PullImage; a pod (cgroup parent under ``kubepods``, a hostPort) with two
containers sharing its network namespace: A serves HTTP on 8080 (busybox httpd), B reaches it
at 127.0.0.1:8080 through ExecSync; both logs in the CRI format; exec through the streaming
URL over WebSocket (v5) and SPDY (v4); port-forward to A over SPDY and WebSocket; the hostPort
reached from the host; a daemon restart after which all of it is back and still works;
stop/remove; then nothing is left: no netns file, no mount under the
daemon's root/state, no cgroup of the pod, the host-local IP released, no lease in k8s.io, no
container or snapshot of the pod. Bad inputs get the right codes and leave nothing either.

Beside the flow: container and pod sandbox stats, UpdateContainerResources seen in the
cgroup, ReopenContainerLog after a rotation, NetworkReady, an image unpacked on demand into a
runtime handler's other snapshotter (``native``), and OOMKilled."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import struct
import tempfile
import time
import uuid
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

MEMORY_CGROUP = Path("/sys/fs/cgroup/memory")
HTTP_BODY = "hello from A\n"


@pytest.fixture(scope="module")
def refs(registry: Any, pause: Any, busybox: Any) -> dict[str, str]:
    registry.push(pause, repository="pause", tag="3.10")
    registry.push(busybox, repository="busybox", tag="latest")
    return {"pause": registry.ref("pause", "3.10"), "busybox": registry.ref("busybox", "latest")}


def _config(base: Path, network: Any, registry: Any, pause_ref: str) -> str:
    return cri_support.daemon_config(
        base,
        network,
        registry,
        pause_ref,
        runtime="netns_mounts_under_state_dir = false",
        runtimes={
            "runc": 'runtime_type = "io.containerd.runc.v2"',
            "nativerunc": 'runtime_type = "io.containerd.runc.v2"\nsnapshotter = "native"',
        },
    )


class Kubelet:
    """What kubelet does, call by call, against one daemon."""

    def __init__(self, base: Path, config: str, busybox: str) -> None:
        env = cri_support.daemon_env()
        self.base = base
        self.daemon = Daemon(base / "d", config=config, env=env)
        self.busybox = busybox
        self.logs = base / "logs"
        self.cgroup_parent = f"/kubepods/pycri-{uuid.uuid4().hex[:8]}"
        self.pods: list[str] = []
        self.cri = CRIClient(self.daemon.address, timeout=120)

    def start(self) -> Kubelet:
        self.daemon.start(timeout=60)
        self.cri.wait_ready()
        return self

    def restart(self) -> None:
        """SIGTERM the daemon and start it again on the same root/state."""
        self.cri.close()
        assert self.daemon.stop() == 0, self.daemon.log()[-3000:]
        self.cri = CRIClient(self.daemon.address, timeout=120)
        self.start()

    @property
    def rs(self) -> Any:
        return self.cri.runtime

    def pod_config(self, name: str, **kw: Any) -> Any:
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="default"),
            hostname=f"{name}-host",
            log_directory=str(self.logs / name),
            labels={"app": name},
        )
        config.linux.cgroup_parent = self.cgroup_parent
        for k, v in kw.items():
            if isinstance(v, list):
                getattr(config, k).extend(v)
            else:
                setattr(config, k, v)
        return config

    def run_pod(self, config: Any, handler: str = "") -> str:
        resp = self.rs.RunPodSandbox(
            pb.RunPodSandboxRequest(config=config, runtime_handler=handler), timeout=120
        )
        self.pods.append(resp.pod_sandbox_id)
        return str(resp.pod_sandbox_id)

    def container_config(self, name: str, args: list[str], **kw: Any) -> Any:
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name),
            image=pb.ImageSpec(image=kw.pop("image", self.busybox)),
            command=["/bin/sh", "-c"],
            args=args,
            log_path=f"{name}.log",
        )
        for k, v in kw.items():
            if isinstance(v, list):
                getattr(config, k).extend(v)
            else:
                getattr(config, k).CopyFrom(v)
        return config

    def create(self, pod: str, pod_config: Any, name: str, args: list[str], **kw: Any) -> str:
        req = pb.CreateContainerRequest(
            pod_sandbox_id=pod,
            config=self.container_config(name, args, **kw),
            sandbox_config=pod_config,
        )
        return str(self.rs.CreateContainer(req, timeout=120).container_id)

    def start_c(self, id_: str) -> None:
        self.rs.StartContainer(pb.StartContainerRequest(container_id=id_), timeout=60)

    def status(self, id_: str) -> Any:
        return self.rs.ContainerStatus(pb.ContainerStatusRequest(container_id=id_), timeout=30)

    def wait_state(self, id_: str, state: int, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            st = self.status(id_).status
            if st.state == state:
                return st
            assert time.monotonic() < deadline, f"container {id_} stays in {st.state}"
            time.sleep(0.1)

    def exec_sync(self, id_: str, cmd: list[str], timeout: int = 0) -> Any:
        return self.rs.ExecSync(
            pb.ExecSyncRequest(container_id=id_, cmd=cmd, timeout=timeout), timeout=60
        )

    def pod_info(self, id_: str) -> dict[str, Any]:
        resp = self.rs.PodSandboxStatus(
            pb.PodSandboxStatusRequest(pod_sandbox_id=id_, verbose=True), timeout=60
        )
        return json.loads(resp.info["info"])  # type: ignore[no-any-return]

    def stop_remove_pod(self, id_: str) -> None:
        self.rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=id_), timeout=60)
        self.rs.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=id_), timeout=60)

    def ctr(self, *args: str) -> str:
        return self.daemon.ctr(*args, namespace="k8s.io").stdout

    def close(self) -> None:
        for id_ in self.pods:
            try:
                self.stop_remove_pod(id_)
            except grpc.RpcError:
                pass
        self.cri.close()
        self.daemon.stop()
        # the parent cgroup is kubelet's to remove (empty once every pod is gone)
        for d in Path("/sys/fs/cgroup").glob(f"*{self.cgroup_parent}"):
            for sub in [*sorted(d.rglob("*"), reverse=True), d, d.parent]:
                try:
                    sub.rmdir()  # only empty cgroups go; kubepods only when nobody else's
                except OSError:
                    pass


@pytest.fixture
def kubelet(network: Any, registry: Any, refs: dict[str, str]) -> Iterator[Kubelet]:
    base = Path(tempfile.mkdtemp(prefix="criproof", dir="/tmp"))
    k = Kubelet(base, _config(base, network, registry, refs["pause"]), refs["busybox"])
    try:
        yield k.start()
    finally:
        k.close()
        if not os.environ.get("PYCONTAINERD_KEEP_TEST_DIRS"):
            shutil.rmtree(base, ignore_errors=True)


# --- what is left on the host ---------------------------------------------------------------


def _mounts_under(*dirs: Path) -> list[str]:
    """Mount points (field 5 of /proc/self/mountinfo) at or under any of ``dirs``."""
    out = []
    roots = [str(d.resolve()) for d in dirs]
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == r or point.startswith(r + "/") for r in roots):
            out.append(point)
    return out


def _pod_cgroups(parent: str) -> list[str]:
    """Cgroup directories under the pod's parent in the memory hierarchy (cgroups v1)."""
    d = MEMORY_CGROUP / parent.lstrip("/")
    if not d.is_dir():
        return []
    return sorted(str(p) for p in d.rglob("*") if p.is_dir())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_get(host: str, port: int, timeout: float = 10) -> str:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        data = bytearray()
        while chunk := s.recv(65536):
            data += chunk
    return data.decode(errors="replace")


def _log_records(path: Path) -> list[tuple[str, str, str]]:
    out = []
    for line in path.read_text().splitlines():
        ts, stream, tag, content = (line.split(" ", 3) + [""])[:4]
        assert "T" in ts and stream in ("stdout", "stderr") and tag in ("F", "P"), line
        out.append((stream, tag, content))
    return out


# --- streaming clients ----------------------------------------------------------------------


async def _ws_exec(url: str, protocol: str) -> tuple[bytes, bytes, dict[str, Any]]:
    import aiohttp

    out, err, status = bytearray(), bytearray(), {}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url.replace("http://", "ws://"), protocols=[protocol]) as ws:
            assert ws.protocol == protocol
            async with asyncio.timeout(30):
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        break
                    if not msg.data:
                        continue
                    ch, data = msg.data[0], msg.data[1:]
                    if ch == 1:
                        out += data
                    elif ch == 2:
                        err += data
                    elif ch == 3 and data:
                        status = json.loads(data)
    return bytes(out), bytes(err), status


async def _spdy_exec(url: str) -> tuple[str, bytes, bytes, bytes]:
    from pycontainerd.core.streaming import spdy

    conn, proto = await spdy.dial(url, ["v4.channel.k8s.io", "v3.channel.k8s.io"])
    try:
        err_s = await conn.open_stream({"streamType": "error"})
        await err_s.close()
        out_s = await conn.open_stream({"streamType": "stdout"})
        errout_s = await conn.open_stream({"streamType": "stderr"})
        async with asyncio.timeout(30):
            out, errout, error = await asyncio.gather(
                out_s.read_all(), errout_s.read_all(), err_s.read_all()
            )
        return proto, out, errout, error
    finally:
        await conn.close()


REQUEST = b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n"


async def _spdy_port_forward(url: str, port: int) -> bytes:
    from pycontainerd.core.streaming import spdy

    conn, proto = await spdy.dial(url, ["portforward.k8s.io"])
    assert proto == "portforward.k8s.io"
    try:
        hdr = {"port": str(port), "requestID": "0"}
        err_s = await conn.open_stream({**hdr, "streamType": "error"})
        await err_s.close()
        data_s = await conn.open_stream({**hdr, "streamType": "data"})
        await data_s.write(REQUEST)
        async with asyncio.timeout(30):
            data = await data_s.read_all()
            error = await err_s.read_all()
        assert error == b"", error
        return data
    finally:
        await conn.close()


async def _ws_port_forward(url: str, port: int) -> bytes:
    import aiohttp

    data = bytearray()
    announced: set[int] = set()
    ws_url = url.replace("http://", "ws://") + f"?port={port}"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url, protocols=["v4.channel.k8s.io"]) as ws:
            await ws.send_bytes(b"\x00" + REQUEST)
            async with asyncio.timeout(30):
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        break
                    ch, payload = msg.data[0], msg.data[1:]
                    if ch not in announced:  # first frame of each channel: the port
                        announced.add(ch)
                        assert payload == struct.pack("<H", port), (ch, payload)
                        continue
                    if ch == 0:
                        data += payload
                    elif ch == 1 and payload:
                        raise AssertionError(f"port-forward error: {payload!r}")
    return bytes(data)


# --- the flow -------------------------------------------------------------------------------


def test_pod_with_two_containers_as_kubelet_runs_it(
    kubelet: Kubelet, network: cni_support.TestNetwork, refs: dict[str, str]
) -> None:
    k = kubelet
    # PullImage, as kubelet does before creating a container
    image_id = k.cri.pull(refs["busybox"])
    assert k.cri.image_status(refs["busybox"]).image.id == image_id

    host_port = _free_port()
    pcfg = k.pod_config(
        "web",
        port_mappings=[pb.PortMapping(protocol=pb.TCP, container_port=8080, host_port=host_port)],
    )
    pod = k.run_pod(pcfg)
    info = k.pod_info(pod)
    netns = info["sandboxMetadata"]["NetNSPath"]
    assert netns and os.path.exists(netns)
    ip = k.rs.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod)).status.network.ip
    assert ip in network.allocated_ips()

    server = k.create(
        pod,
        pcfg,
        "server",
        [
            f"mkdir -p /www && printf '{HTTP_BODY}' > /www/index.html && "
            "echo A serving && exec httpd -f -v -p 8080 -h /www"
        ],
    )
    client = k.create(pod, pcfg, "client", ["echo B up; echo B err >&2; exec sleep 1000"])
    for c in (server, client):
        k.start_c(c)
        k.wait_state(c, pb.CONTAINER_RUNNING)
    assert len(_pod_cgroups(k.cgroup_parent)) >= 3  # pause, A, B

    # B reaches A on localhost: one network namespace
    deadline = time.monotonic() + 15
    while True:
        r = k.exec_sync(client, ["wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html"])
        if r.exit_code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.exit_code == 0 and r.stdout.decode() == HTTP_BODY, r
    # same netns inode in both containers
    pids = [
        json.loads(
            k.rs.ContainerStatus(pb.ContainerStatusRequest(container_id=c, verbose=True)).info[
                "info"
            ]
        )["pid"]
        for c in (server, client)
    ]
    assert os.stat(f"/proc/{pids[0]}/ns/net").st_ino == os.stat(f"/proc/{pids[1]}/ns/net").st_ino
    assert os.stat(f"/proc/{pids[0]}/ns/net").st_ino == os.stat(netns).st_ino

    # logs of both, CRI format
    logs = {c: Path(k.status(c).status.log_path) for c in (server, client)}
    assert logs[server] == k.logs / "web" / "server.log"
    deadline = time.monotonic() + 10
    while ("stdout", "F", "B up") not in _log_records(logs[client]):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert ("stderr", "F", "B err") in _log_records(logs[client])
    assert ("stdout", "F", "A serving") in _log_records(logs[server])

    # exec through the streaming URL: WebSocket v5 and SPDY v4
    def exec_url() -> str:
        return str(
            k.rs.Exec(
                pb.ExecRequest(
                    container_id=client,
                    cmd=[
                        "sh",
                        "-c",
                        "wget -q -O - http://127.0.0.1:8080/index.html; echo oops >&2; exit 3",
                    ],
                    stdout=True,
                    stderr=True,
                ),
                timeout=30,
            ).url
        )

    out, err, status = asyncio.run(_ws_exec(exec_url(), "v5.channel.k8s.io"))
    assert (out, err) == (HTTP_BODY.encode(), b"oops\n")
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"][0]["message"] == "3"
    proto, out, err, error = asyncio.run(_spdy_exec(exec_url()))
    assert proto == "v4.channel.k8s.io"
    assert (out, err) == (HTTP_BODY.encode(), b"oops\n")
    assert json.loads(error)["details"]["causes"][0]["message"] == "3"

    # port-forward to A through the streaming URL: SPDY, then WebSocket
    def pf_url() -> str:
        return str(
            k.rs.PortForward(pb.PortForwardRequest(pod_sandbox_id=pod, port=[8080]), timeout=30).url
        )

    got = asyncio.run(_spdy_port_forward(pf_url(), 8080)).decode(errors="replace")
    assert got.startswith("HTTP/1.") and got.endswith(HTTP_BODY), got
    got = asyncio.run(_ws_port_forward(pf_url(), 8080)).decode(errors="replace")
    assert got.startswith("HTTP/1.") and got.endswith(HTTP_BODY), got

    # hostPort (portmap): from the host on the bridge gateway
    got = _http_get(network.gateway, host_port)
    assert got.startswith("HTTP/1.") and got.endswith(HTTP_BODY), got

    # a daemon restart: the pod and both containers come back as they were, and still work
    k.restart()
    status = k.rs.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod)).status
    assert status.state == pb.SANDBOX_READY and status.network.ip == ip
    for c in (server, client):
        assert k.status(c).status.state == pb.CONTAINER_RUNNING
    r = k.exec_sync(client, ["wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html"])
    assert r.exit_code == 0 and r.stdout.decode() == HTTP_BODY, r
    got = asyncio.run(_spdy_port_forward(pf_url(), 8080)).decode(errors="replace")
    assert got.endswith(HTTP_BODY), got

    # stop / remove, as kubelet: containers first, then the pod
    for c in (server, client):
        k.rs.StopContainer(pb.StopContainerRequest(container_id=c, timeout=2), timeout=60)
        assert k.status(c).status.state == pb.CONTAINER_EXITED
        k.rs.RemoveContainer(pb.RemoveContainerRequest(container_id=c), timeout=60)
    k.stop_remove_pod(pod)
    k.pods.remove(pod)

    _assert_nothing_left(k, network, [pod, server, client], netns, ip)
    with pytest.raises(OSError):
        _http_get(network.gateway, host_port, timeout=2)


def _assert_nothing_left(
    k: Kubelet, network: cni_support.TestNetwork, ids: list[str], netns: str, ip: str
) -> None:
    assert netns == "" or not os.path.exists(netns)
    assert _mounts_under(k.daemon.root, k.daemon.state) == []
    assert _pod_cgroups(k.cgroup_parent) == []
    assert ip == "" or ip not in network.allocated_ips()
    assert network.allocated_ips() == []
    assert k.ctr("leases", "ls").strip().splitlines()[1:] == []
    assert k.ctr("containers", "ls", "-q").split() == []
    for snapshotter in ("overlayfs", "native"):
        keys = k.ctr("snapshots", "--snapshotter", snapshotter, "ls")
        assert not any(i in keys for i in ids), keys
    assert k.rs.ListPodSandbox(pb.ListPodSandboxRequest()).items == []
    assert k.rs.ListContainers(pb.ListContainersRequest()).containers == []
    assert network.leftover_rules() == []  # CNI-* chains: other sessions make them too


def test_bad_inputs_get_their_codes_and_leave_nothing(
    kubelet: Kubelet, network: cni_support.TestNetwork, refs: dict[str, str]
) -> None:
    k = kubelet
    k.cri.pull(refs["busybox"])

    # unknown runtime handler
    with pytest.raises(grpc.RpcError) as e:
        k.run_pod(k.pod_config("nohandler"), handler="no-such-handler")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "no-such-handler" in e.value.details()

    pcfg = k.pod_config("bad")
    pod = k.run_pod(pcfg)
    info = k.pod_info(pod)
    netns = info["sandboxMetadata"]["NetNSPath"]
    ip = k.rs.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod)).status.network.ip

    # CreateContainer in an unknown sandbox
    with pytest.raises(grpc.RpcError) as e:
        k.create("0" * 64, pcfg, "c", ["true"])
    assert e.value.code() == grpc.StatusCode.NOT_FOUND

    # duplicate container name
    first = k.create(pod, pcfg, "dup", ["sleep 1000"])
    with pytest.raises(grpc.RpcError) as e:
        k.create(pod, pcfg, "dup", ["sleep 1000"])
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "dup_bad_default_uid-bad_0" in e.value.details()

    # an invalid mount: the container path is not absolute
    with pytest.raises(grpc.RpcError) as e:
        k.create(
            pod,
            pcfg,
            "badmount",
            ["true"],
            mounts=[pb.Mount(container_path="relative/data", host_path=str(k.base))],
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    # ... and the name it tried is free again
    ok = k.create(
        pod,
        pcfg,
        "badmount",
        ["true"],
        mounts=[pb.Mount(container_path="/data", host_path=str(k.base / "made-by-cri"))],
    )
    assert (k.base / "made-by-cri").is_dir()  # containerd creates missing host paths

    ids = {c.id for c in k.rs.ListContainers(pb.ListContainersRequest()).containers}
    assert ids == {first, ok}
    containers = set(k.ctr("containers", "ls", "-q").split())
    assert containers == {pod, first, ok}

    k.stop_remove_pod(pod)
    k.pods.remove(pod)
    _assert_nothing_left(k, network, [pod, first, ok], netns, ip)


# --- stats, resources, logs -----------------------------------------------------------------


def _poll(fn: Any, timeout: float = 15, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def test_stats_update_resources_and_reopen_log(
    kubelet: Kubelet, network: cni_support.TestNetwork, refs: dict[str, str]
) -> None:
    k = kubelet
    k.cri.pull(refs["busybox"])
    pcfg = k.pod_config("stats")
    pod = k.run_pod(pcfg)
    cid = k.create(
        pod,
        pcfg,
        "worker",
        [
            "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; "
            "x=$(head -c 30000000 /dev/zero | tr '\\0' a); "
            "head -c 2000000 /dev/zero > /tmp/blob; "
            "while true; do echo tick; sleep 0.2; done"
        ],
    )
    k.start_c(cid)
    k.wait_state(cid, pb.CONTAINER_RUNNING)
    log_path = Path(k.status(cid).status.log_path)
    assert _poll(lambda: log_path.exists() and "tick" in log_path.read_text())

    # ContainerStats: cgroup v1 through the task's Metrics, writable layer from the snapshot
    def container_stats() -> Any:
        st = k.rs.ContainerStats(pb.ContainerStatsRequest(container_id=cid), timeout=30).stats
        return st if st.writable_layer.used_bytes.value >= 2_000_000 else None

    st = _poll(container_stats)
    assert st is not None, "writable layer usage never reached the 2 MB written"
    assert st.attributes.id == cid and st.attributes.metadata.name == "worker"
    assert st.cpu.usage_core_nano_seconds.value > 0 and st.cpu.timestamp > 0
    assert st.memory.working_set_bytes.value > 20_000_000, st.memory
    listed = k.rs.ListContainerStats(
        pb.ListContainerStatsRequest(filter=pb.ContainerStatsFilter(pod_sandbox_id=pod)),
        timeout=30,
    ).stats
    assert [s.attributes.id for s in listed] == [cid]

    # PodSandboxStats: the pod's cgroup (its parent), its network, its containers
    ps = k.rs.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=pod), timeout=30).stats
    assert ps.attributes.id == pod and ps.attributes.labels["app"] == "stats"
    assert ps.linux.cpu.usage_core_nano_seconds.value >= st.cpu.usage_core_nano_seconds.value
    assert ps.linux.memory.working_set_bytes.value > 20_000_000
    assert ps.linux.process.process_count.value >= 3  # pause, sh, sleep
    assert ps.linux.network.default_interface.name == "eth0"
    assert [c.attributes.id for c in ps.linux.containers] == [cid]
    listed = k.rs.ListPodSandboxStats(
        pb.ListPodSandboxStatsRequest(
            filter=pb.PodSandboxStatsFilter(label_selector={"app": "stats"})
        ),
        timeout=30,
    ).stats
    assert [s.attributes.id for s in listed] == [pod]
    with pytest.raises(grpc.RpcError) as e:
        k.rs.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id="f" * 64), timeout=30)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND

    # UpdateContainerResources: the new memory limit is in the container's cgroup
    limit = 96 * 1024 * 1024
    k.rs.UpdateContainerResources(
        pb.UpdateContainerResourcesRequest(
            container_id=cid,
            linux=pb.LinuxContainerResources(memory_limit_in_bytes=limit, cpu_shares=512),
        ),
        timeout=30,
    )
    cg = MEMORY_CGROUP / k.cgroup_parent.lstrip("/") / cid
    assert int((cg / "memory.limit_in_bytes").read_text()) == limit
    cpu_cg = Path("/sys/fs/cgroup/cpu") / k.cgroup_parent.lstrip("/") / cid
    assert int((cpu_cg / "cpu.shares").read_text()) == 512
    res = k.status(cid).status.resources.linux
    assert res.memory_limit_in_bytes == limit and res.cpu_shares == 512

    # ReopenContainerLog: the rotated file keeps what was written, new lines go to a new file
    rotated = log_path.with_name(log_path.name + ".1")
    log_path.rename(rotated)
    k.rs.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid), timeout=30)
    assert _poll(lambda: log_path.exists() and "tick" in log_path.read_text())
    assert all(r == ("stdout", "F", "tick") for r in _log_records(log_path))
    before = rotated.stat().st_size
    time.sleep(0.6)
    assert rotated.stat().st_size == before  # nothing goes to the moved file any more

    k.rs.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=1), timeout=60)
    with pytest.raises(grpc.RpcError) as e:
        k.rs.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid), timeout=30)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    k.rs.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)
    k.stop_remove_pod(pod)
    k.pods.remove(pod)
    assert _pod_cgroups(k.cgroup_parent) == []


def test_status_network_ready_follows_the_cri_cni(
    kubelet: Kubelet, network: cni_support.TestNetwork
) -> None:
    k = kubelet

    def network_ready() -> Any:
        conds = k.cri.status().status.conditions
        return next(c for c in conds if c.type == "NetworkReady")

    assert network_ready().status is True
    info = json.loads(k.cri.status(verbose=True).info["cniconfig"])
    assert [n["name"] for n in info["Networks"]] == [network.name]


# --- an image pulled for one snapshotter, used by a handler with another --------------------


def test_image_unpacked_on_demand_into_the_handlers_snapshotter(
    kubelet: Kubelet, network: cni_support.TestNetwork, refs: dict[str, str]
) -> None:
    k = kubelet
    busybox_id = k.cri.pull(refs["busybox"])  # default handler: overlayfs
    k.cri.pull(refs["pause"])
    assert k.ctr("snapshots", "--snapshotter", "native", "ls").strip().splitlines()[1:] == []

    pcfg = k.pod_config("native")
    pod = k.run_pod(pcfg, handler="nativerunc")  # pause unpacked into native now
    cid = k.create(pod, pcfg, "c", ["echo from native; sleep 1000"])  # busybox too
    k.start_c(cid)
    k.wait_state(cid, pb.CONTAINER_RUNNING)
    assert k.exec_sync(cid, ["cat", "/proc/self/mountinfo"]).exit_code == 0
    info = json.loads(
        k.rs.ContainerStatus(
            pb.ContainerStatusRequest(container_id=cid, verbose=True), timeout=30
        ).info["info"]
    )
    assert info["snapshotter"] == "native"
    native = k.ctr("snapshots", "--snapshotter", "native", "ls")
    assert cid in native and pod in native
    committed = [ln for ln in native.splitlines() if "Committed" in ln]
    assert len(committed) >= 2  # busybox's and pause's chains
    # the image records say where the image is unpacked: the snapshots live on with them
    k.rs.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=1), timeout=60)
    k.rs.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)
    k.stop_remove_pod(pod)
    k.pods.remove(pod)
    _assert_nothing_left(k, network, [pod, cid], "", "")
    assert k.cri.image_status(busybox_id).image.id == busybox_id
    native = k.ctr("snapshots", "--snapshotter", "native", "ls")
    assert len([ln for ln in native.splitlines() if "Committed" in ln]) == len(committed)


def test_container_killed_by_the_oom_killer_reports_oomkilled(
    kubelet: Kubelet, refs: dict[str, str]
) -> None:
    k = kubelet
    k.cri.pull(refs["busybox"])
    pcfg = k.pod_config("oom")
    pod = k.run_pod(pcfg)
    cid = k.create(
        pod,
        pcfg,
        "hog",
        ["x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"],
        linux=pb.LinuxContainerConfig(
            resources=pb.LinuxContainerResources(memory_limit_in_bytes=32 * 1024 * 1024)
        ),
    )
    k.start_c(cid)
    st = k.wait_state(cid, pb.CONTAINER_EXITED, timeout=60)
    assert (st.exit_code, st.reason) == (137, "OOMKilled"), (st.exit_code, st.reason, st.message)
    k.rs.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)
    k.stop_remove_pod(pod)
    k.pods.remove(pod)
    assert _pod_cgroups(k.cgroup_parent) == []
