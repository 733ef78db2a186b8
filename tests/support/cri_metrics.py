"""critest's rules for the CRI metrics endpoints (cri-tools ``pkg/validate/pod.go``): the
metric names it expects, those it lets runtimes leave out, those whose values may be missing,
and the checks of its two metrics specs as functions returning what fails."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

EXPECTED = frozenset(
    """
    container_blkio_device_usage_total container_cpu_cfs_periods_total
    container_cpu_cfs_throttled_periods_total container_cpu_cfs_throttled_seconds_total
    container_cpu_system_seconds_total container_cpu_usage_seconds_total
    container_cpu_user_seconds_total container_file_descriptors container_fs_inodes_free
    container_fs_inodes_total container_fs_limit_bytes container_fs_reads_bytes_total
    container_fs_reads_total container_fs_usage_bytes container_fs_writes_bytes_total
    container_fs_writes_total container_hugetlb_max_usage_bytes container_hugetlb_usage_bytes
    container_last_seen container_memory_cache container_memory_failcnt
    container_memory_failures_total container_memory_kernel_usage container_memory_mapped_file
    container_memory_max_usage_bytes container_memory_rss container_memory_swap
    container_memory_usage_bytes container_memory_working_set_bytes
    container_network_receive_bytes_total container_network_receive_errors_total
    container_network_receive_packets_dropped_total container_network_receive_packets_total
    container_network_transmit_bytes_total container_network_transmit_errors_total
    container_network_transmit_packets_dropped_total container_network_transmit_packets_total
    container_oom_events_total container_pressure_cpu_stalled_seconds_total
    container_pressure_cpu_waiting_seconds_total container_pressure_io_stalled_seconds_total
    container_pressure_io_waiting_seconds_total container_pressure_memory_stalled_seconds_total
    container_pressure_memory_waiting_seconds_total container_processes container_sockets
    container_spec_cpu_period container_spec_cpu_quota container_spec_cpu_shares
    container_spec_memory_limit_bytes container_spec_memory_reservation_limit_bytes
    container_spec_memory_swap_limit_bytes container_start_time_seconds container_threads
    container_threads_max container_ulimits_soft
    """.split()
)

#: may be absent altogether
UNIMPLEMENTED = frozenset(
    """
    container_hugetlb_max_usage_bytes container_hugetlb_usage_bytes
    container_pressure_cpu_stalled_seconds_total container_pressure_cpu_waiting_seconds_total
    container_pressure_io_stalled_seconds_total container_pressure_io_waiting_seconds_total
    container_pressure_memory_stalled_seconds_total
    container_pressure_memory_waiting_seconds_total container_spec_cpu_quota
    container_spec_memory_reservation_limit_bytes container_ulimits_soft
    """.split()
)

#: the descriptor is required, a value is not (blkio accounting depends on the disk)
OPTIONAL_VALUES = frozenset(
    """
    container_blkio_device_usage_total container_fs_reads_bytes_total container_fs_reads_total
    container_fs_writes_bytes_total container_fs_writes_total
    """.split()
)


def descriptor_problems(descriptors: Iterable[Any]) -> list[str]:
    """What "runtime should support returning metrics descriptors" would fail on."""
    problems = []
    names = set()
    for d in descriptors:
        names.add(d.name)
        if not d.help:
            problems.append(f"{d.name}: no help")
        if not d.label_keys:
            problems.append(f"{d.name}: no label keys")
    problems += [f"{n}: no descriptor" for n in sorted(EXPECTED - UNIMPLEMENTED - names)]
    return problems


def pod_metrics_problems(descriptors: Iterable[Any], pod: Any) -> list[str]:
    """What "runtime should support listing pod sandbox metrics" would fail on for ``pod`` (a
    ``PodSandboxMetrics``): the label values of the first series of each name with any,
    checked against the expected names and the descriptors."""
    found: dict[str, list[str]] = {}
    series = list(pod.metrics) + [m for c in pod.container_metrics for m in c.metrics]
    for m in series:
        if not found.get(m.name):
            found[m.name] = list(m.label_values)
    excused = UNIMPLEMENTED | OPTIONAL_VALUES
    problems = [f"{n}: no value" for n in sorted(EXPECTED - excused) if not found.get(n)]
    for d in descriptors:
        if d.name not in found:
            if d.name not in excused:
                problems.append(f"{d.name}: described, no value")
        elif len(found[d.name]) != len(d.label_keys):
            problems.append(
                f"{d.name}: {len(found[d.name])} label values for {len(d.label_keys)} keys"
            )
    return problems
