"""NRI inside the CRI of the real daemon: ``[plugins."io.containerd.nri.v1.nri"]`` with its
socket and plugin dirs under the test dir, runc, the test CNI network, busybox + pause from
a local docker-registry, and the NRI test plugin (``tests/core/nri/nri_test_plugin.py``,
built on :mod:`pycontainerd.core.nri.stub`) run both as an external process over the socket
and as a pre-installed ``NN-name`` executable from ``plugin_path``.

Pinned here: Synchronize lists the pods that exist when a plugin connects; adjustments of
both plugins (env, annotations, a bind mount of a host dir, the memory limit) reach the
running container; every lifecycle event reaches the plugins; two plugins setting the same
field make CreateContainer fail naming both; a plugin that sleeps past
``plugin_request_timeout`` and one that crashes are dropped, and CreateContainer still
succeeds within the timeout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cni as cni_support
import cri as cri_support
import grpc
import nritest
import pytest
from cri import CRIClient, pb
from daemon import Daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]

MEMORY_LIMIT = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def images(registry: Any, pause: Any, busybox: Any) -> dict[str, str]:
    registry.push(pause, repository="pause", tag="3.10")
    registry.push(busybox, repository="busybox", tag="latest")
    return {"pause": registry.ref("pause", "3.10"), "busybox": registry.ref("busybox", "latest")}


_events = nritest.events


def _wait_for(what: str, fn: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Env(cri_support.CRIDaemon):
    """A daemon with NRI configured under ``base``; ``preinstalled`` maps ``NN-name`` to the
    plugin's settings (its config file)."""

    def __init__(
        self,
        base: Path,
        network: cni_support.TestNetwork,
        registry: Any,
        images: dict[str, str],
        *,
        request_timeout: str = "2s",
        disable: bool = False,
        preinstalled: dict[str, dict[str, Any]] | None = None,
        nri_config: str = "",
        runtime_config: str = "",
    ) -> None:
        self.base = base
        self.busybox = images["busybox"]
        self.socket = base / "nri" / "nri.sock"
        self.plugin_dir = base / "nri" / "plugins"
        self.conf_dir = base / "nri" / "conf.d"
        self.plugin_dir.mkdir(parents=True)
        self.conf_dir.mkdir(parents=True)
        for name, settings in (preinstalled or {}).items():
            nritest.install(self.plugin_dir, self.conf_dir, name, settings)
        nri = f"""
[plugins."io.containerd.nri.v1.nri"]
  disable = {str(disable).lower()}
  socket_path = "{self.socket}"
  plugin_path = "{self.plugin_dir}"
  plugin_config_path = "{self.conf_dir}"
  plugin_registration_timeout = "5s"
  plugin_request_timeout = "{request_timeout}"
{nri_config}"""
        config = cri_support.daemon_config(
            base, network, registry, images["pause"], runtime=runtime_config, extra=nri
        )
        env = cri_support.daemon_env()
        self.daemon = Daemon(base / "d", config=config, env=env)
        self.cri: CRIClient | None = None
        self.pods: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> Env:
        super().start()
        self.cri.pull(self.busybox)
        return self

    def external(
        self, name: str, index: str, **settings: Any
    ) -> tuple[subprocess.Popen[bytes], Path]:
        """Start the test plugin as an external process on the socket; (process, its log)."""
        log = self.base / f"{index}-{name}.events"
        settings = {"name": name, "index": index, "socket": str(self.socket), "log": str(log)} | (
            settings
        )
        out = open(self.base / f"{index}-{name}.out", "ab")
        proc = subprocess.Popen(nritest.command(settings), stdout=out, stderr=out)
        out.close()
        self.procs.append(proc)
        return proc, log

    def pod_config(self, name: str) -> Any:
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="default"),
            hostname=f"{name}-host",
            log_directory=str(self.base / "logs" / name),
            labels={"app": name},
        )

    def run_pod(self, name: str, annotations: dict[str, str] | None = None) -> tuple[str, Any]:
        config = self.pod_config(name)
        config.annotations.update(annotations or {})
        resp = self.rs.RunPodSandbox(pb.RunPodSandboxRequest(config=config), timeout=120)
        self.pods.append(resp.pod_sandbox_id)
        return str(resp.pod_sandbox_id), config

    def create(self, pod: str, pod_config: Any, name: str, script: str, **extra: Any) -> str:
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name),
            image=pb.ImageSpec(image=self.busybox),
            command=["/bin/sh", "-c"],
            args=[script],
            log_path=f"{name}.log",
            **extra,
        )
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

    def exec_sync(self, id_: str, cmd: list[str]) -> Any:
        return self.rs.ExecSync(pb.ExecSyncRequest(container_id=id_, cmd=cmd), timeout=60)

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
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def make_env(network: Any, registry: Any, images: dict[str, str]) -> Iterator[Any]:
    envs: list[Env] = []
    bases: list[Path] = []

    def make(**kw: Any) -> Env:
        base = Path(tempfile.mkdtemp(prefix="crinri", dir="/tmp"))
        bases.append(base)
        e = Env(base, network, registry, images, **kw)
        envs.append(e)
        return e.start()

    try:
        yield make
    finally:
        for e in envs:
            e.close()
        if not os.environ.get("PYCONTAINERD_KEEP_TEST_DIRS"):
            for base in bases:
                shutil.rmtree(base, ignore_errors=True)


def _memory_limit(env: Env, cid: str) -> int:
    """The container's memory limit: from inside (cgroup v1 mounts its own memory cgroup),
    else from the host path of the spec's cgroupsPath (v1 or v2)."""
    r = env.exec_sync(cid, ["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"])
    if r.exit_code == 0 and r.stdout.strip().isdigit():
        return int(r.stdout)
    info = json.loads(env.status(cid, verbose=True).info["info"])
    path = info["runtimeSpec"]["linux"]["cgroupsPath"]
    for f in (
        f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes",
        f"/sys/fs/cgroup{path}/memory.max",
    ):
        if os.path.exists(f):
            return int(Path(f).read_text())
    raise AssertionError(f"no memory limit found for cgroup {path}")


def test_external_and_preinstalled_plugins_sync_and_adjust_a_running_container(
    make_env: Any,
) -> None:
    pre_base = Path(tempfile.mkdtemp(prefix="crinripre", dir="/tmp"))
    pre_log = pre_base / "10-pre.events"
    try:
        env = make_env(
            preinstalled={
                "10-pre": {
                    "log": str(pre_log),
                    "adjust": {"env": {"PRE_NRI": "from-pre"}, "annotations": {"nri.pre/x": "1"}},
                }
            }
        )
        # the pre-installed plugin was launched with fd 3 and the NRI_* environment
        configured = [e for e in _events(pre_log) if e["event"] == "Configure"]
        assert configured and configured[0]["env"] == {
            "NRI_PLUGIN_NAME": "pre",
            "NRI_PLUGIN_IDX": "10",
            "NRI_PLUGIN_SOCKET": "3",
        }
        assert [e["pods"] for e in _events(pre_log) if e["event"] == "Synchronize"] == [[]]

        pod, pcfg = env.run_pod("nri")
        assert any(e["event"] == "RunPodSandbox" and e["pod"] == pod for e in _events(pre_log))

        host_dir = env.base / "shared"
        host_dir.mkdir()
        (host_dir / "hello.txt").write_text("hello from the host\n")
        proc, ext_log = env.external(
            "ext",
            "20",
            adjust={
                "env": {"EXT_NRI": "from-ext"},
                "annotations": {"nri.ext/y": "2"},
                "mounts": [
                    {
                        "destination": "/nri-data",
                        "source": str(host_dir),
                        "type": "bind",
                        "options": ["rbind", "ro"],
                    }
                ],
                "memory_limit": MEMORY_LIMIT,
            },
        )
        # started after the pod exists: Synchronize lists it
        synced = _wait_for(
            "the external plugin's Synchronize",
            lambda: [e for e in _events(ext_log) if e["event"] == "Synchronize"],
        )
        assert synced[0]["pods"] == [pod] and synced[0]["containers"] == []

        cid = env.create(pod, pcfg, "adjusted", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
        env.start_c(cid)
        r = env.exec_sync(cid, ["env"])
        assert r.exit_code == 0
        lines = r.stdout.decode().splitlines()
        assert "PRE_NRI=from-pre" in lines and "EXT_NRI=from-ext" in lines
        r = env.exec_sync(cid, ["cat", "/nri-data/hello.txt"])
        assert r.stdout == b"hello from the host\n"
        assert env.exec_sync(cid, ["touch", "/nri-data/x"]).exit_code != 0  # ro
        assert _memory_limit(env, cid) == MEMORY_LIMIT
        spec = json.loads(env.status(cid, verbose=True).info["info"])["runtimeSpec"]
        assert spec["annotations"]["nri.pre/x"] == "1"
        assert spec["annotations"]["nri.ext/y"] == "2"
        assert spec["linux"]["resources"]["memory"]["limit"] == MEMORY_LIMIT

        # each plugin saw the container as the previous one left it
        ext_create = [e for e in _events(ext_log) if e["event"] == "CreateContainer"]
        assert ext_create[0]["container"] == cid and ext_create[0]["pod"] == pod
        assert "PRE_NRI=from-pre" in ext_create[0]["env"]

        env.rs.UpdateContainerResources(
            pb.UpdateContainerResourcesRequest(
                container_id=cid, linux=pb.LinuxContainerResources(cpu_shares=512)
            ),
            timeout=60,
        )
        env.rs.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=10), timeout=60)
        env.rs.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)
        env.rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
        env.rs.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)

        want = [
            "CreateContainer",
            "PostCreateContainer",
            "StartContainer",
            "PostStartContainer",
            "UpdateContainer",
            "PostUpdateContainer",
            "StopContainer",
            "RemoveContainer",
            "StopPodSandbox",
            "RemovePodSandbox",
        ]
        for log in (pre_log, ext_log):
            got = [e["event"] for e in _events(log) if e["event"] in want]
            assert got == want, (log.name, got)
        assert proc.poll() is None  # still connected
    finally:
        shutil.rmtree(pre_base, ignore_errors=True)


def test_two_plugins_setting_the_memory_limit_fail_create_naming_both(make_env: Any) -> None:
    env = make_env()
    pod, pcfg = env.run_pod("conflict")
    logs = []
    for name, index in (("alpha", "30"), ("beta", "40")):
        _proc, log = env.external(name, index, adjust={"memory_limit": MEMORY_LIMIT})
        logs.append(log)
    for log in logs:
        _wait_for(log.name, lambda log=log: any(e["event"] == "Synchronize" for e in _events(log)))
    with pytest.raises(grpc.RpcError) as exc:
        env.create(pod, pcfg, "conflicted", "sleep 100")
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = exc.value.details() or ""
    assert '"30-alpha"' in details and '"40-beta"' in details, details
    assert "MemLimit" in details
    # nothing of the failed container is left
    listed = env.rs.ListContainers(pb.ListContainersRequest(), timeout=30).containers
    assert list(listed) == []


def test_a_plugin_past_the_request_timeout_and_a_crashing_plugin_are_dropped(
    make_env: Any,
) -> None:
    env = make_env(request_timeout="1s")
    pod, pcfg = env.run_pod("drops")
    t0 = time.monotonic()
    env.create(pod, pcfg, "baseline", "sleep 100")
    baseline = time.monotonic() - t0

    slow, slow_log = env.external("slow", "30", sleep=30)
    crash, crash_log = env.external("crash", "40", crash=True)
    for log in (slow_log, crash_log):
        _wait_for(log.name, lambda log=log: any(e["event"] == "Synchronize" for e in _events(log)))

    t0 = time.monotonic()
    cid = env.create(pod, pcfg, "survivor", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    took = time.monotonic() - t0
    assert took < baseline + 1.0 + 3.0, (took, baseline)
    assert any(e["event"] == "CreateContainer" for e in _events(slow_log))
    assert any(e["event"] == "CreateContainer" for e in _events(crash_log))
    assert crash.wait(10) == 3
    env.start_c(cid)
    assert env.status(cid).status.state == pb.CONTAINER_RUNNING

    # both are gone: the next create does not wait for them
    t0 = time.monotonic()
    env.create(pod, pcfg, "after", "sleep 100")
    assert time.monotonic() - t0 < baseline + 1.0, (time.monotonic() - t0, baseline)
    assert len([e for e in _events(slow_log) if e["event"] == "CreateContainer"]) == 1
    # the runtime closed the slow plugin's connection: it ends
    assert slow.wait(15) is not None


def test_with_nri_disabled_pods_and_containers_work_and_nothing_listens(make_env: Any) -> None:
    env = make_env(
        disable=True,
        preinstalled={"10-pre": {"adjust": {"env": {"PRE_NRI": "from-pre"}}}},
    )
    pod, pcfg = env.run_pod("plain")
    cid = env.create(pod, pcfg, "plain", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    env.start_c(cid)
    r = env.exec_sync(cid, ["env"])
    assert r.exit_code == 0 and b"PRE_NRI" not in r.stdout
    assert not env.socket.exists()
    env.rs.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=10), timeout=60)
    env.rs.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)


def test_default_validator_refuses_injected_hooks_and_missing_required_plugins(
    make_env: Any,
) -> None:
    env = make_env(
        nri_config="""[plugins."io.containerd.nri.v1.nri".default_validator]
  enable = true
  reject_oci_hook_adjustment = true
  tolerate_missing_plugins_annotation = "tolerate-missing.example.com"
"""
    )
    _proc, log = env.external("hooker", "30", adjust={"hooks": True}, events="createcontainer")
    _wait_for("hooker", lambda: any(e["event"] == "Synchronize" for e in _events(log)))
    pod, pcfg = env.run_pod("validated")
    with pytest.raises(grpc.RpcError) as exc:
        env.create(pod, pcfg, "hooked", "sleep 100")
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = exc.value.details() or ""
    assert 'validator "00-default-validator" rejected container adjustment' in details, details
    assert 'plugin "30-hooker" attempted restricted OCI hook injection' in details, details
    listed = env.rs.ListContainers(pb.ListContainersRequest(), timeout=30).containers
    assert list(listed) == []

    # pods that require a plugin nobody runs: refused, unless they tolerate missing ones
    env.procs[0].kill()
    env.procs[0].wait()
    needs = {"required-plugins.noderesource.dev/container.needy": "- audit\n"}
    pod, pcfg = env.run_pod("needs", needs)
    with pytest.raises(grpc.RpcError) as exc:
        env.create(pod, pcfg, "needy", "sleep 100")
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert 'required plugin "audit" not present' in (exc.value.details() or "")
    env.create(pod, pcfg, "other", "sleep 100")  # the annotation names one container
    tolerant = {**needs, "tolerate-missing.example.com/pod": "true"}
    pod, pcfg = env.run_pod("tolerant", tolerant)
    cid = env.create(pod, pcfg, "needy", "sleep 100")
    assert env.status(cid).status.state == pb.CONTAINER_CREATED


def test_update_pod_sandbox_resources_reaches_plugins(make_env: Any) -> None:
    env = make_env()
    _proc, log = env.external("watcher", "30")
    _wait_for("watcher", lambda: any(e["event"] == "Synchronize" for e in _events(log)))
    pod, _pcfg = env.run_pod("resized")
    env.rs.UpdatePodSandboxResources(
        pb.UpdatePodSandboxResourcesRequest(
            pod_sandbox_id=pod,
            overhead=pb.LinuxContainerResources(cpu_shares=10),
            resources=pb.LinuxContainerResources(memory_limit_in_bytes=MEMORY_LIMIT),
        ),
        timeout=30,
    )
    _wait_for("post update", lambda: len([e for e in _events(log) if "Update" in e["event"]]) == 2)
    got = [e for e in _events(log) if "Update" in e["event"]]
    assert got[0] == {
        **got[0],
        "event": "UpdatePodSandbox",
        "pod": pod,
        "memory_limit": MEMORY_LIMIT,
        "overhead_cpu_shares": 10,
    }
    assert got[1]["event"] == "PostUpdatePodSandbox" and got[1]["pod"] == pod


def test_cdi_devices_from_the_cri_field_annotations_and_an_nri_plugin(make_env: Any) -> None:
    spec_dir = Path(tempfile.mkdtemp(prefix="cdi", dir="/tmp"))
    try:
        (spec_dir / "test.yaml").write_text(
            "cdiVersion: 0.6.0\n"
            "kind: pycontainerd.test/device\n"
            "containerEdits:\n  env: [CDI_VENDOR=test]\n"
            "devices:\n"
            "- name: 'null'\n"
            "  containerEdits:\n"
            "    env: [CDI_NULL=1]\n"
            "    deviceNodes: [{path: /dev/cdi-null, hostPath: /dev/null}]\n"
            "- name: zero\n"
            "  containerEdits:\n"
            "    deviceNodes: [{path: /dev/cdi-zero, hostPath: /dev/zero}]\n"
            "- name: full\n"
            "  containerEdits:\n"
            "    deviceNodes: [{path: /dev/cdi-full, hostPath: /dev/full}]\n"
        )
        env = make_env(runtime_config=f'  cdi_spec_dirs = ["{spec_dir}"]\n')
        _proc, log = env.external(
            "cdi", "30", adjust={"cdi_devices": ["pycontainerd.test/device=full"]}
        )
        _wait_for("cdi plugin", lambda: any(e["event"] == "Synchronize" for e in _events(log)))
        pod, pcfg = env.run_pod("cdi")
        cid = env.create(
            pod,
            pcfg,
            "devices",
            "sleep 100",
            CDI_devices=[pb.CDIDevice(name="pycontainerd.test/device=null")],
            annotations={"cdi.k8s.io/extra": "pycontainerd.test/device=zero"},
        )
        env.start_c(cid)
        r = env.exec_sync(
            cid, ["/bin/sh", "-c", "ls /dev/cdi-null /dev/cdi-zero /dev/cdi-full; env"]
        )
        out = r.stdout.decode()
        assert r.exit_code == 0, (out, r.stderr)
        for line in ("/dev/cdi-null", "/dev/cdi-zero", "/dev/cdi-full", "CDI_NULL=1"):
            assert line in out.splitlines(), out
        assert "CDI_VENDOR=test" in out
        # writing to the injected /dev/null works: the cgroup allows the device
        w = env.exec_sync(cid, ["/bin/sh", "-c", "echo x > /dev/cdi-null && echo ok"])
        assert w.stdout.decode().strip() == "ok", w.stderr

        with pytest.raises(grpc.RpcError) as exc:
            env.create(
                pod,
                pcfg,
                "missing",
                "sleep 100",
                CDI_devices=[pb.CDIDevice(name="pycontainerd.test/device=nosuch")],
            )
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
        assert "pycontainerd.test/device=nosuch" in (exc.value.details() or "")
        names = [
            c.metadata.name
            for c in env.rs.ListContainers(pb.ListContainersRequest(), timeout=30).containers
        ]
        assert names == ["devices"]
    finally:
        shutil.rmtree(spec_dir, ignore_errors=True)


def test_nri_metrics_are_served_by_the_metrics_server(make_env: Any) -> None:
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    metrics = f'\n[plugins."io.containerd.server.v1.metrics"]\n  address = "127.0.0.1:{port}"\n'
    env = make_env(nri_config=metrics)
    _proc, log = env.external("counted", "30", adjust={"env": {"A": "1"}})
    _wait_for("counted", lambda: any(e["event"] == "Synchronize" for e in _events(log)))
    pod, pcfg = env.run_pod("metered")
    env.create(pod, pcfg, "c", "sleep 100")
    url = f"http://127.0.0.1:{port}/v1/metrics"
    body = urllib.request.urlopen(url, timeout=10).read().decode()
    assert "containerd_nri_active_plugins_total 1" in body
    assert (
        'containerd_nri_plugin_invocations_total{plugin="30-counted",operation="CreateContainer",'
        'status="success",error=""} 1'
    ) in body
    latency = "containerd_nri_plugin_latency_seconds_count"
    assert f'{latency}{{plugin="30-counted",operation="RunPodSandbox"}} 1' in body


def test_updated_pod_resources_are_the_pods_for_nri_and_survive_a_restart(make_env: Any) -> None:
    env = make_env()
    _proc, log = env.external("podres", "30")
    _wait_for("podres", lambda: any(e["event"] == "Synchronize" for e in _events(log)))
    pod, pcfg = env.run_pod("resized2")
    env.rs.UpdatePodSandboxResources(
        pb.UpdatePodSandboxResourcesRequest(
            pod_sandbox_id=pod,
            resources=pb.LinuxContainerResources(memory_limit_in_bytes=MEMORY_LIMIT),
        ),
        timeout=30,
    )
    env.create(pod, pcfg, "before", "sleep 100")
    created = [e for e in _events(log) if e["event"] == "CreateContainer"]
    assert created[-1]["pod_memory"] == MEMORY_LIMIT

    env.restart()  # the plugin's connection goes with the daemon: connect another
    _proc2, log2 = env.external("podres2", "31")
    _wait_for("podres2", lambda: any(e["event"] == "Synchronize" for e in _events(log2)))
    synced = [e for e in _events(log2) if e["event"] == "Synchronize"][0]
    assert pod in synced["pods"]
    env.create(pod, pcfg, "after", "sleep 100")
    created = [e for e in _events(log2) if e["event"] == "CreateContainer"]
    assert created[-1]["pod_memory"] == MEMORY_LIMIT  # recovered from the sandbox record
