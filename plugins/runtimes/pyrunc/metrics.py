"""Task stats as containerd's cgroup v1 ``io.containerd.cgroups.v1.Metrics``.

api/ has no generated module for containerd/cgroups' ``stats/v1`` messages yet, so the part
of it the shim fills is described here at run time with a ``FileDescriptorProto`` (field
numbers as in containerd/cgroups; wire compatible with what ``ctr task metrics`` decodes).
Filled from one ``runc events --stats`` sample: pids, cpu usage and throttling, memory
(statistics, usage, swap, kernel, kernel_tcp), blkio and hugetlb. Not filled: rdma, network,
cgroup_stats, memory_oom_control.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "io.containerd.cgroups.v1"
TYPE_URL = f"{PACKAGE}.Metrics"

_U64 = descriptor_pb2.FieldDescriptorProto.TYPE_UINT64
_STR = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
_MSG = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
_OPT = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
_REP = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED

_MEMORY_STATS = (
    "cache rss rss_huge mapped_file dirty writeback pg_pg_in pg_pg_out pg_fault pg_maj_fault "
    "inactive_anon active_anon inactive_file active_file unevictable "
    "hierarchical_memory_limit hierarchical_swap_limit"
).split()

# (message, [(field, number, type, label, message type)])
_MESSAGES: list[tuple[str, list[tuple[str, int, int, int, str]]]] = [
    (
        "Metrics",
        [
            ("hugetlb", 1, _MSG, _REP, "HugetlbStat"),
            ("pids", 2, _MSG, _OPT, "PidsStat"),
            ("cpu", 3, _MSG, _OPT, "CPUStat"),
            ("memory", 4, _MSG, _OPT, "MemoryStat"),
            ("blkio", 5, _MSG, _OPT, "BlkIOStat"),
        ],
    ),
    (
        "HugetlbStat",
        [
            ("usage", 1, _U64, _OPT, ""),
            ("max", 2, _U64, _OPT, ""),
            ("failcnt", 3, _U64, _OPT, ""),
            ("pagesize", 4, _STR, _OPT, ""),
        ],
    ),
    ("PidsStat", [("current", 1, _U64, _OPT, ""), ("limit", 2, _U64, _OPT, "")]),
    ("CPUStat", [("usage", 1, _MSG, _OPT, "CPUUsage"), ("throttling", 2, _MSG, _OPT, "Throttle")]),
    (
        "CPUUsage",
        [
            ("total", 1, _U64, _OPT, ""),
            ("kernel", 2, _U64, _OPT, ""),
            ("user", 3, _U64, _OPT, ""),
            ("per_cpu", 4, _U64, _REP, ""),
        ],
    ),
    (
        "Throttle",
        [
            ("periods", 1, _U64, _OPT, ""),
            ("throttled_periods", 2, _U64, _OPT, ""),
            ("throttled_time", 3, _U64, _OPT, ""),
        ],
    ),
    (
        "MemoryStat",
        [(name, i + 1, _U64, _OPT, "") for i, name in enumerate(_MEMORY_STATS)]
        + [(f"total_{name}", 18 + i, _U64, _OPT, "") for i, name in enumerate(_MEMORY_STATS[:15])]
        + [
            ("usage", 33, _MSG, _OPT, "MemoryEntry"),
            ("swap", 34, _MSG, _OPT, "MemoryEntry"),
            ("kernel", 35, _MSG, _OPT, "MemoryEntry"),
            ("kernel_tcp", 36, _MSG, _OPT, "MemoryEntry"),
        ],
    ),
    (
        "MemoryEntry",
        [
            ("limit", 1, _U64, _OPT, ""),
            ("usage", 2, _U64, _OPT, ""),
            ("max", 3, _U64, _OPT, ""),
            ("failcnt", 4, _U64, _OPT, ""),
        ],
    ),
    (
        "BlkIOStat",
        [
            (name, i + 1, _MSG, _REP, "BlkIOEntry")
            for i, name in enumerate(
                [
                    "io_service_bytes_recursive",
                    "io_serviced_recursive",
                    "io_queued_recursive",
                    "io_service_time_recursive",
                    "io_wait_time_recursive",
                    "io_merged_recursive",
                    "io_time_recursive",
                    "sectors_recursive",
                ]
            )
        ],
    ),
    (
        "BlkIOEntry",
        [
            ("op", 1, _STR, _OPT, ""),
            ("device", 2, _STR, _OPT, ""),
            ("major", 3, _U64, _OPT, ""),
            ("minor", 4, _U64, _OPT, ""),
            ("value", 5, _U64, _OPT, ""),
        ],
    ),
]

_classes: dict[str, Any] = {}


def _build() -> dict[str, Any]:
    if _classes:
        return _classes
    fdp = descriptor_pb2.FileDescriptorProto(
        name="pycontainerd/cgroups/stats/v1/metrics.proto", package=PACKAGE, syntax="proto3"
    )
    for name, fields in _MESSAGES:
        msg = fdp.message_type.add(name=name)
        for fname, number, ftype, label, mtype in fields:
            f = msg.field.add(name=fname, number=number, type=ftype, label=label)
            if mtype:
                f.type_name = f".{PACKAGE}.{mtype}"
    pool = descriptor_pool.DescriptorPool()
    fd = pool.Add(fdp)
    for name, _ in _MESSAGES:
        _classes[name] = message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"{PACKAGE}.{name}")
        )
    del fd
    return _classes


def message_class(name: str = "Metrics") -> Any:
    return _build()[name]


def _entry(msg: Any, data: dict[str, Any] | None) -> None:
    if not data:
        return
    msg.limit = int(data.get("limit", 0))
    msg.usage = int(data.get("usage", 0))
    msg.max = int(data.get("max", 0))
    msg.failcnt = int(data.get("failcnt", 0))


_BLKIO_KEYS = {
    "io_service_bytes_recursive": "ioServiceBytesRecursive",
    "io_serviced_recursive": "ioServicedRecursive",
    "io_queued_recursive": "ioQueueRecursive",
    "io_service_time_recursive": "ioServiceTimeRecursive",
    "io_wait_time_recursive": "ioWaitTimeRecursive",
    "io_merged_recursive": "ioMergedRecursive",
    "io_time_recursive": "ioTimeRecursive",
    "sectors_recursive": "sectorsRecursive",
}


def from_runc_stats(data: dict[str, Any]) -> Any:
    """A Metrics message from the ``data`` of ``runc events --stats``."""
    m = message_class()()
    pids = data.get("pids") or {}
    m.pids.current = int(pids.get("current", 0))
    m.pids.limit = int(pids.get("limit", 0))
    cpu = data.get("cpu") or {}
    usage = cpu.get("usage") or {}
    m.cpu.usage.total = int(usage.get("total", 0))
    m.cpu.usage.kernel = int(usage.get("kernel", 0))
    m.cpu.usage.user = int(usage.get("user", 0))
    m.cpu.usage.per_cpu.extend(int(x) for x in usage.get("percpu") or [])
    thr = cpu.get("throttling") or {}
    m.cpu.throttling.periods = int(thr.get("periods", 0))
    m.cpu.throttling.throttled_periods = int(thr.get("throttledPeriods", 0))
    m.cpu.throttling.throttled_time = int(thr.get("throttledTime", 0))
    mem = data.get("memory") or {}
    raw = mem.get("raw") or {}
    for name in _MEMORY_STATS:
        key = {"pg_pg_in": "pgpgin", "pg_pg_out": "pgpgout", "pg_fault": "pgfault"}.get(
            name, "pgmajfault" if name == "pg_maj_fault" else name
        )
        setattr(m.memory, name, int(raw.get(key, 0)))
        if name in _MEMORY_STATS[:15]:
            setattr(m.memory, f"total_{name}", int(raw.get(f"total_{key}", 0)))
    m.memory.cache = int(mem.get("cache", raw.get("cache", 0)))
    _entry(m.memory.usage, mem.get("usage"))
    _entry(m.memory.swap, mem.get("swap"))
    _entry(m.memory.kernel, mem.get("kernel"))
    _entry(m.memory.kernel_tcp, mem.get("kernelTCP"))
    blkio = data.get("blkio") or {}
    for field, key in _BLKIO_KEYS.items():
        for e in blkio.get(key) or []:
            getattr(m.blkio, field).add(
                op=str(e.get("op", "")),
                major=int(e.get("major", 0)),
                minor=int(e.get("minor", 0)),
                value=int(e.get("value", 0)),
            )
    for pagesize, h in sorted((data.get("hugetlb") or {}).items()):
        m.hugetlb.add(
            pagesize=pagesize,
            usage=int(h.get("usage", 0)),
            max=int(h.get("max", 0)),
            failcnt=int(h.get("failcnt", 0)),
        )
    return m


def pack_runc_stats(data: dict[str, Any]) -> any_pb2.Any:
    return any_pb2.Any(type_url=TYPE_URL, value=from_runc_stats(data).SerializeToString())
