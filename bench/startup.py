"""Start-up benchmark: time from exec to the socket answering Version, and RSS when ready,
for pycontainerd and, side by side in the same run, Debian's containerd (its own temporary
root/state/socket). Prints medians and the ratio pycontainerd / containerd.

    sudo .venv/bin/python -P bench/startup.py [--runs 9] [--json out.json]

Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from google.protobuf import empty_pb2

from pycontainerd.api.containerd.services.version.v1 import version_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))

import commands  # noqa: E402


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _wait_version(sock: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        if os.path.exists(sock):
            ch = grpc.insecure_channel(f"unix:{sock}")
            try:
                version_pb2_grpc.VersionStub(ch).Version(empty_pb2.Empty(), timeout=0.5)
                return
            except grpc.RpcError:
                pass
            finally:
                ch.close()
        time.sleep(0.002)
    raise TimeoutError("daemon did not answer Version")


def run_once(cmd: list[str], sock: str) -> tuple[float, int]:
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_version(sock, proc, t0 + 60)
        elapsed = time.monotonic() - t0
        rss = _rss_kib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return elapsed, rss


def pycontainerd_cmd(base: Path) -> tuple[list[str], str]:
    return commands.pycontainerd(base, "version = 4\n")


def containerd_cmd(base: Path, with_cri: bool) -> tuple[list[str], str]:
    disabled = "" if with_cri else 'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
    return commands.containerd(base, f"version = 2\n{disabled}")


def measure(name: str, make, runs: int, fresh: bool) -> dict[str, float]:
    """``fresh``: new root/state every run (first boot); else one pair reused (restart)."""
    times, rss = [], []
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as shared:
        for i in range(runs + 1):
            with tempfile.TemporaryDirectory(prefix="bench-startup-") as d:
                cmd, sock = make(Path(d if fresh else shared))
                t, r = run_once(cmd, sock)
            if i == 0:
                continue  # warm-up: page cache, bytecode
            times.append(t)
            rss.append(r)
    kind = "first boot" if fresh else "restart"
    return {
        "name": f"{name} ({kind})",
        "median_ms": statistics.median(times) * 1000,
        "min_ms": min(times) * 1000,
        "median_rss_mib": statistics.median(rss) / 1024,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()
    results = []
    for fresh in (False, True):
        results.append(measure("pycontainerd", pycontainerd_cmd, args.runs, fresh))
        if shutil.which("containerd"):
            results.append(
                measure("containerd", lambda b: containerd_cmd(b, True), args.runs, fresh)
            )
        else:
            print("containerd not installed: no comparison", file=sys.stderr)
    print(f"{'daemon':34} {'median ms':>10} {'min ms':>8} {'RSS MiB':>8}")
    for r in results:
        print(
            f"{r['name']:34} {r['median_ms']:10.1f} {r['min_ms']:8.1f} {r['median_rss_mib']:8.1f}"
        )
    for i in range(0, len(results) - 1, 2):
        ours, theirs = results[i], results[i + 1]
        print(
            f"ratio {ours['name']} / {theirs['name']}: time "
            f"{ours['median_ms'] / theirs['median_ms']:.2f}x, RSS "
            f"{ours['median_rss_mib'] / theirs['median_rss_mib']:.2f}x"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
