"""The remaining RuntimeService handlers around pods (listed in
``pycontainerd.plugins.cri.server.RUNTIME_HANDLER_MODULES``):

* ``StreamPodSandboxes``: the ``ListPodSandbox`` answer (same filter), as one stream message;
* ``ListMetricDescriptors``: the cAdvisor-style descriptors containerd advertises (names,
  help texts and label keys as containerd 2.x has them);
* ``ListPodSandboxMetrics`` / ``StreamPodSandboxMetrics``: per READY pod, metrics built from
  :func:`pycontainerd.plugins.cri.sandbox.stats.pod_sandbox_stats` (pod cgroup, pod network
  and the stats of its containers); nothing is sampled twice;
* ``UpdatePodSandboxResources``: as containerd does, the sandbox is looked up, NRI is told
  (``cri_update_pod_sandbox_resources`` then ``cri_post_update_pod_sandbox_resources`` when
  ``c.nri`` has them) and the resources are remembered on the sandbox; no cgroup is written
  (kubelet resizes the pod cgroup itself);
* ``CheckpointContainer``: containerd's CRIU check first (error shaped as containerd's), then
  the container lookup; checkpointing itself is not implemented (UNIMPLEMENTED).

Metric label values follow the descriptor's label keys (``id``, ``name``, then ``interface``
or ``failure_type``/``scope``): ``id``/``name`` are the container's, or the pod's for the
pod-level metrics. Values are the UInt64 the CRI carries, so seconds are truncated.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

from pycontainerd.core import errdefs
from pycontainerd.plugins.cri.sandbox.handlers import _manager, _pb

log = logging.getLogger(__name__)

# --- StreamPodSandboxes ------------------------------------------------------------------


async def stream_pod_sandboxes(c: Any, request: Any, context: Any) -> AsyncIterator[Any]:
    flt = request.filter if request.HasField("filter") else None
    yield _pb().StreamPodSandboxesResponse(pod_sandboxes=(await _manager(c)).list(flt))


# --- ListMetricDescriptors ---------------------------------------------------------------

_BASE = ("id", "name")
_IFACE = (*_BASE, "interface")
_DEVICE = (*_BASE, "device")

#: (name, help, label keys), grouped as containerd groups them (cpu, memory, network, disk
#: usage, disk io, processes).
DESCRIPTORS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("container_cpu_user_seconds_total", "Cumulative user CPU time consumed in seconds.", _BASE),
    (
        "container_cpu_system_seconds_total",
        "Cumulative system CPU time consumed in seconds.",
        _BASE,
    ),
    ("container_cpu_usage_seconds_total", "Cumulative CPU time consumed in seconds.", _BASE),
    ("container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", _BASE),
    ("container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", _BASE),
    (
        "container_cpu_cfs_throttled_seconds_total",
        "Total time duration the container has been throttled.",
        _BASE,
    ),
    ("container_memory_cache", "Number of bytes of page cache memory.", _BASE),
    ("container_memory_rss", "Size of RSS in bytes.", _BASE),
    ("container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", _BASE),
    ("container_memory_mapped_file", "Size of memory mapped files in bytes.", _BASE),
    ("container_memory_swap", "Container swap usage in bytes.", _BASE),
    (
        "container_memory_failcnt",
        "Number of times container memory usage has hit its cgroup v1 upper memory limit, "
        "for cg2 this value is not currently supported",
        _BASE,
    ),
    (
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        _BASE,
    ),
    ("container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", _BASE),
    ("container_memory_working_set_bytes", "Current working set in bytes.", _BASE),
    (
        "container_memory_total_active_file_bytes",
        "Current total active cache memory in file on disk, in bytes.",
        _BASE,
    ),
    (
        "container_memory_total_inactive_file_bytes",
        "Current total inactive cache memory in file, in bytes.",
        _BASE,
    ),
    (
        "container_memory_failures_total",
        "Cumulative count of memory allocation failures.",
        (*_BASE, "failure_type", "scope"),
    ),
    ("container_network_receive_bytes_total", "Cumulative count of bytes received", _IFACE),
    ("container_network_receive_packets_total", "Cumulative count of packets received", _IFACE),
    (
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving",
        _IFACE,
    ),
    (
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
        _IFACE,
    ),
    ("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", _IFACE),
    (
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted",
        _IFACE,
    ),
    (
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting",
        _IFACE,
    ),
    (
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
        _IFACE,
    ),
    ("container_fs_inodes_free", "Number of available Inodes", _DEVICE),
    ("container_fs_inodes_total", "Number of Inodes", _DEVICE),
    (
        "container_fs_limit_bytes",
        "Number of bytes that can be consumed by the container on this filesystem.",
        _DEVICE,
    ),
    (
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
        _DEVICE,
    ),
    ("container_fs_reads_bytes_total", "Cumulative count of bytes read", _DEVICE),
    ("container_fs_reads_total", "Cumulative count of reads completed", _DEVICE),
    ("container_fs_sector_reads_total", "Cumulative count of sector reads completed", _DEVICE),
    ("container_fs_reads_merged_total", "Cumulative count of reads merged", _DEVICE),
    ("container_fs_read_seconds_total", "Cumulative count of seconds spent reading", _DEVICE),
    ("container_fs_writes_bytes_total", "Cumulative count of bytes written", _DEVICE),
    ("container_fs_writes_total", "Cumulative count of writes completed", _DEVICE),
    ("container_fs_sector_writes_total", "Cumulative count of sector writes completed", _DEVICE),
    ("container_fs_writes_merged_total", "Cumulative count of writes merged", _DEVICE),
    ("container_fs_write_seconds_total", "Cumulative count of seconds spent writing", _DEVICE),
    ("container_fs_io_current", "Number of I/Os currently in progress", _DEVICE),
    ("container_fs_io_time_seconds_total", "Cumulative count of seconds spent doing I/Os", _DEVICE),
    (
        "container_fs_io_time_weighted_seconds_total",
        "Cumulative weighted I/O time in seconds",
        _DEVICE,
    ),
    (
        "container_blkio_device_usage_total",
        "Blkio device bytes usage",
        (*_DEVICE, "major", "minor", "operation"),
    ),
    ("container_processes", "Number of processes running inside the container.", _BASE),
    (
        "container_threads_max",
        "Maximum number of threads allowed inside the container, infinity if value is zero",
        _BASE,
    ),
)


async def list_metric_descriptors(c: Any, request: Any, context: Any) -> Any:
    pb = _pb()
    return pb.ListMetricDescriptorsResponse(
        descriptors=[pb.MetricDescriptor(name=n, help=h, label_keys=k) for n, h, k in DESCRIPTORS]
    )


# --- ListPodSandboxMetrics / StreamPodSandboxMetrics -------------------------------------

_NS = 1_000_000_000


def _metric(name: str, kind: str, labels: list[str], value: int, ts: int) -> Any:
    pb = _pb()
    m = pb.Metric(
        name=name,
        timestamp=ts,
        metric_type=pb.MetricType.Value(kind),
        label_values=labels,
    )
    m.value.value = max(0, int(value))
    return m


def _cpu_memory(labels: list[str], cpu: Any, memory: Any, ts: int) -> list[Any]:
    """Metrics of a ``CpuUsage`` and a ``MemoryUsage`` (either may be unset)."""
    out = []
    if cpu.HasField("usage_core_nano_seconds"):
        out.append(
            _metric(
                "container_cpu_usage_seconds_total",
                "COUNTER",
                labels,
                cpu.usage_core_nano_seconds.value // _NS,
                cpu.timestamp or ts,
            )
        )
    if memory.HasField("usage_bytes"):
        mts = memory.timestamp or ts
        for name, field in (
            ("container_memory_usage_bytes", "usage_bytes"),
            ("container_memory_working_set_bytes", "working_set_bytes"),
            ("container_memory_rss", "rss_bytes"),
        ):
            out.append(_metric(name, "GAUGE", labels, getattr(memory, field).value, mts))
        for failure, field in (("pgfault", "page_faults"), ("pgmajfault", "major_page_faults")):
            out.append(
                _metric(
                    "container_memory_failures_total",
                    "COUNTER",
                    [*labels, failure, "container"],
                    getattr(memory, field).value,
                    mts,
                )
            )
    return out


def _network(labels: list[str], network: Any, ts: int) -> list[Any]:
    out = []
    ifaces = list(network.interfaces)
    if network.HasField("default_interface"):
        ifaces.insert(0, network.default_interface)
    nts = network.timestamp or ts
    for iface in ifaces:
        il = [*labels, iface.name]
        for name, field in (
            ("container_network_receive_bytes_total", "rx_bytes"),
            ("container_network_receive_errors_total", "rx_errors"),
            ("container_network_transmit_bytes_total", "tx_bytes"),
            ("container_network_transmit_errors_total", "tx_errors"),
        ):
            out.append(_metric(name, "COUNTER", il, getattr(iface, field).value, nts))
    return out


def to_metrics(pod_stats: Any) -> Any:
    """``PodSandboxMetrics`` of a ``PodSandboxStats``."""
    pb = _pb()
    ts = time.time_ns()
    attrs_ = pod_stats.attributes
    linux = pod_stats.linux
    labels = [attrs_.id, attrs_.metadata.name]
    out = pb.PodSandboxMetrics(pod_sandbox_id=attrs_.id)
    out.metrics.extend(_cpu_memory(labels, linux.cpu, linux.memory, ts))
    if linux.process.HasField("process_count"):
        out.metrics.append(
            _metric(
                "container_processes",
                "GAUGE",
                labels,
                linux.process.process_count.value,
                linux.process.timestamp or ts,
            )
        )
    out.metrics.extend(_network(labels, linux.network, ts))
    for cs in linux.containers:
        clabels = [cs.attributes.id, cs.attributes.metadata.name]
        out.container_metrics.append(
            pb.ContainerMetrics(
                container_id=cs.attributes.id,
                metrics=_cpu_memory(clabels, cs.cpu, cs.memory, ts),
            )
        )
    return out


async def _pod_metrics(c: Any) -> list[Any]:
    from pycontainerd.plugins.cri.sandbox import stats

    await _manager(c)
    return [to_metrics(s) for s in await stats.list_stats(c, None)]


async def list_pod_sandbox_metrics(c: Any, request: Any, context: Any) -> Any:
    return _pb().ListPodSandboxMetricsResponse(pod_metrics=await _pod_metrics(c))


async def stream_pod_sandbox_metrics(c: Any, request: Any, context: Any) -> AsyncIterator[Any]:
    yield _pb().StreamPodSandboxMetricsResponse(pod_sandbox_metrics=await _pod_metrics(c))


# --- UpdatePodSandboxResources -----------------------------------------------------------

#: sandbox -> (overhead, resources) of its last UpdatePodSandboxResources
_updated: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = weakref.WeakKeyDictionary()


def updated_resources(sandbox: Any) -> tuple[Any, Any] | None:
    """(overhead, resources) the last UpdatePodSandboxResources gave ``sandbox``, if any."""
    return _updated.get(sandbox)


async def update_pod_sandbox_resources(c: Any, request: Any, context: Any) -> Any:
    m = await _manager(c)
    try:
        sandbox = m.store.get(request.pod_sandbox_id)
    except errdefs.ContainerdError as e:
        raise type(e)(f"failed to find sandbox: {e}") from None
    overhead = request.overhead if request.HasField("overhead") else None
    resources = request.resources if request.HasField("resources") else None
    nri = getattr(c, "nri", None)
    update = getattr(nri, "cri_update_pod_sandbox_resources", None)
    if update is not None:
        try:
            await update(sandbox=sandbox, overhead=overhead, resources=resources)
        except errdefs.ContainerdError as e:
            raise type(e)(f"NRI sandbox update failed: {e}") from None
    # remembered for whoever wants them (containerd keeps them in the sandbox status);
    # nothing is applied to cgroups
    _updated[sandbox] = (overhead, resources)
    post = getattr(nri, "cri_post_update_pod_sandbox_resources", None)
    if post is not None:
        try:
            await post(sandbox=sandbox)
        except Exception as e:  # noqa: BLE001 - a notification; containerd only logs it
            log.error("NRI post-update notification failed: %s", e)
    return _pb().UpdatePodSandboxResourcesResponse()


# --- CheckpointContainer -----------------------------------------------------------------

#: The CRIU version containerd requires for pod checkpointing (go-criu's PodCriuVersion).
POD_CRIU_VERSION = 31600
CRIU_BINARY = "criu"


def criu_version(binary: str | None = None) -> int:
    """CRIU's version as major*10000 + minor*100 + sublevel; raises OSError/ValueError when
    it cannot be found or asked."""
    path = shutil.which(binary or CRIU_BINARY) or shutil.which(
        binary or CRIU_BINARY, path="/usr/local/sbin:/usr/sbin:/sbin"
    )
    if path is None:
        raise FileNotFoundError(f'exec: "{binary or CRIU_BINARY}": executable file not found')
    out = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    for line in out.splitlines():
        if line.startswith("Version:"):
            parts = [int(p) for p in line.split(":", 1)[1].strip().split(".")[:3]]
            parts += [0] * (3 - len(parts))
            return parts[0] * 10000 + parts[1] * 100 + parts[2]
    raise ValueError(f"unexpected output of {path} --version: {out!r}")


def _check_criu() -> str | None:
    """None when a recent enough CRIU is there, else why not (go-criu's wording)."""
    try:
        version = criu_version()
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        return f"failed to check for criu version: {e}"
    if version < POD_CRIU_VERSION:
        return (
            f"checkpoint/restore requires at least CRIU {POD_CRIU_VERSION}, "
            f"current version is {version}"
        )
    return None


async def checkpoint_container(c: Any, request: Any, context: Any) -> Any:
    from pycontainerd.plugins.cri.container.handlers import manager

    cid = request.container_id
    problem = await asyncio.to_thread(_check_criu)
    if problem is not None:
        # containerd wraps a plain error here: UNKNOWN on the wire
        raise errdefs.Unknown(
            f"CRIU binary not found or too old (<{POD_CRIU_VERSION}). Failed to checkpoint "
            f'container "{cid}": {problem}'
        )
    m = await manager(c)
    try:
        m.get(cid)
    except errdefs.ContainerdError as e:
        raise type(e)(
            f'an error occurred when trying to find container the container status "{cid}": {e}'
        ) from None
    raise errdefs.NotImplemented_(
        f'cri: checkpointing container "{cid}" is not implemented by pycontainerd (CRIU is '
        "available, but the task Checkpoint and the checkpoint archive are not built)"
    )
