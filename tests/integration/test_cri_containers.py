"""CRI containers through the RuntimeService of the real daemon (generated ``runtime.v1``
stubs on its socket), with runc, the test CNI network, and busybox + pause from a local
docker-registry: create does not start; start; CRI log format (stdout/stderr, long lines split
into P parts); exit code and reason; ExecSync output, exit code and timeout; stop/remove;
status fields; list filters; bind mounts (readonly); env, working dir, run_as_user, readonly
rootfs; GetContainerEvents; exec through the streaming URL over WebSocket; port-forward to
a server in the pod; a daemon restart with a running container and one that exits meanwhile."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cri as cri_support
import grpc
import pytest
from cri import CRIClient, pb
from daemon import Daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]


@pytest.fixture(scope="module")
def images(registry: Any, pause: Any, busybox: Any) -> dict[str, str]:
    registry.push(pause, repository="pause", tag="3.10")
    registry.push(busybox, repository="busybox", tag="latest")
    return {"pause": registry.ref("pause", "3.10"), "busybox": registry.ref("busybox", "latest")}


def _config(base: Path, network: Any, registry: Any, pause_ref: str) -> str:
    return cri_support.daemon_config(
        base, network, registry, pause_ref, runtime="max_container_log_line_size = 64"
    )


class Env(cri_support.CRIDaemon):
    def __init__(self, base: Path, config: str, busybox: str) -> None:
        env = cri_support.daemon_env()
        self.base = base
        self.daemon = Daemon(base / "d", config=config, env=env)
        self.cri: CRIClient | None = None
        self.busybox = busybox
        self.pods: list[str] = []
        self.logs = base / "logs"

    def pod_config(self, name: str = "pod") -> Any:
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="default"),
            hostname=f"{name}-host",
            log_directory=str(self.logs / name),
            labels={"app": name},
        )

    def run_pod(self, name: str = "pod") -> tuple[str, Any]:
        config = self.pod_config(name)
        resp = self.rs.RunPodSandbox(pb.RunPodSandboxRequest(config=config), timeout=120)
        self.pods.append(resp.pod_sandbox_id)
        return str(resp.pod_sandbox_id), config

    def create(self, pod: str, pod_config: Any, name: str, args: list[str], **kw: Any) -> str:
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=kw.pop("attempt", 0)),
            image=pb.ImageSpec(image=kw.pop("image", self.busybox)),
            command=kw.pop("command", ["/bin/sh", "-c"]),
            args=args,
            log_path=f"{name}.log",
            labels=kw.pop("labels", {"c": name}),
        )
        for k, v in kw.items():
            if isinstance(v, list):
                getattr(config, k).extend(v)
            elif hasattr(v, "DESCRIPTOR"):
                getattr(config, k).CopyFrom(v)
            else:
                setattr(config, k, v)
        resp = self.rs.CreateContainer(
            pb.CreateContainerRequest(pod_sandbox_id=pod, config=config, sandbox_config=pod_config),
            timeout=120,
        )
        return str(resp.container_id)

    def start_c(self, id_: str) -> None:
        self.rs.StartContainer(pb.StartContainerRequest(container_id=id_), timeout=60)

    def status(self, id_: str, verbose: bool = False) -> Any:
        return self.rs.ContainerStatus(
            pb.ContainerStatusRequest(container_id=id_, verbose=verbose), timeout=30
        )

    def wait_state(self, id_: str, state: int, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            st = self.status(id_).status
            if st.state == state:
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"container {id_} stays in {st.state}, not {state}")
            time.sleep(0.1)

    def exec_sync(self, id_: str, cmd: list[str], timeout: int = 0) -> Any:
        return self.rs.ExecSync(
            pb.ExecSyncRequest(container_id=id_, cmd=cmd, timeout=timeout), timeout=60
        )

    def list(self, **flt: Any) -> list[Any]:
        req = pb.ListContainersRequest()
        if flt:
            state = flt.pop("state", None)
            req.filter.CopyFrom(pb.ContainerFilter(**flt))
            if state is not None:
                req.filter.state.state = state
        return list(self.rs.ListContainers(req, timeout=30).containers)

    def close(self) -> None:
        if self.cri is not None:
            for id_ in self.pods:
                try:
                    self.rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=id_), timeout=60)
                    self.rs.RemovePodSandbox(
                        pb.RemovePodSandboxRequest(pod_sandbox_id=id_), timeout=60
                    )
                except grpc.RpcError:
                    pass
            self.cri.close()
        self.daemon.stop()


@pytest.fixture
def env(network: Any, registry: Any, images: dict[str, str]) -> Iterator[Env]:
    base = Path(tempfile.mkdtemp(prefix="cricont", dir="/tmp"))
    e = Env(base, _config(base, network, registry, images["pause"]), images["busybox"])
    try:
        e.start()
        assert e.cri is not None
        e.cri.pull(images["busybox"])
        yield e
    finally:
        e.close()
        if not os.environ.get("PYCONTAINERD_KEEP_TEST_DIRS"):
            shutil.rmtree(base, ignore_errors=True)


def _log_records(path: Path) -> list[tuple[str, str, str]]:
    out = []
    for line in path.read_text().splitlines():
        ts, stream, tag, content = (line.split(" ", 3) + [""])[:4]
        assert "T" in ts and (ts.endswith("Z") or "+" in ts or ts.count("-") > 2), line
        out.append((stream, tag, content))
    return out


def test_create_start_logs_exit(env: Env) -> None:
    pod, pcfg = env.run_pod("logs")
    long = "x" * 150
    cid = env.create(
        pod,
        pcfg,
        "writer",
        [f"echo out1; echo err1 >&2; echo {long}; printf tail; exit 3"],
    )
    st = env.status(cid).status
    assert st.state == pb.CONTAINER_CREATED and st.started_at == 0
    assert st.log_path == str(env.logs / "logs" / "writer.log")
    env.start_c(cid)
    st = env.wait_state(cid, pb.CONTAINER_EXITED)
    assert st.exit_code == 3 and st.reason == "Error"
    assert st.started_at > 0 and st.finished_at >= st.started_at
    records = _log_records(Path(st.log_path))
    assert ("stdout", "F", "out1") in records
    assert ("stderr", "F", "err1") in records
    parts = [r for r in records if r[2].startswith("x")]
    assert [p[1] for p in parts] == ["P", "P", "F"]
    assert "".join(p[2] for p in parts) == long
    assert ("stdout", "P", "tail") in records

    ok = env.create(pod, pcfg, "ok", ["true"])
    env.start_c(ok)
    st = env.wait_state(ok, pb.CONTAINER_EXITED)
    assert st.exit_code == 0 and st.reason == "Completed"

    with pytest.raises(grpc.RpcError) as exc:
        env.start_c(ok)
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_exec_sync_stop_remove_status_list(env: Env) -> None:
    events: queue.Queue[Any] = queue.Queue()
    stream = env.rs.GetContainerEvents(pb.GetEventsRequest(), timeout=300)

    def follow() -> None:
        try:
            for e in stream:
                events.put(e)
        except grpc.RpcError:
            pass

    threading.Thread(target=follow, daemon=True).start()
    time.sleep(0.3)

    pod, pcfg = env.run_pod("work")
    host_dir = env.base / "shared"
    host_dir.mkdir()
    (host_dir / "hello.txt").write_text("from host\n")
    cid = env.create(
        pod,
        pcfg,
        "sleeper",
        ["trap 'exit 0' TERM; while true; do sleep 0.1; done"],
        envs=[pb.KeyValue(key="GREETING", value=b"hi there")],
        working_dir="/tmp",
        mounts=[pb.Mount(container_path="/data", host_path=str(host_dir), readonly=True)],
        labels={"role": "sleeper", "tier": "back"},
    )
    other = env.create(pod, pcfg, "idle", ["sleep 1000"], labels={"role": "idle"})
    env.start_c(cid)
    env.wait_state(cid, pb.CONTAINER_RUNNING)

    r = env.exec_sync(
        cid, ["sh", "-c", "echo $GREETING; pwd; cat /data/hello.txt; echo e >&2; exit 5"]
    )
    assert r.stdout == b"hi there\n/tmp\nfrom host\n" and r.stderr == b"e\n" and r.exit_code == 5
    r = env.exec_sync(cid, ["sh", "-c", "touch /data/x"])
    assert r.exit_code != 0  # readonly bind mount
    r = env.exec_sync(cid, ["cat", "/etc/hostname"])
    assert r.stdout.strip() == b"work-host"
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as exc:
        env.exec_sync(cid, ["sleep", "30"], timeout=1)
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - start < 15

    st = env.status(cid, verbose=True)
    s = st.status
    assert s.metadata.name == "sleeper" and s.labels["role"] == "sleeper"
    assert s.image.image == env.busybox and s.image_ref
    assert [m.container_path for m in s.mounts] == ["/data"]
    info = json.loads(st.info["info"])
    assert info["sandboxID"] == pod and info["pid"] > 0

    assert {c.id for c in env.list()} >= {cid, other}
    assert [c.id for c in env.list(id=cid[:12])] == [cid]
    assert {c.id for c in env.list(pod_sandbox_id=pod)} == {cid, other}
    assert [c.id for c in env.list(state=pb.CONTAINER_RUNNING)] == [cid]
    assert [c.id for c in env.list(label_selector={"role": "idle"})] == [other]

    env.rs.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=10), timeout=60)
    st = env.status(cid).status
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 0
    env.rs.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=10), timeout=60)

    env.rs.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)
    env.rs.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)
    with pytest.raises(grpc.RpcError) as exc:
        env.status(cid)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    assert cid not in env.daemon.ctr("containers", "ls", "-q", namespace="k8s.io").stdout

    seen: list[tuple[str, int]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (cid, pb.CONTAINER_DELETED_EVENT) not in seen:
        try:
            e = events.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append((e.container_id, e.container_event_type))
    mine = [t for i, t in seen if i == cid]
    assert mine == [
        pb.CONTAINER_CREATED_EVENT,
        pb.CONTAINER_STARTED_EVENT,
        pb.CONTAINER_STOPPED_EVENT,
        pb.CONTAINER_DELETED_EVENT,
    ]


def test_security_context(env: Env) -> None:
    pod, pcfg = env.run_pod("sec")
    cid = env.create(
        pod,
        pcfg,
        "secure",
        ["sleep 1000"],
        linux=pb.LinuxContainerConfig(
            security_context=pb.LinuxContainerSecurityContext(
                run_as_user=pb.Int64Value(value=1234),
                readonly_rootfs=True,
                supplemental_groups=[555],
            ),
            resources=pb.LinuxContainerResources(oom_score_adj=-500),
        ),
    )
    env.start_c(cid)
    env.wait_state(cid, pb.CONTAINER_RUNNING)
    r = env.exec_sync(cid, ["id"])
    assert b"uid=1234" in r.stdout and b"555" in r.stdout, r.stdout
    r = env.exec_sync(cid, ["sh", "-c", "touch /newfile"])
    assert r.exit_code != 0 and b"Read-only" in r.stderr
    own = int(Path("/proc/self/oom_score_adj").read_text())
    r = env.exec_sync(cid, ["cat", "/proc/self/oom_score_adj"])
    assert int(r.stdout) == max(-500, own)
    st = env.status(cid).status
    assert st.user.linux.uid == 1234 and 555 in st.user.linux.supplemental_groups


async def _ws_exec(url: str, protocol: str) -> tuple[bytes, bytes, dict[str, Any]]:
    import aiohttp

    out, err, status = bytearray(), bytearray(), {}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, protocols=[protocol]) as ws:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        break
                    continue
                ch, data = msg.data[0], msg.data[1:]
                if ch == 1:
                    out += data
                elif ch == 2:
                    err += data
                elif ch == 3 and data:
                    status = json.loads(data)
    return bytes(out), bytes(err), status


def test_exec_websocket_and_port_forward(env: Env) -> None:
    pod, pcfg = env.run_pod("stream")
    cid = env.create(pod, pcfg, "server", ["while true; do echo pong | nc -l -p 8080; done"])
    env.start_c(cid)
    env.wait_state(cid, pb.CONTAINER_RUNNING)

    for protocol in ("v4.channel.k8s.io", "v5.channel.k8s.io"):
        url = env.rs.Exec(
            pb.ExecRequest(
                container_id=cid,
                cmd=["sh", "-c", "echo hello; echo oops >&2; exit 2"],
                stdout=True,
                stderr=True,
            ),
            timeout=30,
        ).url
        out, err, status = asyncio.run(_ws_exec(url.replace("http://", "ws://"), protocol))
        assert out == b"hello\n" and err == b"oops\n", (protocol, out, err)
        assert status.get("status") == "Failure" and "2" in json.dumps(status)

    url = env.rs.PortForward(pb.PortForwardRequest(pod_sandbox_id=pod, port=[8080]), timeout=30).url
    got = asyncio.run(_ws_port_forward(url.replace("http://", "ws://"), 8080))
    assert b"pong" in got


async def _ws_port_forward(url: str, port: int) -> bytes:
    import aiohttp

    data = bytearray()
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url}?ports={port}", protocols=["v4.channel.k8s.io"]) as ws:
            await ws.send_bytes(b"\x00ping\n")
            async with asyncio.timeout(15):
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        break
                    ch, payload = msg.data[0], msg.data[1:]
                    if (
                        ch == 0
                        and len(payload) >= 2
                        and not data
                        and payload == struct.pack("<H", port)
                    ):
                        continue  # the port announcement
                    if ch == 0:
                        data += payload
                        if b"pong" in data:
                            break
    return bytes(data)


def test_restart_keeps_running_container(env: Env) -> None:
    pod, pcfg = env.run_pod("keep")
    running = env.create(pod, pcfg, "running", ["sleep 1000"])
    env.start_c(running)
    env.wait_state(running, pb.CONTAINER_RUNNING)
    env.restart()
    st = env.status(running).status
    assert st.state == pb.CONTAINER_RUNNING
    r = env.exec_sync(running, ["echo", "alive"])
    assert r.stdout == b"alive\n"
    env.rs.StopContainer(pb.StopContainerRequest(container_id=running, timeout=1), timeout=60)
    st = env.status(running).status
    assert st.state == pb.CONTAINER_EXITED and st.exit_code in (137, 143)


def test_restart_records_exit_of_container_that_died_meanwhile(env: Env) -> None:
    pod, pcfg = env.run_pod("died")
    dying = env.create(pod, pcfg, "dying", ["sleep 3; exit 7"])
    env.start_c(dying)
    env.wait_state(dying, pb.CONTAINER_RUNNING)
    assert env.daemon.stop() == 0
    time.sleep(4)
    env.start()
    st = env.wait_state(dying, pb.CONTAINER_EXITED, timeout=10)
    assert st.exit_code == 7 and st.reason == "Error"


def test_bad_inputs(env: Env) -> None:
    pod, pcfg = env.run_pod("bad")
    with pytest.raises(grpc.RpcError) as exc:
        env.create("nosuchpod", pcfg, "c", ["true"])
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as exc:
        env.create(pod, pcfg, "c", ["true"], image="docker.io/library/nosuchimage:1")
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    env.create(pod, pcfg, "dup", ["true"])
    with pytest.raises(grpc.RpcError) as exc:
        env.create(pod, pcfg, "dup", ["true"])
    assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS
