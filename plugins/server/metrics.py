"""Prometheus text exposition at ``/v1/metrics``: gRPC calls, plugin states, process, and
the metrics of every initialised plugin instance that has ``prometheus_metrics()`` or
``async collect_prometheus_metrics()`` (see :mod:`pycontainerd.core.metrics`), e.g. NRI's
and the cgroups task monitor's."""

from __future__ import annotations

import logging
import os
import resource
import time
from typing import Any

from pycontainerd.core.metrics import escape as _esc
from pycontainerd.core.metrics import render as render_metrics
from pycontainerd.core.plugin.context import PluginSet, Status
from pycontainerd.core.server.http import HTTPServer

log = logging.getLogger(__name__)

_START = time.time()


async def collect(plugins: PluginSet) -> list[Any]:
    """What the instances with ``collect_prometheus_metrics()`` collect now, in init order; a
    collection that fails is logged and left out."""
    out: list[Any] = []
    for p in plugins:
        if p.status is not Status.OK:
            continue
        collect_async = getattr(p.instance, "collect_prometheus_metrics", None)
        if not callable(collect_async):
            continue
        try:
            out += await collect_async()
        except Exception as e:
            log.warning(
                "metrics: collection failed type=%s id=%s error=%s",
                p.registration.type,
                p.registration.id,
                e,
            )
    return out


def render(plugins: PluginSet, collected: list[Any] | None = None) -> str:
    lines: list[str] = []
    lines += [
        "# HELP process_resident_memory_bytes Resident memory size in bytes.",
        "# TYPE process_resident_memory_bytes gauge",
    ]
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    lines.append(f"process_resident_memory_bytes {rss}")
    ru = resource.getrusage(resource.RUSAGE_SELF)
    lines += [
        "# HELP process_cpu_seconds_total Total user and system CPU time.",
        "# TYPE process_cpu_seconds_total counter",
        f"process_cpu_seconds_total {ru.ru_utime + ru.ru_stime:.6f}",
        "# HELP process_start_time_seconds Start time of the process since unix epoch.",
        "# TYPE process_start_time_seconds gauge",
        f"process_start_time_seconds {_START:.3f}",
    ]
    lines += [
        "# HELP pycontainerd_plugin_status Plugin init status (1 for the plugin's status).",
        "# TYPE pycontainerd_plugin_status gauge",
    ]
    for p in plugins:
        lines.append(
            f'pycontainerd_plugin_status{{type="{_esc(p.registration.type)}",'
            f'id="{_esc(p.registration.id)}",status="{p.status.value}"}} 1'
        )
    grpc_plugin = plugins.get("io.containerd.server.v1.grpc")
    if grpc_plugin is not None and grpc_plugin.status is Status.OK:
        stats = grpc_plugin.instance.stats
        lines += [
            "# HELP grpc_server_handled_total Total number of RPCs completed on the server.",
            "# TYPE grpc_server_handled_total counter",
        ]
        for (method, code), n in sorted(stats.counts.items()):
            svc, _, name = method.lstrip("/").rpartition("/")
            lines.append(
                f'grpc_server_handled_total{{grpc_service="{_esc(svc)}",grpc_method="{_esc(name)}",'
                f'grpc_code="{code}"}} {n}'
            )
    for p in plugins:
        collect = getattr(p.instance, "prometheus_metrics", None) if p.status is Status.OK else None
        if callable(collect):
            lines += render_metrics(collect())
    lines += render_metrics(collected or [])
    return "\n".join(lines) + "\n"


def metrics_server(address: str, plugins: PluginSet) -> Any:
    async def handler(query: str) -> tuple[int, str, bytes]:
        collected = await collect(plugins)
        return 200, "text/plain; version=0.0.4", render(plugins, collected).encode()

    return HTTPServer(address=address, routes={"/v1/metrics": handler}, name="metrics")
