"""CRI benchmark: the pod lifecycle and List calls with many containers, through the generated
``runtime.v1`` stubs (the same client for both daemons), side by side in the same run:

- ``containerd``: Debian's containerd 1.6 (its own root/state/socket, a version-2 config with
  ``[plugins."io.containerd.grpc.v1.cri"]``: sandbox_image = the locally imported pause image,
  the bench's CNI conflist, bin_dir /usr/lib/cni, restrict_oom_score_adj) and
  ``containerd-shim-runc-v2``;
- ``pycontainerd/runc``: pycontainerd with the same CNI network and pause image, default
  handler (``io.containerd.runc.v2``, containerd's shim);
- ``pycontainerd/pyrunc`` (unless ``--skip-pyrunc``): pycontainerd with the runtime handler
  ``pyrunc`` (``io.containerd.pyrunc.v2``, our shim).

Images (pause, busybox) are built locally (tests/support/images.py) and imported into
``k8s.io`` with Debian's ``ctr``; no network. The CNI network is tests/support/cni.py's
(bridge + host-local + portmap on a free private /24; both daemons share it), removed at the
end with everything it left.

Lifecycle, per round (one warm-up round, then ``--runs`` rounds, configurations interleaved
round-robin): RunPodSandbox, CreateContainer (busybox ``true``), StartContainer, wait for exit
(ContainerStatus polled every 5 ms), StopContainer + RemoveContainer, StopPodSandbox +
RemovePodSandbox.

Lists: ``--containers`` containers created (not started) over ``--pods`` ready pods (8 client
threads), then ``--list-runs`` calls each of ListContainers (all), ListContainers filtered by
one pod, ListPodSandbox; the pods are removed afterwards (which removes their containers).

    sudo .venv/bin/python -P bench/cri.py [--runs 15] [--containers 500] [--pods 10]
                                          [--list-runs 20] [--skip-lists] [--skip-pyrunc]
                                          [--json out.json]

Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "support"))

import cni  # noqa: E402
import images  # noqa: E402
from daemon import Daemon  # noqa: E402

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as pb  # noqa: E402
from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2_grpc as pb_grpc  # noqa: E402

CTR = "/usr/bin/ctr"
ENV = {**os.environ, "CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS": "1"}
PAUSE = "registry.k8s.io/pause:3.10"
BUSYBOX = "docker.io/library/busybox:latest"
VENV_BIN = str(Path(sys.executable).parent)
SEARCH_PATH = ":".join(
    [VENV_BIN, os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"]
)


# --------------------------------------------------------------------------- daemons


class Containerd:
    """Debian's containerd 1.6 with CRI, its own root/state/socket."""

    def __init__(self, base: Path, net: cni.TestNetwork) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.address = str(base / "containerd.sock")
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        cfg = base / "config.toml"
        cfg.write_text(
            f"""version = 2
root = "{base}/root"
state = "{base}/state"
[grpc]
  address = "{self.address}"
[ttrpc]
  address = "{self.address}.ttrpc"
[{cri}]
  disable_tcp_service = true
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
[{cri}.cni]
  bin_dir = "{net.bin_dir}"
  conf_dir = "{net.conf_dir}"
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
"""
        )
        self.log = open(base / "containerd.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["containerd", "--config", str(cfg)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PATH": SEARCH_PATH},
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Pycontainerd:
    def __init__(self, base: Path, net: cni.TestNetwork) -> None:
        rt = 'plugins."io.containerd.cri.v1.runtime"'
        config = f"""version = 4
[{rt}]
  restrict_oom_score_adj = true
[{rt}.cni]
  bin_dirs = ["{net.bin_dir}"]
  conf_dir = "{net.conf_dir}"
[{rt}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{rt}.containerd.runtimes.pyrunc]
  runtime_type = "io.containerd.pyrunc.v2"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{PAUSE}"
"""
        self.daemon = Daemon(
            base, config=config, env={"PATH": SEARCH_PATH}, args=["--log-level", "info"]
        )
        self.daemon.start(timeout=60)
        self.address = self.daemon.address

    def stop(self) -> None:
        self.daemon.stop(timeout=30)


def ctr(address: str, *args: str) -> None:
    r = subprocess.run(
        [CTR, "-a", address, "-n", "k8s.io", *args], capture_output=True, env=ENV, timeout=300
    )
    if r.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args)} failed: {r.stderr.decode()[-2000:]}")


class CRI:
    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(f"unix://{address}")
        self.rs = pb_grpc.RuntimeServiceStub(self.channel)
        deadline = time.monotonic() + 60
        while True:
            try:
                st = self.rs.Status(pb.StatusRequest(), timeout=5)
                if all(c.status for c in st.status.conditions):
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRI on {address} not ready")
            time.sleep(0.1)

    def close(self) -> None:
        self.channel.close()


# --------------------------------------------------------------------------- workloads


def pod_config(name: str, logs: Path) -> Any:
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="bench"),
        hostname=name[:60],
        log_directory=str(logs / name),
        linux=pb.LinuxPodSandboxConfig(),
    )


def container_config(name: str, args: list[str]) -> Any:
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name),
        image=pb.ImageSpec(image=BUSYBOX),
        command=args,
        log_path=f"{name}.log",
        linux=pb.LinuxContainerConfig(),
    )


def lifecycle_once(c: CRI, name: str, handler: str, logs: Path) -> dict[str, float]:
    rs = c.rs
    t: dict[str, float] = {}
    pcfg = pod_config(name, logs)
    t0 = time.perf_counter()
    pod = rs.RunPodSandbox(
        pb.RunPodSandboxRequest(config=pcfg, runtime_handler=handler), timeout=120
    ).pod_sandbox_id
    t1 = time.perf_counter()
    cid = rs.CreateContainer(
        pb.CreateContainerRequest(
            pod_sandbox_id=pod, config=container_config("c", ["/bin/true"]), sandbox_config=pcfg
        ),
        timeout=120,
    ).container_id
    t2 = time.perf_counter()
    rs.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=120)
    t3 = time.perf_counter()
    deadline = t3 + 60
    while (
        rs.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=30).status.state
        != pb.CONTAINER_EXITED
    ):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{name}: container never exited")
        time.sleep(0.005)
    t4 = time.perf_counter()
    rs.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0), timeout=60)
    rs.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)
    t5 = time.perf_counter()
    rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    rs.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    t6 = time.perf_counter()
    t["RunPodSandbox"] = t1 - t0
    t["CreateContainer"] = t2 - t1
    t["StartContainer"] = t3 - t2
    t["wait for exit"] = t4 - t3
    t["Stop+RemoveContainer"] = t5 - t4
    t["Stop+RemovePodSandbox"] = t6 - t5
    t["total"] = t6 - t0
    return t


def bench_lifecycle(
    targets: list[tuple[str, CRI, str]], runs: int, logs: Path
) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in targets}
    for r in range(runs + 1):
        for label, c, handler in targets:
            t = lifecycle_once(c, f"life-{label.replace('/', '-')}-{r}", handler, logs)
            if r:  # round 0 is the warm-up
                out[label].append(t)
        if r:
            print(
                f"  round {r}: "
                + ", ".join(f"{lb} {out[lb][-1]['total'] * 1e3:.0f} ms" for lb, _, _ in targets),
                flush=True,
            )
    return out


def timed(fn: Callable[[], Any], runs: int) -> list[float]:
    xs = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        xs.append(time.perf_counter() - t0)
    return xs


def bench_lists(
    label: str, c: CRI, handler: str, n: int, npods: int, runs: int, logs: Path
) -> dict[str, Any]:
    rs = c.rs
    pods: list[tuple[str, Any]] = []
    res: dict[str, Any] = {}
    try:
        for i in range(npods):
            pcfg = pod_config(f"list-{label.replace('/', '-')}-{i}", logs)
            pid = rs.RunPodSandbox(
                pb.RunPodSandboxRequest(config=pcfg, runtime_handler=handler), timeout=120
            ).pod_sandbox_id
            pods.append((pid, pcfg))

        def create(i: int) -> None:
            pid, pcfg = pods[i % npods]
            rs.CreateContainer(
                pb.CreateContainerRequest(
                    pod_sandbox_id=pid,
                    config=container_config(f"c{i}", ["sleep", "1000"]),
                    sandbox_config=pcfg,
                ),
                timeout=300,
            )

        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            list(ex.map(create, range(n)))
        res["create all (8 threads)"] = time.perf_counter() - t0
        got = len(rs.ListContainers(pb.ListContainersRequest(), timeout=60).containers)
        assert got == n, f"{label}: {got} containers listed, {n} created"
        one = pb.ListContainersRequest(filter=pb.ContainerFilter(pod_sandbox_id=pods[0][0]))
        res["ListContainers"] = timed(
            lambda: rs.ListContainers(pb.ListContainersRequest(), timeout=60), runs
        )
        res["ListContainers (one pod)"] = timed(lambda: rs.ListContainers(one, timeout=60), runs)
        res["ListPodSandbox"] = timed(
            lambda: rs.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=60), runs
        )
    finally:
        t0 = time.perf_counter()
        for pid, _ in pods:
            rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pid), timeout=300)
            rs.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pid), timeout=600)
        res["remove pods with their containers"] = time.perf_counter() - t0
    return res


def ms(x: float) -> str:
    return f"{x * 1e3:.1f} ms"


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--containers", type=int, default=500)
    ap.add_argument("--pods", type=int, default=10)
    ap.add_argument("--list-runs", type=int, default=20)
    ap.add_argument("--skip-lists", action="store_true")
    ap.add_argument("--skip-lifecycle", action="store_true")
    ap.add_argument("--skip-pyrunc", action="store_true")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/cri.py: run as root", file=sys.stderr)
        return 1
    bin_dir = cni.plugin_dir()
    if bin_dir is None:
        print("bench/cri.py: containernetworking-plugins missing", file=sys.stderr)
        return 1

    base = Path(tempfile.mkdtemp(prefix="bench-cri-", dir="/tmp"))
    net = cni.TestNetwork(base / "cni", bin_dir)
    net.write(net.conflist())
    logs = base / "logs"
    cache = Path(os.environ.get("PYCONTAINERD_IMAGE_CACHE", "/tmp/pycontainerd-bench-images"))
    archives = []
    for img, name in ((images.pause_image(cache), "pause"), (images.busybox_image(cache), "bb")):
        archives.append(img.oci_archive(base / f"{name}.tar"))

    daemons: list[Any] = []
    clients: list[CRI] = []
    results: dict[str, Any] = {"lifecycle": {}, "lists": {}}
    try:
        cd = Containerd(base / "containerd", net)
        daemons.append(cd)
        py = Pycontainerd(base / "pycontainerd", net)
        daemons.append(py)
        for d in (cd, py):
            c = CRI(d.address)
            clients.append(c)
            for a in archives:
                ctr(d.address, "images", "import", str(a))
        ccd, cpy = clients
        targets = [("containerd", ccd, ""), ("pycontainerd/runc", cpy, "")]
        if not args.skip_pyrunc:
            targets.append(("pycontainerd/pyrunc", cpy, "pyrunc"))

        if not args.skip_lifecycle:
            print(f"pod lifecycle: {args.runs} rounds after a warm-up", flush=True)
            life = bench_lifecycle(targets, args.runs, logs)
            results["lifecycle"] = life
            phases = list(next(iter(life.values()))[0])
            ref = {p: med([t[p] for t in life["containerd"]]) for p in phases}
            print("\n| phase | " + " | ".join(lb for lb, _, _ in targets) + " |")
            print("| --- |" + " ---: |" * len(targets))
            for p in phases:
                cells = []
                for lb, _, _ in targets:
                    m = med([t[p] for t in life[lb]])
                    cells.append(f"{m * 1e3:.1f}" + (f" ({m / ref[p]:.2f}x)" if ref[p] else ""))
                print(f"| {p} | " + " | ".join(cells) + " |")

        if not args.skip_lists:
            list_targets = [("containerd", ccd, ""), ("pycontainerd/runc", cpy, "")]
            for lb, c, h in list_targets:
                print(
                    f"\n{lb}: creating {args.containers} containers in {args.pods} pods",
                    flush=True,
                )
                results["lists"][lb] = bench_lists(
                    lb, c, h, args.containers, args.pods, args.list_runs, logs
                )
            ref_l = results["lists"]["containerd"]
            print(
                f"\n| with {args.containers} containers in {args.pods} pods | "
                + " | ".join(lb for lb, _, _ in list_targets)
                + " | ratio |"
            )
            print("| --- | ---: | ---: | ---: |")
            for key, v in ref_l.items():
                a = med(v) if isinstance(v, list) else v
                bv = results["lists"]["pycontainerd/runc"][key]
                b = med(bv) if isinstance(bv, list) else bv
                print(f"| {key} | {ms(a)} | {ms(b)} | {b / a:.2f}x |")
    finally:
        for c in clients:
            c.close()
        for d in reversed(daemons):
            d.stop()
        net.cleanup()
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
