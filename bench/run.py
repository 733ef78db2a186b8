"""Container run benchmark: ``run --rm busybox echo`` latency, its create/start/wait/delete
phases, and resident memory per running container, side by side in the same run:

- ``containerd/runc``: Debian's containerd (its own root/state/socket) with
  ``containerd-shim-runc-v2``;
- ``pycontainerd/runc``: pycontainerd with containerd's shim (``io.containerd.runc.v2``);
- ``pycontainerd/pyrunc``: pycontainerd with our shim (``io.containerd.pyrunc.v2``);
- ``containerd/pyrunc`` (``--with-containerd-pyrunc``): Debian's containerd driving our shim,
  which isolates the shim's cost from the daemon's.

Latency uses Debian's ``ctr`` as the client for every configuration (equal client cost), runs
interleaved round-robin after a warm-up so that load drift hits all alike. The phases go through
the gRPC API with a small Python client, identically against both daemons: Snapshots.Prepare +
Containers.Create, Tasks.Create, Tasks.Start, Tasks.Wait (the echo runs and its exit is
reported), Tasks.Delete, Containers.Delete + Snapshots.Remove.

Memory: 1, 10 and 50 ``sleep 1000`` containers (``ctr run -d``; "pod" rows: created through the
gRPC API with the same ``io.kubernetes.cri.sandbox-id`` annotation, so a grouping shim serves all
of them from one process), then the daemon's and every shim's VmRSS (/proc/PID/status) and PSS
(/proc/PID/smaps_rollup; shared pages split between sharers). Everything is removed afterwards.

    sudo .venv/bin/python -P bench/run.py [--runs 20] [--counts 1,10,50] [--skip-memory]
                                          [--skip-latency] [--with-containerd-pyrunc]
                                          [--also-shim LABEL=PATH] [--json out.json]

Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from google.protobuf import any_pb2

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "support"))

import images  # noqa: E402
from daemon import Daemon  # noqa: E402

from pycontainerd.api.containerd.services.containers.v1 import (  # noqa: E402
    containers_pb2,
    containers_pb2_grpc,
)
from pycontainerd.api.containerd.services.content.v1 import (  # noqa: E402
    content_pb2,
    content_pb2_grpc,
)
from pycontainerd.api.containerd.services.images.v1 import images_pb2, images_pb2_grpc  # noqa: E402
from pycontainerd.api.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc  # noqa: E402
from pycontainerd.api.containerd.services.namespaces.v1 import (  # noqa: E402
    namespace_pb2,
    namespace_pb2_grpc,
)
from pycontainerd.api.containerd.services.snapshots.v1 import (  # noqa: E402
    snapshots_pb2,
    snapshots_pb2_grpc,
)
from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc  # noqa: E402
from pycontainerd.core.runtime import spec as oci  # noqa: E402

CTR = "/usr/bin/ctr"
ENV = {**os.environ, "CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS": "1"}
NS = "bench"
IMAGE = "docker.io/library/busybox:latest"
RUNC = "io.containerd.runc.v2"
PYRUNC = "io.containerd.pyrunc.v2"
SNAPSHOTTER = "overlayfs"
POD_ANNOTATION = "io.kubernetes.cri.sandbox-id"
VENV_BIN = str(Path(sys.executable).parent)
#: shim binaries given with --also-shim, recognised as shims by path
EXTRA_SHIMS: set[bytes] = set()
SEARCH_PATH = ":".join(
    [VENV_BIN, os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"]
)


# --------------------------------------------------------------------------- daemons


class Containerd:
    """Debian's containerd with its own root/state/socket (CRI on, TCP streaming off)."""

    name = "containerd"

    def __init__(self, base: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.address = str(base / "containerd.sock")
        cfg = base / "config.toml"
        cfg.write_text(
            "version = 2\n"
            f'root = "{base}/root"\nstate = "{base}/state"\n'
            f'[grpc]\naddress = "{self.address}"\n'
            f'[ttrpc]\naddress = "{self.address}.ttrpc"\n'
            '[plugins."io.containerd.grpc.v1.cri"]\ndisable_tcp_service = true\n'
        )
        self.log = open(base / "containerd.log", "wb")
        self.proc = subprocess.Popen(
            ["containerd", "--config", str(cfg)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PATH": SEARCH_PATH},  # finds containerd-shim-pyrunc-v2 too
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = subprocess.run([CTR, "-a", self.address, "version"], capture_output=True, env=ENV)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("containerd did not start")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class Pycontainerd:
    name = "pycontainerd"

    def __init__(self, base: Path) -> None:
        self.daemon = Daemon(base, env={"PATH": SEARCH_PATH}, args=["--log-level", "info"])
        self.daemon.start()
        self.address = self.daemon.address

    @property
    def pid(self) -> int:
        assert self.daemon.proc is not None
        return self.daemon.proc.pid

    def stop(self) -> None:
        self.daemon.stop()


def ctr(address: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    r = subprocess.run([CTR, "-a", address, "-n", NS, *args], capture_output=True, env=ENV)
    if check and r.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args)} failed: {r.stderr.decode()[-2000:]}")
    return r


# --------------------------------------------------------------------------- gRPC client


def chain_id(diff_ids: tuple[str, ...]) -> str:
    chain = diff_ids[0]
    for d in diff_ids[1:]:
        chain = "sha256:" + hashlib.sha256(f"{chain} {d}".encode()).hexdigest()
    return chain


class Client:
    """Containers, Snapshots, Tasks against one daemon, in namespace ``bench``, under one
    lease (so nothing is collected between Prepare and Containers.Create)."""

    def __init__(self, address: str, parent: str) -> None:
        self.channel = grpc.insecure_channel(f"unix:{address}")
        self.containers = containers_pb2_grpc.ContainersStub(self.channel)
        self.snapshots = snapshots_pb2_grpc.SnapshotsStub(self.channel)
        self.tasks = tasks_pb2_grpc.TasksStub(self.channel)
        self.leases = leases_pb2_grpc.LeasesStub(self.channel)
        self.images = images_pb2_grpc.ImagesStub(self.channel)
        self.content = content_pb2_grpc.ContentStub(self.channel)
        self.namespaces = namespace_pb2_grpc.NamespacesStub(self.channel)
        self.parent = parent
        md = (("containerd-namespace", NS),)
        self.lease = self.leases.Create(leases_pb2.CreateRequest(id="bench-run"), metadata=md).lease
        self.md = (*md, ("containerd-lease", self.lease.id))

    def create_container(
        self,
        id: str,
        args: list[str],
        runtime: str,
        pod: str = "",  # noqa: A002
    ) -> list[snapshots_pb2.types_dot_mount__pb2.Mount]:  # type: ignore[name-defined]
        mounts = self.snapshots.Prepare(
            snapshots_pb2.PrepareSnapshotRequest(
                snapshotter=SNAPSHOTTER, key=id, parent=self.parent
            ),
            metadata=self.md,
        ).mounts
        annotations = {POD_ANNOTATION: pod} if pod else None
        type_url, value = oci.to_any(oci.default_spec(NS, id, args=args, annotations=annotations))
        self.containers.Create(
            containers_pb2.CreateContainerRequest(
                container=containers_pb2.Container(
                    id=id,
                    image=IMAGE,
                    runtime=containers_pb2.Container.Runtime(name=runtime),
                    spec=any_pb2.Any(type_url=type_url, value=value),
                    snapshotter=SNAPSHOTTER,
                    snapshot_key=id,
                )
            ),
            metadata=self.md,
        )
        return list(mounts)

    def create_task(self, id: str, mounts: list, stdio: tuple[str, str] = ("", "")) -> None:  # noqa: A002
        self.tasks.Create(
            tasks_pb2.CreateTaskRequest(
                container_id=id, rootfs=mounts, stdout=stdio[0], stderr=stdio[1]
            ),
            metadata=self.md,
        )

    def image_checks(self) -> None:
        """What ctr run reads before it creates anything: the image, the namespace (default
        snapshotter label), manifest and config blobs, the unpacked layer chain."""
        md = self.md[:1]
        img = self.images.Get(images_pb2.GetImageRequest(name=IMAGE), metadata=md).image
        self.namespaces.Get(namespace_pb2.GetNamespaceRequest(name=NS), metadata=md)
        digest = img.target.digest
        while True:
            self.content.Info(content_pb2.InfoRequest(digest=digest), metadata=md)
            blob = b"".join(
                r.data
                for r in self.content.Read(
                    content_pb2.ReadContentRequest(digest=digest), metadata=md
                )
            )
            doc = json.loads(blob)
            if "manifests" in doc:  # an index: take the first manifest
                digest = doc["manifests"][0]["digest"]
                continue
            break
        b"".join(
            r.data
            for r in self.content.Read(
                content_pb2.ReadContentRequest(digest=doc["config"]["digest"]), metadata=md
            )
        )
        self.snapshots.Stat(
            snapshots_pb2.StatSnapshotRequest(snapshotter=SNAPSHOTTER, key=self.parent), metadata=md
        )

    def task_mounts(self, id: str) -> list:  # noqa: A002
        self.containers.Get(containers_pb2.GetContainerRequest(id=id), metadata=self.md)
        return list(
            self.snapshots.Mounts(
                snapshots_pb2.MountsRequest(snapshotter=SNAPSHOTTER, key=id), metadata=self.md
            ).mounts
        )

    def start(self, id: str) -> None:  # noqa: A002
        self.tasks.Start(tasks_pb2.StartRequest(container_id=id), metadata=self.md)

    def wait_future(self, id: str):  # noqa: A002, ANN201
        return self.tasks.Wait.future(tasks_pb2.WaitRequest(container_id=id), metadata=self.md)

    def delete_task(self, id: str) -> None:  # noqa: A002
        self.tasks.Delete(tasks_pb2.DeleteTaskRequest(container_id=id), metadata=self.md)

    def delete_container(self, id: str) -> None:  # noqa: A002
        self.containers.Delete(containers_pb2.DeleteContainerRequest(id=id), metadata=self.md)
        self.snapshots.Remove(
            snapshots_pb2.RemoveSnapshotRequest(snapshotter=SNAPSHOTTER, key=id), metadata=self.md
        )

    def remove(self, id: str) -> None:  # noqa: A002
        """Kill, wait, delete the task (if any), the container and its snapshot."""
        try:
            fut = self.wait_future(id)
            self.tasks.Kill(
                tasks_pb2.KillRequest(container_id=id, signal=9, all=True), metadata=self.md
            )
            fut.result(timeout=30)
        except grpc.RpcError:
            pass
        for call in (self.delete_task, self.delete_container):
            try:
                call(id)
            except grpc.RpcError:
                pass

    def close(self) -> None:
        try:
            self.leases.Delete(leases_pb2.DeleteRequest(id=self.lease.id), metadata=self.md[:1])
        except grpc.RpcError:
            pass
        self.channel.close()


def phases_once(client: Client, id: str, runtime: str, fifo_dir: str) -> dict[str, float]:  # noqa: A002
    """One ``ctr run --rm`` done by hand, with ctr's calls, FIFO stdio included."""
    out: dict[str, float] = {}
    marks = [time.monotonic()]
    client.image_checks()
    marks.append(time.monotonic())
    lease = client.leases.Create(leases_pb2.CreateRequest(), metadata=client.md[:1]).lease
    client.create_container(id, ["echo", "hello"], runtime)
    client.leases.Delete(leases_pb2.DeleteRequest(id=lease.id), metadata=client.md[:1])
    marks.append(time.monotonic())
    fifos = (os.path.join(fifo_dir, f"{id}-stdout"), os.path.join(fifo_dir, f"{id}-stderr"))
    fds = []
    for f in fifos:
        os.mkfifo(f)
        fds.append(os.open(f, os.O_RDONLY | os.O_NONBLOCK))
    try:
        client.create_task(id, client.task_mounts(id), fifos)
        marks.append(time.monotonic())
        fut = client.wait_future(id)
        client.start(id)
        marks.append(time.monotonic())
        fut.result(timeout=60)
        marks.append(time.monotonic())
    finally:
        for fd in fds:
            os.close(fd)
        for f in fifos:
            os.unlink(f)
    client.delete_task(id)
    marks.append(time.monotonic())
    client.delete_container(id)
    marks.append(time.monotonic())
    names = [
        "image checks",
        "container create",
        "task create",
        "task start",
        "wait (exit seen)",
        "task delete",
        "container delete",
    ]
    for i, name in enumerate(names):
        out[name] = marks[i + 1] - marks[i]
    out["total"] = marks[-1] - marks[0]
    return out


# --------------------------------------------------------------------------- memory


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _ppid(pid: int) -> int:
    return _status_kib(pid, "PPid")


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            items = f.read().split(b"\0")
    except OSError:
        return {}
    out = {}
    for item in items:
        k, _, v = item.decode(errors="replace").partition("=")
        out[k] = v
    return out


def shim_pids(address: str, daemon_pid: int) -> list[int]:
    """Serving shims of a daemon: a ``containerd-shim`` command line with ``-address ADDR``,
    not a ``delete`` and not a ``start`` still running under the daemon (our shim's server is
    forked from ``start`` and keeps its command line), plus pyrunc's zygote and the shims it
    forked for this daemon."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if not any(b"containerd-shim" in a or a in EXTRA_SHIMS for a in argv[:2]):
            continue
        args = [a.decode(errors="replace") for a in argv]
        if [a for a in args if a][-1:] == ["zygote"]:
            # pyrunc's zygote and the shims it forked: their command line is the zygote's;
            # the daemon they serve is in their environment (the zygote's own is that of the
            # daemon whose start launched it)
            if _environ(int(entry)).get("GRPC_ADDRESS") == address:
                found.append(int(entry))
            continue
        if "-address" not in args or args[args.index("-address") + 1 :][:1] != [address]:
            continue
        if "delete" in args or ("start" in args and _ppid(int(entry)) == daemon_pid):
            continue
        found.append(int(entry))
    return found


def memory_of(daemon_pid: int, address: str) -> dict[str, float]:
    shims = shim_pids(address, daemon_pid)
    return {
        "daemon_rss_kib": _status_kib(daemon_pid, "VmRSS"),
        "daemon_pss_kib": _pss_kib(daemon_pid),
        "shims": len(shims),
        "shims_rss_kib": sum(_status_kib(p, "VmRSS") for p in shims),
        "shims_pss_kib": sum(_pss_kib(p) for p in shims),
    }


# --------------------------------------------------------------------------- driver


def median_ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


def bench_latency(targets: list[tuple[str, object, str]], runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name, _, _ in targets}
    for i in range(runs + 1):
        for name, d, runtime in targets:
            cid = f"lat-{i}"
            t0 = time.monotonic()
            r = ctr(
                d.address,
                "run",
                "--rm",
                "--runtime",
                runtime,
                IMAGE,
                cid,  # type: ignore[attr-defined]
                "echo",
                "hello",
            )
            dt = time.monotonic() - t0
            if r.stdout != b"hello\n":
                raise RuntimeError(f"{name}: unexpected output {r.stdout!r}")
            if i:  # the first round is the warm-up
                times[name].append(dt)
    return times


def bench_phases(
    targets: list[tuple[str, object, str]], clients: dict[str, Client], runs: int, fifo_dir: str
) -> dict[str, dict[str, list[float]]]:
    res: dict[str, dict[str, list[float]]] = {name: {} for name, _, _ in targets}
    for i in range(runs + 1):
        for name, d, runtime in targets:
            out = phases_once(
                clients[d.name],
                f"ph-{i}",
                runtime,  # type: ignore[attr-defined]
                fifo_dir,
            )
            if i:
                for k, v in out.items():
                    res[name].setdefault(k, []).append(v)
    return res


def bench_memory(
    name: str, d: object, runtime: str, client: Client, counts: list[int], pod: bool
) -> list[dict[str, float]]:
    address, pid = d.address, d.pid  # type: ignore[attr-defined]
    idle = memory_of(pid, address)
    rows = []
    started: list[str] = []
    try:
        for n in counts:
            while len(started) < n:
                cid = f"mem-{len(started)}"
                if pod:
                    mounts = client.create_container(cid, ["sleep", "1000"], runtime, pod="pod0")
                    started.append(cid)
                    client.create_task(cid, mounts)
                    client.start(cid)
                else:
                    started.append(cid)
                    ctr(address, "run", "-d", "--runtime", runtime, IMAGE, cid, "sleep", "1000")
            time.sleep(1.0)
            m = memory_of(pid, address)
            row = {
                "config": name,
                "containers": n,
                **m,
                "idle_daemon_rss_kib": idle["daemon_rss_kib"],
                "idle_daemon_pss_kib": idle["daemon_pss_kib"],
            }
            for kind in ("rss", "pss"):
                total = m[f"daemon_{kind}_kib"] + m[f"shims_{kind}_kib"]
                row[f"total_{kind}_kib"] = total
                row[f"per_container_{kind}_kib"] = (total - idle[f"daemon_{kind}_kib"]) / n
            rows.append(row)
            print(
                f"  {name:<28} n={n:<3} shims={m['shims']:<3} "
                f"RSS daemon {m['daemon_rss_kib'] / 1024:6.1f} MiB shims "
                f"{m['shims_rss_kib'] / 1024:7.1f} MiB | PSS daemon "
                f"{m['daemon_pss_kib'] / 1024:6.1f} shims {m['shims_pss_kib'] / 1024:7.1f} | "
                f"per container RSS {row['per_container_rss_kib'] / 1024:5.2f} "
                f"PSS {row['per_container_pss_kib'] / 1024:5.2f} MiB",
                flush=True,
            )
    finally:
        for cid in started:
            client.remove(cid)
    return rows


def _table(title: str, rows: Iterator[tuple[str, float, float]]) -> None:
    print(title)
    for name, med, ratio in rows:
        print(f"  {name:<28} median {med:8.1f} ms   ratio {ratio:5.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--counts", default="1,10,50")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--with-containerd-pyrunc", action="store_true")
    ap.add_argument(
        "--also-shim",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="also run pycontainerd with this shim binary (an absolute path as the "
        "runtime), e.g. an older build of ours for a before/after comparison",
    )
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",") if c]

    work = Path(tempfile.mkdtemp(prefix="bench-run-", dir="/tmp"))
    bb = images.busybox_image(images.default_cache_dir())
    archive = bb.oci_archive(work / "busybox.tar")
    parent = chain_id(bb.diff_ids)
    ctd = Containerd(work / "containerd")
    pyd: Pycontainerd | None = None
    clients: dict[str, Client] = {}
    out: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "loadavg": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    try:
        pyd = Pycontainerd(work / "py")
        for d in (ctd, pyd):
            ctr(d.address, "images", "import", str(archive))
            clients[d.name] = Client(d.address, parent)
        targets: list[tuple[str, object, str]] = [
            ("containerd/runc", ctd, RUNC),
            ("pycontainerd/runc", pyd, RUNC),
            ("pycontainerd/pyrunc", pyd, PYRUNC),
        ]
        if args.with_containerd_pyrunc:
            targets.append(("containerd/pyrunc", ctd, PYRUNC))
        for extra in args.also_shim:
            label, _, path = extra.partition("=")
            targets.append((f"pycontainerd/{label}", pyd, os.path.abspath(path)))
            EXTRA_SHIMS.add(os.path.abspath(path).encode())
        print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs", flush=True)

        if not args.skip_latency:
            lat = bench_latency(targets, args.runs)
            base = statistics.median(lat["containerd/runc"])
            _table(
                f"ctr run --rm {IMAGE} echo hello ({args.runs} runs after a warm-up):",
                ((n, median_ms(t), statistics.median(t) / base) for n, t in lat.items()),
            )
            out["latency"] = {
                n: {"median_s": statistics.median(t), "runs": t} for n, t in lat.items()
            }
            ph = bench_phases(targets, clients, args.runs, str(work))
            names = list(ph)
            keys = list(ph[names[0]])
            print("gRPC phases, median ms:")
            w = max(len(n) for n in names) + 2
            print("  " + f"{'phase':<20}" + "".join(f"{n:>{w}}" for n in names))
            for k in keys:
                print("  " + f"{k:<20}" + "".join(f"{median_ms(ph[n][k]):{w}.1f}" for n in names))
            out["phases"] = {
                n: {k: statistics.median(v) for k, v in p.items()} for n, p in ph.items()
            }
            print(f"load average {os.getloadavg()}", flush=True)

        if not args.skip_memory:
            mem_targets = [(n, d, r, False) for n, d, r in targets]
            mem_targets += [
                ("containerd/runc pod", ctd, RUNC, True),
                ("pycontainerd/runc pod", pyd, RUNC, True),
                ("pycontainerd/pyrunc pod", pyd, PYRUNC, True),
            ]
            print("memory (daemon + shims; per container = (total - idle daemon) / n):")
            rows = []
            for name, d, runtime, pod in mem_targets:
                rows += bench_memory(name, d, runtime, clients[d.name], counts, pod)  # type: ignore[attr-defined]
            out["memory"] = rows
    finally:
        for c in clients.values():
            c.close()
        if pyd is not None:
            pyd.stop()
        ctd.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
