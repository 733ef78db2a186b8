"""Pull benchmark: pull with unpack of a ~100 MB, 5-layer image (random and compressible
layers) from a local docker-registry, side by side in one run:

- ``pyctr images pull`` (a CLI process: Transfer + Streaming over gRPC, with progress stream),
- our transfer pull (one Transfer call from this process through pyctr's client function),
- Debian containerd 1.6's ``ctr images pull --plain-http`` (client-side pull), containerd
  started by the bench with its own root/state/socket.

Every run starts a fresh daemon on an empty root (the start is not timed) so nothing is
cached; the registry and the image are shared. Reports median wall time, throughput of the
compressed bytes, daemon CPU seconds (user+system over the pull) and the daemon's peak RSS,
and the ratios to containerd.

    sudo .venv/bin/python -P bench/pull.py [--runs 5] [--snapshotter overlayfs] [--json out.json]

Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "support"))
sys.path.insert(0, str(HERE))

import commands  # noqa: E402
import images  # noqa: E402
import registry as registry_support  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
LAYERS = [24 << 20, 24 << 20, 24 << 20, 16 << 20, 16 << 20]


def cpu_seconds(pid: int) -> float:
    """user + system CPU of ``pid`` and its reaped children."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / CLK


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def build_image(cache: Path) -> images.Image:
    """Five layers of about 100 MB together: layers 0, 2 and 4 random, 1 and 3 text."""
    layout = images.OCILayout(cache / "bench-pull")
    if (cache / "bench-pull.json").exists():
        return images.Image.from_json(
            json.loads((cache / "bench-pull.json").read_text()), layout.root
        )
    layers = [
        layout.add_layer(
            {
                f"data/layer-{i}.bin": images.BigFile(
                    size=size, seed=100 + i, compressible=bool(i % 2)
                )
            },
            level=1,
        )
        for i, size in enumerate(LAYERS)
    ]
    m, c = layout.add_manifest(layers, config={"Env": [images.DEFAULT_PATH_ENV]})
    layout.tag(m, "docker.io/library/benchpull:latest")
    layout.save()
    img = images.Image(
        name="docker.io/library/benchpull:latest",
        layout=layout.root,
        target=m,
        manifest=m,
        config=c,
        layers=tuple(layers),
    )
    (cache / "bench-pull.json").write_text(json.dumps(img.to_json()))
    return img


class Daemon:
    def __init__(self, cmd: list[str], sock: str, base: Path) -> None:
        self.sock = sock
        self.log = open(base / "daemon.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not os.path.exists(sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daemon did not start: {cmd}")
            time.sleep(0.01)
        time.sleep(0.3)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def ours(base: Path, snapshotter: str) -> Daemon:
    config = (
        'version = 4\n[plugins."io.containerd.transfer.v1.local"]\n'
        f'default_snapshotter = "{snapshotter}"\n'
    )
    cmd, sock = commands.pycontainerd(base, config)
    return Daemon(cmd, sock, base)


def theirs(base: Path, snapshotter: str) -> Daemon:
    config = 'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
    cmd, sock = commands.containerd(base, config)
    return Daemon(cmd, sock, base)


def pyctr_pull(d: Daemon, ref: str, snapshotter: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "pycontainerd.cli.pyctr",
            "-a",
            d.sock,
            "images",
            "pull",
            "--plain-http",
            "--no-progress",
            "--snapshotter",
            snapshotter,
            ref,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def transfer_pull(d: Daemon, ref: str, snapshotter: str) -> None:
    from pycontainerd.cli.pyctr.commands.pull import transfer
    from pycontainerd.core import namespaces, platforms
    from pycontainerd.core.transfer import UnpackConfiguration
    from pycontainerd.core.transfer.imagestore import ImageStore
    from pycontainerd.core.transfer.registry import OCIRegistry

    host = platforms.default_spec()

    async def go() -> None:
        with namespaces.use("default"):
            await transfer(
                d.sock,
                OCIRegistry(reference=ref, default_scheme="http"),
                ImageStore(
                    name=ref,
                    platforms=[host],
                    unpacks=[UnpackConfiguration(platform=host, snapshotter=snapshotter)],
                ),
            )

    asyncio.run(go())


def ctr_pull(d: Daemon, ref: str, snapshotter: str) -> None:
    subprocess.run(
        ["ctr", "-a", d.sock, "images", "pull", "--plain-http", "--snapshotter", snapshotter, ref],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS": "1"},
    )


def measure(
    name: str,
    start: Callable[[Path, str], Daemon],
    pull: Callable[..., None],
    ref: str,
    snapshotter: str,
    runs: int,
    size: int,
) -> dict[str, float | str]:
    times, cpus, rss = [], [], []
    for i in range(runs + 1):
        base = Path(tempfile.mkdtemp(prefix="bench-pull-", dir="/var/tmp"))
        try:
            d = start(base, snapshotter)
            try:
                c0 = cpu_seconds(d.proc.pid)
                t0 = time.monotonic()
                pull(d, ref, snapshotter)
                elapsed = time.monotonic() - t0
                cpu = cpu_seconds(d.proc.pid) - c0
                peak = peak_rss_mib(d.proc.pid)
            finally:
                d.stop()
        finally:
            subprocess.run(["umount", "-R", str(base)], stderr=subprocess.DEVNULL, check=False)
            shutil.rmtree(base, ignore_errors=True)
        if i == 0:
            continue  # warm-up
        times.append(elapsed)
        cpus.append(cpu)
        rss.append(peak)
    med = statistics.median(times)
    return {
        "name": name,
        "median_s": med,
        "min_s": min(times),
        "mib_per_s": size / med / (1 << 20),
        "daemon_cpu_s": statistics.median(cpus),
        "daemon_peak_rss_mib": statistics.median(rss),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--snapshotter", default="overlayfs")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--cache", default=str(images.default_cache_dir()))
    args = ap.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    img = build_image(cache)
    size = sum(la.descriptor.size for la in img.layers)
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as rdir:
        reg = registry_support.Registry(Path(rdir)).start()
        try:
            reg.push(img, repository="bench/pull")
            ref = reg.ref("bench/pull")
            print(
                f"image: {len(img.layers)} layers, {size / (1 << 20):.1f} MiB compressed, "
                f"snapshotter {args.snapshotter}, {args.runs} runs",
                file=sys.stderr,
            )
            results = [
                measure(
                    "pyctr images pull", ours, pyctr_pull, ref, args.snapshotter, args.runs, size
                ),
                measure(
                    "transfer pull (gRPC)",
                    ours,
                    transfer_pull,
                    ref,
                    args.snapshotter,
                    args.runs,
                    size,
                ),
            ]
            if shutil.which("containerd") and shutil.which("ctr"):
                results.append(
                    measure(
                        "containerd 1.6 ctr pull",
                        theirs,
                        ctr_pull,
                        ref,
                        args.snapshotter,
                        args.runs,
                        size,
                    )
                )
        finally:
            reg.stop()
    print(f"{'pull':26} {'median s':>9} {'min s':>7} {'MiB/s':>7} {'cpu s':>7} {'RSS MiB':>8}")
    for r in results:
        print(
            f"{r['name']:26} {r['median_s']:9.2f} {r['min_s']:7.2f} {r['mib_per_s']:7.1f} "
            f"{r['daemon_cpu_s']:7.2f} {r['daemon_peak_rss_mib']:8.1f}"
        )
    if len(results) == 3:
        base = results[2]
        for r in results[:2]:
            print(
                f"ratio {r['name']} / containerd: {r['median_s'] / base['median_s']:.2f}x time, "
                f"{r['daemon_cpu_s'] / max(base['daemon_cpu_s'], 1e-9):.2f}x cpu"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
