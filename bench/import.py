"""Image import benchmark: ``images import`` with unpack (overlayfs) of the busybox archive and
of a ~100 MB multi-layer archive, side by side in the same run:

- ``containerd``: Debian's ``ctr`` against Debian's containerd (its own root/state/socket);
- ``pycontainerd/ctr``: the same ``ctr`` against pycontainerd (same client, our services);
- ``pycontainerd/pyctr``: ``pyctr images import`` against pycontainerd.

Each run imports into a fresh namespace (so nothing is skipped as already present). Prints
medians and ratios against containerd.

    sudo .venv/bin/python -P bench/import.py [--runs 5] [--large-mb 100] [--json out.json]

Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "support"))

import images  # noqa: E402
from daemon import Daemon  # noqa: E402

CTR = "/usr/bin/ctr"
ENV = {**os.environ, "CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS": "1"}


class Containerd:
    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.address = str(base / "containerd.sock")
        cfg = base / "config.toml"
        cfg.write_text(
            "version = 2\n"
            f'root = "{base}/root"\nstate = "{base}/state"\n'
            f'[grpc]\naddress = "{self.address}"\n'
            '[ttrpc]\naddress = ""\n'
            '[plugins."io.containerd.grpc.v1.cri"]\ndisable_tcp_service = true\n'
        )
        self.log = open(base / "containerd.log", "wb")
        self.proc = subprocess.Popen(
            ["containerd", "--config", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = subprocess.run([CTR, "-a", self.address, "version"], capture_output=True, env=ENV)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("containerd did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, env=env or ENV)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.decode()[-2000:]}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--large-mb", type=int, default=100)
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    cache = images.default_cache_dir()
    bb = images.busybox_image(cache)
    per = args.large_mb // 5
    large = images.large_image(
        cache, [per << 20] * 5, compressible=True, name="docker.io/library/large:bench"
    )
    archives = {
        "busybox": bb.oci_archive(work / "busybox.tar"),
        f"large-{args.large_mb}MB": large.oci_archive(work / "large.tar"),
    }
    ctd = Containerd(work / "containerd")
    (work / "py").mkdir()
    pyd = Daemon(work / "py").start()
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for label, arc in archives.items():
            res = results.setdefault(
                label, {"containerd": [], "pycontainerd/ctr": [], "pycontainerd/pyctr": []}
            )
            for i in range(args.runs):
                ns = f"b{i}"
                res["containerd"].append(
                    timed([CTR, "-a", ctd.address, "-n", ns, "images", "import", str(arc)])
                )
                res["pycontainerd/ctr"].append(
                    timed([CTR, "-a", pyd.address, "-n", ns, "images", "import", str(arc)])
                )
                res["pycontainerd/pyctr"].append(
                    timed(
                        [
                            sys.executable,
                            "-m",
                            "pycontainerd.cli.pyctr",
                            "-a",
                            pyd.address,
                            "-n",
                            "p" + ns,
                            "images",
                            "import",
                            "--no-progress",
                            str(arc),
                        ],
                        env=pyd.env,
                    )
                )
    finally:
        pyd.stop()
        ctd.stop()
        shutil.rmtree(work, ignore_errors=True)

    out = {}
    for label, res in results.items():
        base = statistics.median(res["containerd"])
        print(f"{label}:")
        for who, times in res.items():
            med = statistics.median(times)
            print(
                f"  {who:<20} median {med * 1000:8.1f} ms  ratio {med / base:5.2f}x  "
                f"runs {[round(t * 1000) for t in times]}"
            )
            out.setdefault(label, {})[who] = {"median_s": med, "ratio": med / base, "runs": times}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
