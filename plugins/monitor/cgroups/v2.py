"""Task stats of cgroup v2 hosts (containerd/cgroups' ``io.containerd.cgroups.v2.Metrics``)
as containerd's ``container_*`` families (``core/metrics/cgroups/v2`` upstream).

api/ has no generated module for the v2 stats, so the message is described here at run time
(field numbers as in containerd/cgroups' ``cgroup2/stats/metrics.proto``); the parts the
families read are described: pids, cpu, memory, io and memory_events. rdma and hugetlb are
not rendered by containerd's v2 collector and are left undescribed (their fields are skipped
when parsing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from pycontainerd.plugins.monitor.cgroups.collector import (
    Definition,
    Sample,
    one,
    pids_definitions,
)

PACKAGE = "io.containerd.cgroups.v2"
TYPE_URL = f"{PACKAGE}.Metrics"

_U64 = descriptor_pb2.FieldDescriptorProto.TYPE_UINT64
_MSG = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
_OPT = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
_REP = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED

#: MemoryStat's fields, numbered from 1 in this order.
MEMORY_FIELDS = (
    "anon file kernel_stack slab sock shmem file_mapped file_dirty file_writeback anon_thp "
    "inactive_anon active_anon inactive_file active_file unevictable slab_reclaimable "
    "slab_unreclaimable pgfault pgmajfault workingset_refault workingset_activate "
    "workingset_nodereclaim pgrefill pgscan pgsteal pgactivate pgdeactivate pglazyfree "
    "pglazyfreed thp_fault_alloc thp_collapse_alloc usage usage_limit swap_usage swap_limit"
).split()

# (message, [(field, number, label, message type or "" for uint64)])
_MESSAGES: list[tuple[str, list[tuple[str, int, int, str]]]] = [
    (
        "Metrics",
        [
            ("pids", 1, _OPT, "PidsStat"),
            ("cpu", 2, _OPT, "CPUStat"),
            ("memory", 4, _OPT, "MemoryStat"),
            ("io", 6, _OPT, "IOStat"),
            ("memory_events", 8, _OPT, "MemoryEvents"),
        ],
    ),
    ("PidsStat", [("current", 1, _OPT, ""), ("limit", 2, _OPT, "")]),
    (
        "CPUStat",
        [
            (name, i + 1, _OPT, "")
            for i, name in enumerate(
                "usage_usec user_usec system_usec nr_periods nr_throttled throttled_usec".split()
            )
        ],
    ),
    ("MemoryStat", [(name, i + 1, _OPT, "") for i, name in enumerate(MEMORY_FIELDS)]),
    (
        "MemoryEvents",
        [(name, i + 1, _OPT, "") for i, name in enumerate("low high max oom oom_kill".split())],
    ),
    ("IOStat", [("usage", 1, _REP, "IOEntry")]),
    (
        "IOEntry",
        [
            (name, i + 1, _OPT, "")
            for i, name in enumerate("major minor rbytes wbytes rios wios".split())
        ],
    ),
]

_classes: dict[str, Any] = {}


def message_class(name: str = "Metrics") -> Any:
    if not _classes:
        fdp = descriptor_pb2.FileDescriptorProto(
            name="pycontainerd/cgroups/stats/v2/metrics.proto", package=PACKAGE, syntax="proto3"
        )
        for msg_name, fields in _MESSAGES:
            msg = fdp.message_type.add(name=msg_name)
            for fname, number, label, mtype in fields:
                f = msg.field.add(
                    name=fname, number=number, label=label, type=_MSG if mtype else _U64
                )
                if mtype:
                    f.type_name = f".{PACKAGE}.{mtype}"
        pool = descriptor_pool.DescriptorPool()
        pool.Add(fdp)
        for msg_name, _ in _MESSAGES:
            _classes[msg_name] = message_factory.GetMessageClass(
                pool.FindMessageTypeByName(f"{PACKAGE}.{msg_name}")
            )
    return _classes[name]


def decode(data: bytes) -> Any:
    m = message_class()()
    m.ParseFromString(data)
    return m


def _io(field: str) -> Callable[[Any], list[Sample]]:
    def samples(m: Any) -> list[Sample]:
        if not m.HasField("io"):
            return []
        return [((str(e.major), str(e.minor)), int(getattr(e, field))) for e in m.io.usage]

    return samples


def _definitions() -> list[Definition]:
    defs = pids_definitions()
    for name, unit, what in [
        ("usage_usec", "microseconds", "CPU time used by the task's cgroup"),
        ("user_usec", "microseconds", "CPU time spent in user space"),
        ("system_usec", "microseconds", "CPU time spent in the kernel"),
        ("nr_periods", "total", "CFS enforcement periods elapsed"),
        ("nr_throttled", "total", "CFS periods in which the cgroup was throttled"),
        ("throttled_usec", "microseconds", "Time the cgroup spent throttled"),
    ]:
        defs.append(
            Definition(
                name=f"container_cpu_{name}_{unit}",
                help=f"{what}.",
                samples=one("cpu", f"cpu.{name}"),
            )
        )
    helps = {
        "usage": "The cgroup's memory usage now.",
        "usage_limit": "The cgroup's memory limit.",
        "swap_usage": "The cgroup's swap usage now.",
        "swap_limit": "The cgroup's swap limit.",
    }
    # containerd's order puts the usage figures first; it names the counts in bytes too
    for field in [*helps, *(f for f in MEMORY_FIELDS if f not in helps)]:
        defs.append(
            Definition(
                name=f"container_memory_{field}_bytes",
                help=helps.get(field, f"The {field} figure of memory.stat for the cgroup."),
                samples=one("memory", f"memory.{field}"),
            )
        )
    defs.append(
        Definition(
            name="container_memory_oom_total",
            help="OOM events in the cgroup (memory.events oom).",
            samples=one("memory_events", "memory_events.oom"),
        )
    )
    for field, unit, what in [
        ("rbytes", "bytes", "Bytes read"),
        ("wbytes", "bytes", "Bytes written"),
        ("rios", "total", "Read operations"),
        ("wios", "total", "Write operations"),
    ]:
        defs.append(
            Definition(
                name=f"container_io_{field}_{unit}",
                help=f"{what} by the cgroup, per device.",
                samples=_io(field),
                labels=("major", "minor"),
            )
        )
    return defs


#: containerd's cgroup v2 task families.
DEFINITIONS: tuple[Definition, ...] = tuple(_definitions())
