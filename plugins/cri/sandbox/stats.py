"""Pod sandbox stats (containerd's ``internal/cri/server/sandbox_stats*.go``): CPU, memory and
process count of the pod's cgroup, network usage of its namespace, and the stats of its
containers.

With a ``cgroup_parent`` in the pod config (what kubelet always sets) the pod's own cgroup is
read, as containerd does: cgroup v1 ``cpuacct.usage``, ``memory.usage_in_bytes`` and
``memory.stat`` (working set = usage - total_inactive_file), ``pids.current``; or cgroup v2
``cpu.stat``, ``memory.current``, ``memory.stat``, ``pids.current``. Without one, the task
Metrics of the pause container and of the pod's running containers are summed. Network usage
comes from ``/proc/<pause pid>/net/dev`` (the pod's namespace as its pause process sees it).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from pycontainerd.core import errdefs

CGROUP_ROOT = Path("/sys/fs/cgroup")
DEFAULT_INTERFACE = "eth0"

#: sandbox id -> (timestamp ns, cumulative cpu ns): the previous sample, for usage_nano_cores
_cpu_samples: dict[str, tuple[int, int]] = {}


def _pb() -> Any:
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2

    return api_pb2


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_kv(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            continue
    return out


def cgroup_relpath(parent: str) -> str:
    """Where the pod cgroup ``parent`` lives under a hierarchy's root: cgroupfs parents as
    they are, a systemd slice nested under its ancestors (``a-b.slice`` at
    ``a.slice/a-b.slice``)."""
    rel = parent.strip("/")
    if rel.endswith(".slice"):
        parts = rel.split("-")[:-1]
        rel = "/".join("-".join(parts[: i + 1]) + ".slice" for i in range(len(parts))) + (
            "/" + rel if parts else rel
        )
    return rel


def _cgroup_usage(parent: str) -> dict[str, int] | None:
    """cpu (ns), memory usage, inactive file, rss, faults and process count of the cgroup
    ``parent``; None when the cgroup does not exist."""
    rel = cgroup_relpath(parent)
    if (CGROUP_ROOT / "cgroup.controllers").exists():  # v2
        d = CGROUP_ROOT / rel
        if not d.is_dir():
            return None
        cpu = _read_kv(d / "cpu.stat")
        mem = _read_kv(d / "memory.stat")
        return {
            "cpu": cpu.get("usage_usec", 0) * 1000,
            "usage": _read_int(d / "memory.current") or 0,
            "limit": _read_int(d / "memory.max") or 0,
            "inactive": mem.get("inactive_file", 0),
            "rss": mem.get("anon", 0),
            "pgfault": mem.get("pgfault", 0),
            "pgmajfault": mem.get("pgmajfault", 0),
            "pids": _read_int(d / "pids.current") or 0,
        }
    mem_dir = CGROUP_ROOT / "memory" / rel
    if not mem_dir.is_dir():
        return None
    mem = _read_kv(mem_dir / "memory.stat")
    return {
        "cpu": _read_int(CGROUP_ROOT / "cpuacct" / rel / "cpuacct.usage") or 0,
        "usage": _read_int(mem_dir / "memory.usage_in_bytes") or 0,
        "limit": _read_int(mem_dir / "memory.limit_in_bytes") or 0,
        "inactive": mem.get("total_inactive_file", 0),
        "rss": mem.get("total_rss", 0),
        "pgfault": mem.get("total_pgfault", 0),
        "pgmajfault": mem.get("total_pgmajfault", 0),
        "pids": _read_int(CGROUP_ROOT / "pids" / rel / "pids.current") or 0,
    }


def net_dev(pid: int, proc: Path = Path("/proc")) -> dict[str, list[int]]:
    """The 16 counters of ``/proc/<pid>/net/dev`` per interface of ``pid``'s netns (receive
    bytes, packets, errs, drop, fifo, frame, compressed, multicast; transmit bytes, packets,
    errs, drop, fifo, colls, carrier, compressed); {} when unreadable."""
    try:
        lines = (proc / str(pid) / "net" / "dev").read_text().splitlines()[2:]
    except OSError:
        return {}
    out: dict[str, list[int]] = {}
    for line in lines:
        name, _, rest = line.partition(":")
        f = rest.split()
        if len(f) >= 16:
            out[name.strip()] = [int(x) for x in f[:16]]
    return out


def _net_dev(pid: int) -> list[tuple[str, int, int, int, int]]:
    """(name, rx bytes, rx errors, tx bytes, tx errors) per interface of ``pid``'s netns."""
    return [(name, f[0], f[2], f[8], f[10]) for name, f in net_dev(pid).items()]


async def _usage_from_metrics(c: Any, sandbox_id: str, container_ids: list[str]) -> dict[str, int]:
    """The pause task's and the containers' task Metrics, summed."""
    m = c.container_manager
    metrics = await m._metrics([sandbox_id, *container_ids])
    total = dict.fromkeys(("cpu", "usage", "inactive", "rss", "pgfault", "pgmajfault"), 0)
    total["limit"] = 0
    total["pids"] = 0
    for metric in metrics.values():
        decoded = m._decode_metrics(metric)
        if decoded is None:
            continue
        total["cpu"] += int(decoded.cpu.usage.total)
        total["usage"] += int(decoded.memory.usage.usage)
        total["inactive"] += int(decoded.memory.total_inactive_file)
        total["rss"] += int(decoded.memory.total_rss)
        total["pgfault"] += int(decoded.memory.total_pg_fault)
        total["pgmajfault"] += int(decoded.memory.total_pg_maj_fault)
        total["pids"] += int(decoded.pids.current)
    return total


async def pod_sandbox_stats(c: Any, sandbox: Any) -> Any:
    """``runtime.v1.PodSandboxStats`` of a READY sandbox (Unavailable otherwise)."""
    pb = _pb()
    state = getattr(sandbox.state, "value", sandbox.state)
    if str(state) != "SANDBOX_READY":
        raise errdefs.Unavailable(
            f"failed to get pod sandbox stats since sandbox container {sandbox.id!r} is not "
            "in ready state"
        )
    config = sandbox.config
    stats = pb.PodSandboxStats(
        attributes=pb.PodSandboxAttributes(
            id=sandbox.id,
            metadata=config.metadata,
            labels=dict(config.labels),
            annotations=dict(config.annotations),
        )
    )
    linux = stats.linux
    m = c.container_manager
    containers = []
    if m is not None:
        containers = m.list(pb.ContainerFilter(pod_sandbox_id=sandbox.id))
    running = [x.id for x in containers if x.state() == "CONTAINER_RUNNING"]

    ts = time.time_ns()
    usage = None
    if config.linux.cgroup_parent:
        usage = await asyncio.to_thread(_cgroup_usage, config.linux.cgroup_parent)
    if usage is None and m is not None:
        usage = await _usage_from_metrics(c, sandbox.id, running)
    if usage is not None:
        linux.cpu.timestamp = ts
        linux.cpu.usage_core_nano_seconds.value = usage["cpu"]
        prev = _cpu_samples.get(sandbox.id)
        if prev is not None and ts > prev[0]:
            linux.cpu.usage_nano_cores.value = max(
                0, (usage["cpu"] - prev[1]) * 1_000_000_000 // (ts - prev[0])
            )
        _cpu_samples[sandbox.id] = (ts, usage["cpu"])
        working = usage["usage"] - usage["inactive"] if usage["inactive"] < usage["usage"] else 0
        linux.memory.timestamp = ts
        linux.memory.working_set_bytes.value = working
        linux.memory.usage_bytes.value = usage["usage"]
        linux.memory.rss_bytes.value = usage["rss"]
        linux.memory.page_faults.value = usage["pgfault"]
        linux.memory.major_page_faults.value = usage["pgmajfault"]
        if 0 < usage["limit"] < 1 << 62:
            linux.memory.available_bytes.value = max(0, usage["limit"] - working)
        linux.process.timestamp = ts
        linux.process.process_count.value = usage["pids"]

    pid = int(sandbox.status.pid or 0)
    if pid > 0 and sandbox.netns_path:
        linux.network.timestamp = ts
        for name, rxb, rxe, txb, txe in await asyncio.to_thread(_net_dev, pid):
            if name == "lo":
                continue
            iface = pb.NetworkInterfaceUsage(name=name)
            iface.rx_bytes.value, iface.rx_errors.value = rxb, rxe
            iface.tx_bytes.value, iface.tx_errors.value = txb, txe
            if name == DEFAULT_INTERFACE:
                linux.network.default_interface.CopyFrom(iface)
            else:
                linux.network.interfaces.append(iface)

    if m is not None and containers:
        linux.containers.extend(await m.stats(containers))
    return stats


def forget(sandbox_id: str) -> None:
    _cpu_samples.pop(sandbox_id, None)


async def list_stats(c: Any, flt: Any) -> list[Any]:
    """Stats of the READY sandboxes matching ``flt`` (a ``PodSandboxStatsFilter`` or None);
    one that fails meanwhile is left out, as containerd does."""
    sel: dict[str, str] = {}
    id_ = ""
    if flt is not None:
        sel = dict(flt.label_selector)
        id_ = flt.id
    out = []
    live = set()
    for sb in list(c.sandboxes.store):
        live.add(sb.id)
        if id_ and not sb.id.startswith(id_):
            continue
        if any(sb.config.labels.get(k) != v for k, v in sel.items()):
            continue
        if str(getattr(sb.state, "value", sb.state)) != "SANDBOX_READY":
            continue
        try:
            out.append(await pod_sandbox_stats(c, sb))
        except errdefs.ContainerdError:
            continue
    for gone in set(_cpu_samples) - live:
        forget(gone)
    return out
