"""The cgroups task monitor's Prometheus collector.

At every scrape of ``/v1/metrics`` the metrics server awaits
:meth:`TaskMonitor.collect_prometheus_metrics`: every task of every namespace in the runtime
v2 plugin is asked for its stats (the shim's Stats RPC) concurrently, each with containerd's
``io.containerd.timeout.metrics.shimstats`` bound; a task whose shim does not answer in time,
has gone, or has no cgroup stats any more is left out of this scrape.

The stats of a cgroup v1 host (``io.containerd.cgroups.v1.Metrics``, decoded with the message
description in :mod:`pycontainerd.plugins.runtimes.pyrunc.metrics`) become containerd's
``container_*`` families (``core/metrics/cgroups/v1`` upstream): names built as go-metrics
does (``container_<name>_<unit>``), every one a gauge as upstream, labelled ``container_id``
and ``namespace`` and, where a stat has several values, ``cpu``, ``op``/``device``/``major``/
``minor`` or ``page``. Families without a sample are left out, as client_golang does.

The stats of a cgroup v2 host (``io.containerd.cgroups.v2.Metrics``) become containerd's v2
families (:mod:`pycontainerd.plugins.monitor.cgroups.v2`). Stats of another type are skipped.

Not done: the ``runtime`` label containerd adds to the series of tasks created through its
tasks service since the daemon started (the shim manager does not record a task's runtime
name). The v1 ``container_memory_oom_total`` is left out: containerd fills it only for tasks
that hand it their cgroup, which runtime v2 shim tasks do not (v2 reads it from the stats).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from google.protobuf.message import DecodeError

from pycontainerd.core import errdefs
from pycontainerd.core.metrics import escape
from pycontainerd.core.runtime import PlatformRuntime, Task

log = logging.getLogger(__name__)

#: containerd's ``io.containerd.timeout.metrics.shimstats``, in seconds
STATS_TIMEOUT = 2.0

#: The stats message of cgroup v1 hosts (what both shims send on this kind of host).
V1_METRICS = "io.containerd.cgroups.v1.Metrics"

#: The labels every series has (upstream's ``IDName`` and the containerd namespace).
TASK_LABELS = ("container_id", "namespace")

#: A series of one task: the values of the family's own labels, and the value.
Sample = tuple[tuple[str, ...], int]


@attrs.frozen(kw_only=True)
class Definition:
    """One ``container_*`` family and how to read its samples from a Metrics message."""

    name: str
    help: str
    samples: Callable[[Any], list[Sample]]
    labels: tuple[str, ...] = ()
    kind: str = "gauge"


@attrs.define(eq=False, kw_only=True)
class Family:
    """A family's series across tasks, rendered in the text exposition format (what
    :func:`pycontainerd.core.metrics.render` asks of a metric)."""

    name: str
    help: str
    kind: str
    label_keys: tuple[str, ...]
    series: list[tuple[tuple[str, ...], int]] = attrs.Factory(list)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        for values, value in self.series:
            labels = ",".join(
                f'{k}="{escape(v)}"' for k, v in zip(self.label_keys, values, strict=True)
            )
            lines.append(f"{self.name}{{{labels}}} {value}")
        return lines


def _present(m: Any, path: str) -> bool:
    """Whether every message along the dotted ``path`` is set in ``m``."""
    for part in path.split("."):
        if not m.HasField(part):
            return False
        m = getattr(m, part)
    return True


def _value(m: Any, path: str) -> int:
    for part in path.split("."):
        m = getattr(m, part)
    return int(m)


def one(present: str, path: str) -> Callable[[Any], list[Sample]]:
    """A single series: the value at ``path`` when ``present`` is set."""

    def samples(m: Any) -> list[Sample]:
        return [((), _value(m, path))] if _present(m, present) else []

    return samples


def _per_cpu(m: Any) -> list[Sample]:
    if not _present(m, "cpu"):
        return []
    return [((str(i),), int(v)) for i, v in enumerate(m.cpu.usage.per_cpu)]


def _blkio(field: str) -> Callable[[Any], list[Sample]]:
    def samples(m: Any) -> list[Sample]:
        if not _present(m, "blkio"):
            return []
        return [
            ((e.op, e.device, str(e.major), str(e.minor)), int(e.value))
            for e in getattr(m.blkio, field)
        ]

    return samples


def _hugetlb(field: str) -> Callable[[Any], list[Sample]]:
    def samples(m: Any) -> list[Sample]:
        return [((h.pagesize,), int(getattr(h, field))) for h in m.hugetlb]

    return samples


def pids_definitions() -> list[Definition]:
    """The pids families, the same in cgroup v1 and v2 stats."""
    return [
        Definition(
            name="container_pids_limit",
            help="Most processes the task's cgroup may hold (0: no limit).",
            samples=one("pids", "pids.limit"),
        ),
        Definition(
            name="container_pids_current",
            help="Processes in the task's cgroup now.",
            samples=one("pids", "pids.current"),
        ),
    ]


def _v1_definitions() -> list[Definition]:
    defs = pids_definitions()
    for name, path, what in [
        ("cpu_total_nanoseconds", "usage.total", "CPU time used by the task's cgroup"),
        ("cpu_kernel_nanoseconds", "usage.kernel", "CPU time spent in the kernel"),
        ("cpu_user_nanoseconds", "usage.user", "CPU time spent in user space"),
        ("cpu_throttle_periods_total", "throttling.periods", "CFS enforcement periods elapsed"),
        (
            "cpu_throttled_periods_total",
            "throttling.throttled_periods",
            "CFS periods in which the cgroup was throttled",
        ),
        (
            "cpu_throttled_time_nanoseconds",
            "throttling.throttled_time",
            "Time the cgroup spent throttled",
        ),
    ]:
        defs.append(
            Definition(name=f"container_{name}", help=f"{what}.", samples=one("cpu", f"cpu.{path}"))
        )
    defs.append(
        Definition(
            name="container_per_cpu_nanoseconds",
            help="CPU time used by the task's cgroup on each CPU.",
            samples=_per_cpu,
            labels=("cpu",),
        )
    )
    # memory.stat entries: (metric name, field of MemoryStat)
    stats = [
        ("cache", "cache"),
        ("rss", "rss"),
        ("rss_huge", "rss_huge"),
        ("mapped_file", "mapped_file"),
        ("dirty", "dirty"),
        ("writeback", "writeback"),
        ("pgpgin", "pg_pg_in"),
        ("pgpgout", "pg_pg_out"),
        ("pgfault", "pg_fault"),
        ("pgmajfault", "pg_maj_fault"),
        ("inactive_anon", "inactive_anon"),
        ("active_anon", "active_anon"),
        ("inactive_file", "inactive_file"),
        ("active_file", "active_file"),
        ("unevictable", "unevictable"),
    ]
    # containerd names the counts (pgfault ...) in bytes too; the names are kept as its
    for name, field in [
        *stats,
        ("hierarchical_memory_limit", "hierarchical_memory_limit"),
        ("hierarchical_memsw_limit", "hierarchical_swap_limit"),
        *((f"total_{n}", f"total_{f}") for n, f in stats),
    ]:
        scope = "the cgroup and its descendants" if name.startswith("total_") else "the cgroup"
        defs.append(
            Definition(
                name=f"container_memory_{name}_bytes",
                help=f"The {name.removeprefix('total_')} figure of memory.stat for {scope}.",
                samples=one("memory", f"memory.{field}"),
            )
        )
    for entry, field, what in [
        ("usage", "usage", "memory"),
        ("swap", "swap", "memory+swap"),
        ("kernel", "kernel", "kernel memory"),
        ("kerneltcp", "kernel_tcp", "kernel TCP buffer memory"),
    ]:
        present = f"memory.{field}"
        defs += [
            Definition(
                name=f"container_memory_{entry}_failcnt_total",
                help=f"Times the cgroup's {what} usage hit its limit.",
                samples=one(present, f"{present}.failcnt"),
            ),
            Definition(
                name=f"container_memory_{entry}_limit_bytes",
                help=f"The cgroup's {what} limit.",
                samples=one(present, f"{present}.limit"),
            ),
            Definition(
                name=f"container_memory_{entry}_max_bytes",
                help=f"The highest {what} usage of the cgroup seen.",
                samples=one(present, f"{present}.max"),
            ),
            Definition(
                name=f"container_memory_{entry}_usage_bytes",
                help=f"The cgroup's {what} usage now.",
                samples=one(present, f"{present}.usage"),
            ),
        ]
    blkio_labels = ("op", "device", "major", "minor")
    for field, unit, what in [
        ("io_merged_recursive", "total", "merged requests"),
        ("io_queued_recursive", "total", "queued requests"),
        ("io_service_bytes_recursive", "bytes", "bytes transferred"),
        ("io_service_time_recursive", "total", "time spent servicing requests"),
        ("io_serviced_recursive", "total", "requests serviced"),
        ("io_time_recursive", "total", "time with I/O under way"),
        ("sectors_recursive", "total", "sectors transferred"),
    ]:
        defs.append(
            Definition(
                name=f"container_blkio_{field}_{unit}",
                help=f"Block I/O of the cgroup and its descendants: {what}, per device and op.",
                samples=_blkio(field),
                labels=blkio_labels,
            )
        )
    for field, unit, what in [
        ("usage", "bytes", "Huge page memory the cgroup uses now"),
        ("failcnt", "total", "Times the cgroup's huge page usage hit its limit"),
        ("max", "bytes", "The highest huge page usage of the cgroup seen"),
    ]:
        defs.append(
            Definition(
                name=f"container_hugetlb_{field}_{unit}",
                help=f"{what}, per page size.",
                samples=_hugetlb(field),
                labels=("page",),
            )
        )
    return defs


#: containerd's cgroup v1 task families.
V1_DEFINITIONS: tuple[Definition, ...] = tuple(_v1_definitions())


def families(
    stats: Iterable[tuple[str, str, Any]], definitions: Iterable[Definition] = V1_DEFINITIONS
) -> list[Family]:
    """The families with at least one series for ``stats``: (task id, namespace, decoded
    Metrics message) triples, sorted by namespace and id in each family; families by name."""
    ordered = sorted(stats, key=lambda s: (s[1], s[0]))
    out: list[Family] = []
    for d in definitions:
        fam = Family(name=d.name, help=d.help, kind=d.kind, label_keys=TASK_LABELS + d.labels)
        for task_id, namespace, m in ordered:
            for values, value in d.samples(m):
                fam.series.append(((task_id, namespace, *values), value))
        if fam.series:
            out.append(fam)
    return sorted(out, key=lambda f: f.name)


def decode_v1(data: bytes) -> Any:
    from pycontainerd.plugins.runtimes.pyrunc.metrics import message_class

    m = message_class()()
    m.ParseFromString(data)
    return m


def kinds() -> dict[str, tuple[Callable[[bytes], Any], tuple[Definition, ...]]]:
    """Per stats message type: its decoder and its families."""
    from pycontainerd.plugins.monitor.cgroups import v2

    return {V1_METRICS: (decode_v1, V1_DEFINITIONS), v2.TYPE_URL: (v2.decode, v2.DEFINITIONS)}


def merge(*lists: list[Family]) -> list[Family]:
    """Families of several kinds as one list by name; a name two kinds share (cgroup v1 and v2
    tasks in one scrape) keeps one header and the series of both."""
    by_name: dict[str, Family] = {}
    for fams in lists:
        for f in fams:
            if f.name in by_name:
                by_name[f.name].series.extend(f.series)
            else:
                by_name[f.name] = attrs.evolve(f, series=list(f.series))
    return sorted(by_name.values(), key=lambda f: f.name)


@attrs.define(eq=False, kw_only=True)
class TaskMonitor:
    """The ``io.containerd.monitor.task.v1.cgroups`` instance."""

    runtime: PlatformRuntime
    #: false under ``no_prometheus``: nothing is collected nor exposed
    prometheus: bool = True
    stats_timeout: float = STATS_TIMEOUT

    async def collect_prometheus_metrics(self) -> list[Family]:
        if not self.prometheus:
            return []
        tasks = await self.runtime.tasks(True)
        stats = await asyncio.gather(*(self._stats(t) for t in tasks))
        return merge(
            *(
                families((s[1:] for s in stats if s is not None and s[0] == kind), definitions)
                for kind, (_, definitions) in kinds().items()
            )
        )

    async def _stats(self, task: Task) -> tuple[str, str, str, Any] | None:
        """(stats type, task id, namespace, decoded stats), or None when there are none."""
        task_id, namespace = task.id, task.namespace
        try:
            async with asyncio.timeout(self.stats_timeout):
                typed = await task.stats()
        except (errdefs.ContainerdError, TimeoutError) as e:
            log.debug(
                "cgroups monitor: no stats id=%s namespace=%s error=%s",
                task_id,
                namespace,
                str(e) or type(e).__name__,
            )
            return None
        if typed is None:
            return None
        type_url, data = typed
        kind = type_url.rpartition("/")[2]
        known = kinds().get(kind)
        if known is None:
            log.debug(
                "cgroups monitor: stats of type %s not decoded id=%s namespace=%s",
                type_url,
                task_id,
                namespace,
            )
            return None
        try:
            return kind, task_id, namespace, known[0](data)
        except DecodeError as e:
            log.warning(
                "cgroups monitor: undecodable stats id=%s namespace=%s error=%s",
                task_id,
                namespace,
                e,
            )
            return None
