"""Pod and container metrics for ``ListPodSandboxMetrics`` / ``StreamPodSandboxMetrics``:
the cAdvisor-named series kubelet serves on ``/metrics/cadvisor`` when it takes them from the
runtime, read where cAdvisor reads them.

* a container: its cgroup, found from ``/proc/<init pid>/cgroup`` (so cgroupfs and systemd
  parents alike). cgroup v1: ``cpuacct.usage`` and ``cpuacct.stat`` (user/system ticks),
  ``cpu.stat`` (CFS periods and throttling), ``cpu.cfs_period_us`` / ``cpu.cfs_quota_us`` /
  ``cpu.shares``; ``memory.usage_in_bytes``, ``memory.max_usage_in_bytes``,
  ``memory.failcnt``, ``memory.kmem.usage_in_bytes``, ``memory.stat``, the limits
  (``memory.limit_in_bytes``, ``memory.soft_limit_in_bytes``, ``memory.memsw.limit_in_bytes``)
  and ``memory.oom_control`` (``oom_kill``); ``pids.current`` / ``pids.max``; blkio service
  bytes and counts (bfq, cfq or throttle files, whichever has entries). cgroup v2: the
  ``cpu.stat``, ``cpu.max``, ``cpu.weight``, ``memory.*``, ``pids.*`` and ``io.stat``
  equivalents. Then its processes (``cgroup.procs``): open fds, sockets among them and threads
  (``/proc/<pid>/fd``, ``/proc/<pid>/status``), and the init process's soft open-files limit;
  its writable layer's usage (the snapshot) on the filesystem holding it (``statvfs``); its
  start time; the time it was last seen (now).
* a pod: the interfaces of its network namespace (``/proc/<pause pid>/net/dev``, loopback
  left out), and with a cgroup parent the pod's cgroup as above (no process counts: the
  pod cgroup holds none directly).

Labels are containerd's: ``pod``, ``namespace``, ``container``, ``id``, ``image``, then the
descriptor's own (``interface``, ``device``, ...); pod-level series have an empty
``container`` and ``image`` and the sandbox id as ``id``. Values are the UInt64 the CRI
carries: seconds are truncated, and an unlimited cgroup v2 limit (``max``) is 0.

Not served (critest lists them as not implemented by runtimes yet): hugetlb usage, pressure
(PSI) totals.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import attrs

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_ROOT = Path("/proc")
SYS_DEV_BLOCK = Path("/sys/dev/block")

NS = 1_000_000_000
US = 1_000_000
#: the cgroup v1 controllers read (each mounted at CGROUP_ROOT/<name>, as on every distro)
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "blkio")
_CLK_TCK = os.sysconf("SC_CLK_TCK")

BASE_LABELS = ("pod", "namespace", "container", "id", "image")


@attrs.frozen(kw_only=True)
class Descriptor:
    name: str
    help: str
    counter: bool = False
    #: label keys after BASE_LABELS
    extra_labels: tuple[str, ...] = ()

    @property
    def label_keys(self) -> tuple[str, ...]:
        return (*BASE_LABELS, *self.extra_labels)


def _counter(name: str, help_: str, *extra: str) -> Descriptor:
    return Descriptor(name=name, help=help_, counter=True, extra_labels=extra)


def _gauge(name: str, help_: str, *extra: str) -> Descriptor:
    return Descriptor(name=name, help=help_, extra_labels=extra)


_FAILURE = ("failure_type", "scope")
_IFACE = ("interface",)
_DEVICE = ("device",)

#: Every series this module produces, grouped as containerd groups them.
DESCRIPTORS: tuple[Descriptor, ...] = (
    # cpu
    _counter("container_cpu_user_seconds_total", "CPU time spent in user mode, in seconds."),
    _counter("container_cpu_system_seconds_total", "CPU time spent in kernel mode, in seconds."),
    _counter("container_cpu_usage_seconds_total", "Total CPU time used, in seconds."),
    _counter("container_cpu_cfs_periods_total", "CFS enforcement periods that have elapsed."),
    _counter("container_cpu_cfs_throttled_periods_total", "CFS periods in which it was throttled."),
    _counter("container_cpu_cfs_throttled_seconds_total", "Time it spent throttled, in seconds."),
    # memory
    _gauge("container_memory_cache", "Page cache memory, in bytes."),
    _gauge("container_memory_rss", "Anonymous memory (RSS), in bytes."),
    _gauge("container_memory_kernel_usage", "Kernel memory charged to it, in bytes."),
    _gauge("container_memory_mapped_file", "Memory-mapped file memory, in bytes."),
    _gauge("container_memory_swap", "Swap in use, in bytes."),
    _counter(
        "container_memory_failcnt",
        "Times memory usage hit the limit (cgroup v1 failcnt; cgroup v2 memory.events max).",
    ),
    _gauge("container_memory_usage_bytes", "Memory in use, including page cache, in bytes."),
    _gauge("container_memory_max_usage_bytes", "Highest memory usage recorded, in bytes."),
    _gauge(
        "container_memory_working_set_bytes",
        "Memory in use minus inactive file cache, in bytes.",
    ),
    _gauge("container_memory_total_active_file_bytes", "Active file cache, in bytes."),
    _gauge("container_memory_total_inactive_file_bytes", "Inactive file cache, in bytes."),
    _counter(
        "container_memory_failures_total",
        "Page faults (pgfault, pgmajfault) of its own (container) or with its descendants "
        "(hierarchy).",
        *_FAILURE,
    ),
    _counter("container_oom_events_total", "Processes killed by the OOM killer in it."),
    # network
    _counter("container_network_receive_bytes_total", "Bytes received.", *_IFACE),
    _counter("container_network_receive_packets_total", "Packets received.", *_IFACE),
    _counter(
        "container_network_receive_packets_dropped_total",
        "Packets dropped on receive.",
        *_IFACE,
    ),
    _counter("container_network_receive_errors_total", "Receive errors.", *_IFACE),
    _counter("container_network_transmit_bytes_total", "Bytes transmitted.", *_IFACE),
    _counter("container_network_transmit_packets_total", "Packets transmitted.", *_IFACE),
    _counter(
        "container_network_transmit_packets_dropped_total",
        "Packets dropped on transmit.",
        *_IFACE,
    ),
    _counter("container_network_transmit_errors_total", "Transmit errors.", *_IFACE),
    # disk usage
    _gauge("container_fs_inodes_free", "Free inodes on the filesystem.", *_DEVICE),
    _gauge("container_fs_inodes_total", "Inodes on the filesystem.", *_DEVICE),
    _gauge("container_fs_limit_bytes", "Size of the filesystem it writes to, in bytes.", *_DEVICE),
    _gauge(
        "container_fs_usage_bytes", "Bytes its writable layer uses on the filesystem.", *_DEVICE
    ),
    # disk io
    _counter("container_fs_reads_bytes_total", "Bytes read from the device.", *_DEVICE),
    _counter("container_fs_reads_total", "Reads from the device completed.", *_DEVICE),
    _counter("container_fs_writes_bytes_total", "Bytes written to the device.", *_DEVICE),
    _counter("container_fs_writes_total", "Writes to the device completed.", *_DEVICE),
    _counter(
        "container_blkio_device_usage_total",
        "Bytes transferred to or from the device, per operation.",
        *_DEVICE,
        "major",
        "minor",
        "operation",
    ),
    # processes
    _gauge("container_processes", "Tasks in its cgroup (pids.current)."),
    _gauge("container_file_descriptors", "File descriptors its processes hold open."),
    _gauge("container_sockets", "Sockets its processes hold open."),
    _gauge("container_threads_max", "Task limit of its cgroup (pids.max); 0 means unlimited."),
    _gauge("container_threads", "Threads of its processes."),
    _gauge("container_ulimits_soft", "Soft resource limits of its init process.", "ulimit"),
    # misc
    _gauge("container_last_seen", "When it was last seen, in seconds since the epoch."),
    _gauge("container_start_time_seconds", "When it started, in seconds since the epoch."),
    # container spec (the limits in force in its cgroup)
    _gauge("container_spec_cpu_period", "CFS period, in microseconds."),
    _gauge("container_spec_cpu_quota", "CFS quota per period, in microseconds, when limited."),
    _gauge("container_spec_cpu_shares", "CPU shares (cgroup v2: from cpu.weight)."),
    _gauge("container_spec_memory_limit_bytes", "Memory limit, in bytes."),
    _gauge(
        "container_spec_memory_reservation_limit_bytes",
        "Memory reservation (soft limit; cgroup v2 memory.low), in bytes.",
    ),
    _gauge(
        "container_spec_memory_swap_limit_bytes",
        "Memory+swap limit (cgroup v1 memsw), or swap limit (cgroup v2), in bytes.",
    ),
)

BY_NAME: dict[str, Descriptor] = {d.name: d for d in DESCRIPTORS}


class Sample(NamedTuple):
    """One value of a series: its name, the values of its descriptor's extra labels."""

    name: str
    value: int
    labels: tuple[str, ...] = ()


# --- reading files ----------------------------------------------------------------------


def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _int(path: Path, unlimited: int | None = None) -> int | None:
    """The first number in ``path``; ``unlimited`` for ``max``; None when unreadable."""
    text = _text(path)
    if text is None:
        return None
    word = (text.split() or [""])[0]
    if word == "max":
        return unlimited
    try:
        return int(word)
    except ValueError:
        return None


def _kv(path: Path) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat, cpuacct.stat, memory.oom_control ...)."""
    out: dict[str, int] = {}
    for line in (_text(path) or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def device_name(major: int, minor: int) -> str:
    """``/dev/<name>`` of a block device number, ``major:minor`` when unknown."""
    for line in (_text(SYS_DEV_BLOCK / f"{major}:{minor}" / "uevent") or "").splitlines():
        key, _, value = line.partition("=")
        if key == "DEVNAME" and value:
            return "/dev/" + value
    return f"{major}:{minor}"


# --- cgroups ----------------------------------------------------------------------------


def unified() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def cgroup_dirs_of_path(rel: str) -> dict[str, Path]:
    """The directories of cgroup ``rel``: ``{"": dir}`` on cgroup v2, one per controller on
    v1."""
    rel = rel.strip("/")
    if unified():
        return {"": CGROUP_ROOT / rel}
    return {c: CGROUP_ROOT / c / rel for c in V1_CONTROLLERS}


def cgroup_dirs_of_pid(pid: int) -> dict[str, Path]:
    """The cgroup directories of process ``pid`` (as :func:`cgroup_dirs_of_path`); empty when
    the process is gone."""
    out: dict[str, Path] = {}
    v2 = unified()
    for line in (_text(PROC_ROOT / str(pid) / "cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        rel = path.strip("/")
        if v2:
            if controllers == "":
                out[""] = CGROUP_ROOT / rel
            continue
        for name in controllers.split(","):
            if name in V1_CONTROLLERS:
                out[name] = CGROUP_ROOT / name / rel
    return out


def cgroup_pids(dirs: Mapping[str, Path]) -> list[int]:
    """The processes directly in the cgroup."""
    for key in ("", "pids", "memory", "cpu", "cpuacct", "blkio"):
        d = dirs.get(key)
        if d is None:
            continue
        text = _text(d / "cgroup.procs")
        if text is not None:
            return [int(p) for p in text.split() if p.isdigit()]
    return []


def cgroup_samples(dirs: Mapping[str, Path]) -> list[Sample]:
    """What a cgroup's files say (v2 when ``dirs`` has the unified directory ``""``)."""
    if "" in dirs:
        return _v2_samples(dirs[""])
    return _v1_samples(dirs)


class _Out(list[Sample]):
    def add(self, name: str, value: int | None, *labels: str) -> None:
        if value is not None:
            self.append(Sample(name, value, labels))


def _v1_samples(dirs: Mapping[str, Path]) -> list[Sample]:
    out = _Out()
    acct = dirs.get("cpuacct")
    if acct is not None:
        usage = _int(acct / "cpuacct.usage")
        out.add("container_cpu_usage_seconds_total", None if usage is None else usage // NS)
        ticks = _kv(acct / "cpuacct.stat")
        for key, name in (
            ("user", "container_cpu_user_seconds_total"),
            ("system", "container_cpu_system_seconds_total"),
        ):
            if key in ticks:
                out.add(name, ticks[key] // _CLK_TCK)
    cpu = dirs.get("cpu")
    if cpu is not None:
        st = _kv(cpu / "cpu.stat")
        if "nr_periods" in st:
            out.add("container_cpu_cfs_periods_total", st["nr_periods"])
            out.add("container_cpu_cfs_throttled_periods_total", st.get("nr_throttled", 0))
            out.add("container_cpu_cfs_throttled_seconds_total", st.get("throttled_time", 0) // NS)
        out.add("container_spec_cpu_period", _int(cpu / "cpu.cfs_period_us"))
        quota = _int(cpu / "cpu.cfs_quota_us")
        if quota is not None and quota > 0:
            out.add("container_spec_cpu_quota", quota)
        out.add("container_spec_cpu_shares", _int(cpu / "cpu.shares"))
    mem = dirs.get("memory")
    usage = _int(mem / "memory.usage_in_bytes") if mem is not None else None
    if mem is not None and usage is not None:
        st = _kv(mem / "memory.stat")
        inactive = st.get("total_inactive_file", 0)
        out.add("container_memory_usage_bytes", usage)
        out.add("container_memory_working_set_bytes", max(0, usage - inactive))
        out.add("container_memory_max_usage_bytes", _int(mem / "memory.max_usage_in_bytes"))
        out.add("container_memory_failcnt", _int(mem / "memory.failcnt"))
        out.add("container_memory_kernel_usage", _int(mem / "memory.kmem.usage_in_bytes"))
        for key, name in (
            ("total_cache", "container_memory_cache"),
            ("total_rss", "container_memory_rss"),
            ("total_mapped_file", "container_memory_mapped_file"),
            ("total_active_file", "container_memory_total_active_file_bytes"),
            ("total_inactive_file", "container_memory_total_inactive_file_bytes"),
        ):
            out.add(name, st.get(key))
        swap = st.get("total_swap")
        if swap is None:
            memsw = _int(mem / "memory.memsw.usage_in_bytes")
            swap = None if memsw is None else max(0, memsw - usage)
        out.add("container_memory_swap", swap)
        for fault in ("pgfault", "pgmajfault"):
            out.add("container_memory_failures_total", st.get(fault), fault, "container")
            out.add("container_memory_failures_total", st.get(f"total_{fault}"), fault, "hierarchy")
        out.add("container_oom_events_total", _kv(mem / "memory.oom_control").get("oom_kill"))
        out.add("container_spec_memory_limit_bytes", _int(mem / "memory.limit_in_bytes"))
        out.add(
            "container_spec_memory_reservation_limit_bytes",
            _int(mem / "memory.soft_limit_in_bytes"),
        )
        out.add("container_spec_memory_swap_limit_bytes", _int(mem / "memory.memsw.limit_in_bytes"))
    pids = dirs.get("pids")
    if pids is not None:
        out.add("container_processes", _int(pids / "pids.current"))
        out.add("container_threads_max", _int(pids / "pids.max", unlimited=0))
    blkio = dirs.get("blkio")
    if blkio is not None:
        out.extend(_v1_blkio(blkio))
    return out


def _blkio_rows(path: Path) -> list[tuple[int, int, str, int]]:
    """(major, minor, operation, value) of a v1 ``blkio.*_recursive`` file."""
    rows = []
    for line in (_text(path) or "").splitlines():
        f = line.split()
        if len(f) != 3 or ":" not in f[0]:
            continue
        major, _, minor = f[0].partition(":")
        try:
            rows.append((int(major), int(minor), f[1], int(f[2])))
        except ValueError:
            continue
    return rows


def _v1_blkio(d: Path) -> list[Sample]:
    served: list[tuple[int, int, str, int]] = []
    ops: list[tuple[int, int, str, int]] = []
    # bfq, then cfq, then the throttle files (kept on any scheduler): the first with entries
    for prefix in ("blkio.bfq.", "blkio.", "blkio.throttle."):
        served = _blkio_rows(d / f"{prefix}io_service_bytes_recursive")
        ops = _blkio_rows(d / f"{prefix}io_serviced_recursive")
        if served or ops:
            break
    return _io_samples(served, ops)


def _io_samples(
    served: Iterable[tuple[int, int, str, int]], ops: Iterable[tuple[int, int, str, int]]
) -> list[Sample]:
    out = _Out()
    names: dict[tuple[int, int], str] = {}

    def dev(major: int, minor: int) -> str:
        if (major, minor) not in names:
            names[major, minor] = device_name(major, minor)
        return names[major, minor]

    for major, minor, op, value in served:
        device = dev(major, minor)
        out.add("container_blkio_device_usage_total", value, device, str(major), str(minor), op)
        if op.lower() == "read":
            out.add("container_fs_reads_bytes_total", value, device)
        elif op.lower() == "write":
            out.add("container_fs_writes_bytes_total", value, device)
    for major, minor, op, value in ops:
        if op.lower() == "read":
            out.add("container_fs_reads_total", value, dev(major, minor))
        elif op.lower() == "write":
            out.add("container_fs_writes_total", value, dev(major, minor))
    return out


def _v2_samples(d: Path) -> list[Sample]:
    out = _Out()
    st = _kv(d / "cpu.stat")
    if "usage_usec" in st:
        out.add("container_cpu_usage_seconds_total", st["usage_usec"] // US)
        out.add("container_cpu_user_seconds_total", st.get("user_usec", 0) // US)
        out.add("container_cpu_system_seconds_total", st.get("system_usec", 0) // US)
        if "nr_periods" in st:
            out.add("container_cpu_cfs_periods_total", st["nr_periods"])
            out.add("container_cpu_cfs_throttled_periods_total", st.get("nr_throttled", 0))
            out.add("container_cpu_cfs_throttled_seconds_total", st.get("throttled_usec", 0) // US)
    cpu_max = (_text(d / "cpu.max") or "").split()
    if len(cpu_max) == 2:
        if cpu_max[1].isdigit():
            out.add("container_spec_cpu_period", int(cpu_max[1]))
        if cpu_max[0].isdigit():
            out.add("container_spec_cpu_quota", int(cpu_max[0]))
    weight = _int(d / "cpu.weight")
    if weight is not None:
        # the inverse of the shares -> weight conversion runc applies
        out.add("container_spec_cpu_shares", 2 + (weight - 1) * 262142 // 9999)
    usage = _int(d / "memory.current")
    if usage is not None:
        ms = _kv(d / "memory.stat")
        events = _kv(d / "memory.events")
        out.add("container_memory_usage_bytes", usage)
        out.add("container_memory_working_set_bytes", max(0, usage - ms.get("inactive_file", 0)))
        out.add("container_memory_max_usage_bytes", _int(d / "memory.peak"))
        out.add("container_memory_failcnt", events.get("max"))
        kernel = ms.get("kernel")
        if kernel is None and "kernel_stack" in ms:
            kernel = ms["kernel_stack"] + ms.get("slab", 0) + ms.get("sock", 0)
        out.add("container_memory_kernel_usage", kernel)
        for key, name in (
            ("file", "container_memory_cache"),
            ("anon", "container_memory_rss"),
            ("file_mapped", "container_memory_mapped_file"),
            ("active_file", "container_memory_total_active_file_bytes"),
            ("inactive_file", "container_memory_total_inactive_file_bytes"),
        ):
            out.add(name, ms.get(key))
        out.add("container_memory_swap", _int(d / "memory.swap.current"))
        for fault in ("pgfault", "pgmajfault"):
            # memory.stat of v2 is hierarchical
            out.add("container_memory_failures_total", ms.get(fault), fault, "hierarchy")
        out.add("container_oom_events_total", events.get("oom_kill"))
        out.add("container_spec_memory_limit_bytes", _int(d / "memory.max", unlimited=0))
        out.add("container_spec_memory_reservation_limit_bytes", _int(d / "memory.low"))
        out.add("container_spec_memory_swap_limit_bytes", _int(d / "memory.swap.max", unlimited=0))
    out.add("container_processes", _int(d / "pids.current"))
    if (d / "pids.max").exists():
        out.add("container_threads_max", _int(d / "pids.max", unlimited=0))
    served, ops = [], []
    for line in (_text(d / "io.stat") or "").splitlines():
        f = line.split()
        if not f or ":" not in f[0]:
            continue
        major, _, minor = f[0].partition(":")
        kv = dict(p.partition("=")[::2] for p in f[1:])
        try:
            mj, mn = int(major), int(minor)
            served += [(mj, mn, "Read", int(kv["rbytes"])), (mj, mn, "Write", int(kv["wbytes"]))]
            ops += [(mj, mn, "Read", int(kv["rios"])), (mj, mn, "Write", int(kv["wios"]))]
        except (KeyError, ValueError):
            continue
    out.extend(_io_samples(served, ops))
    return out


# --- processes, filesystem, network ------------------------------------------------------


def process_samples(pids: Iterable[int], init_pid: int = 0) -> list[Sample]:
    """Open fds, sockets and threads of ``pids``; the soft open-files limit of
    ``init_pid``."""
    fds = sockets = threads = 0
    seen = False
    for pid in pids:
        fd_dir = PROC_ROOT / str(pid) / "fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue  # gone meanwhile
        seen = True
        fds += len(names)
        for name in names:
            try:
                if os.readlink(fd_dir / name).startswith("socket:"):
                    sockets += 1
            except OSError:
                continue
        for line in (_text(PROC_ROOT / str(pid) / "status") or "").splitlines():
            if line.startswith("Threads:"):
                threads += int(line.split()[1])
                break
    out = _Out()
    if seen:
        out.add("container_file_descriptors", fds)
        out.add("container_sockets", sockets)
        out.add("container_threads", threads)
    if init_pid > 0:
        for line in (_text(PROC_ROOT / str(init_pid) / "limits") or "").splitlines():
            if line.startswith("Max open files"):
                soft = line[len("Max open files") :].split()[0]
                if soft.isdigit():
                    out.add("container_ulimits_soft", int(soft), "max_open_files")
    return out


def filesystem_samples(path: str, used_bytes: int | None) -> list[Sample]:
    """Size and inodes of the filesystem holding ``path``, and ``used_bytes`` of it (what
    the filesystem has in use when unknown)."""
    try:
        st = os.statvfs(path)
        dev = os.stat(path).st_dev
    except OSError:
        return []
    device = device_name(os.major(dev), os.minor(dev))
    if used_bytes is None:
        used_bytes = (st.f_blocks - st.f_bfree) * st.f_frsize
    return [
        Sample("container_fs_limit_bytes", st.f_blocks * st.f_frsize, (device,)),
        Sample("container_fs_usage_bytes", used_bytes, (device,)),
        Sample("container_fs_inodes_total", st.f_files, (device,)),
        Sample("container_fs_inodes_free", st.f_ffree, (device,)),
    ]


#: /proc/net/dev column -> series (receive columns 0-7, transmit 8-15)
_NET_COLUMNS = (
    (0, "container_network_receive_bytes_total"),
    (1, "container_network_receive_packets_total"),
    (2, "container_network_receive_errors_total"),
    (3, "container_network_receive_packets_dropped_total"),
    (8, "container_network_transmit_bytes_total"),
    (9, "container_network_transmit_packets_total"),
    (10, "container_network_transmit_errors_total"),
    (11, "container_network_transmit_packets_dropped_total"),
)


def network_samples(pid: int) -> list[Sample]:
    """Interface counters of ``pid``'s network namespace, loopback left out."""
    from pycontainerd.plugins.cri.sandbox.stats import net_dev

    out = []
    for name, f in net_dev(pid, PROC_ROOT).items():
        if name == "lo":
            continue
        for column, metric in _NET_COLUMNS:
            out.append(Sample(metric, f[column], (name,)))
    return out


# --- what to read, and the CRI messages ---------------------------------------------------


@attrs.frozen(kw_only=True)
class ContainerTarget:
    id: str
    name: str
    image: str
    #: the init process
    pid: int
    #: unix ns
    started_at: int
    #: a directory on the filesystem holding the writable layer ("" when unknown)
    fs_path: str = ""
    #: bytes the writable layer uses (None when unknown)
    fs_used: int | None = None


@attrs.frozen(kw_only=True)
class PodTarget:
    id: str
    name: str
    namespace: str
    #: the pod's cgroup, when it has its own ("" otherwise)
    cgroup: str = ""
    #: the pause process, whose network namespace is the pod's (0: none to read)
    netns_pid: int = 0
    containers: tuple[ContainerTarget, ...] = ()


def pod_samples(target: PodTarget) -> list[Sample]:
    out: list[Sample] = []
    if target.cgroup:
        out.extend(cgroup_samples(cgroup_dirs_of_path(target.cgroup)))
    if target.netns_pid > 0:
        out.extend(network_samples(target.netns_pid))
    return out


def container_samples(target: ContainerTarget, now_ns: int) -> list[Sample]:
    dirs = cgroup_dirs_of_pid(target.pid)
    if not dirs:
        return []  # exited meanwhile
    out = cgroup_samples(dirs)
    out.extend(process_samples(cgroup_pids(dirs) or [target.pid], target.pid))
    if target.fs_path:
        out.extend(filesystem_samples(target.fs_path, target.fs_used))
    if target.started_at > 0:
        out.append(Sample("container_start_time_seconds", target.started_at // NS))
    out.append(Sample("container_last_seen", now_ns // NS))
    return out


def _pb() -> Any:
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2

    return api_pb2


def to_metrics(samples: Iterable[Sample], base: Sequence[str], ts: int) -> list[Any]:
    """``runtime.v1.Metric`` messages of ``samples``, labelled ``base`` (the BASE_LABELS
    values) then each sample's own."""
    pb = _pb()
    out = []
    for s in samples:
        d = BY_NAME[s.name]
        m = pb.Metric(
            name=s.name,
            timestamp=ts,
            metric_type=pb.COUNTER if d.counter else pb.GAUGE,
            label_values=[*base, *s.labels],
        )
        m.value.value = min(max(0, int(s.value)), (1 << 64) - 1)
        out.append(m)
    return out


def descriptors() -> list[Any]:
    pb = _pb()
    return [
        pb.MetricDescriptor(name=d.name, help=d.help, label_keys=d.label_keys) for d in DESCRIPTORS
    ]


def collect(pods: Iterable[PodTarget], now_ns: int | None = None) -> list[Any]:
    """``runtime.v1.PodSandboxMetrics`` of ``pods`` (blocking: reads cgroup and /proc
    files)."""
    pb = _pb()
    out = []
    for pod in pods:
        ts = now_ns if now_ns is not None else time.time_ns()
        msg = pb.PodSandboxMetrics(pod_sandbox_id=pod.id)
        msg.metrics.extend(
            to_metrics(pod_samples(pod), (pod.name, pod.namespace, "", pod.id, ""), ts)
        )
        for ctr in pod.containers:
            samples = container_samples(ctr, ts)
            if not samples:
                continue  # exited meanwhile
            base = (pod.name, pod.namespace, ctr.name, ctr.id, ctr.image)
            msg.container_metrics.append(
                pb.ContainerMetrics(container_id=ctr.id, metrics=to_metrics(samples, base, ts))
            )
        out.append(msg)
    return out
