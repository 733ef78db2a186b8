"""The NRI adaptation's metrics, named as containerd's (``internal/nri/metrics.go``, through
docker/go-metrics): plugin invocations by outcome, their latency, the updates and evictions
plugins asked for, and the number of active plugins. Served by the metrics server through
:meth:`NRI.prometheus_metrics <pycontainerd.core.nri.adaptation.NRI.prometheus_metrics>`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pycontainerd.core import errdefs
from pycontainerd.core.metrics import Counter, Gauge, Histogram


def error_type(err: BaseException | None) -> str:
    """containerd's ``error`` label: "" on success, the gRPC code in snake case."""
    if err is None:
        return ""
    if isinstance(err, TimeoutError):
        return "deadline_exceeded"
    if isinstance(err, asyncio.CancelledError):
        return "canceled"
    if isinstance(err, errdefs.ContainerdError):
        code = errdefs.Code(err.code)
        return "canceled" if code is errdefs.Code.CANCELLED else code.name.lower()
    return "other"


class NRIMetrics:
    def __init__(self, active: Callable[[], int]) -> None:
        self.invocations = Counter(
            "containerd_nri_plugin_invocations_total",
            "Number of NRI plugin invocations",
            "plugin",
            "operation",
            "status",
            "error",
        )
        self.adjustments = Counter(
            "containerd_nri_plugin_adjustments_total",
            "Number of adjustment operations from plugins",
            "plugin",
            "operation",
            "type",
        )
        self.latency = Histogram(
            "containerd_nri_plugin_latency_seconds",
            "NRI plugin operation latency",
            "plugin",
            "operation",
        )
        self.active = Gauge(
            "containerd_nri_active_plugins_total",
            "Number of currently active NRI plugins",
            lambda: float(active()),
        )

    def invocation(
        self, plugin: str, operation: str, seconds: float, err: BaseException | None
    ) -> None:
        status = "success" if err is None else "error"
        self.invocations.inc(plugin, operation, status, error_type(err))
        self.latency.observe(seconds, plugin, operation)

    def adjusted(self, plugin: str, operation: str, updates: int, evictions: int) -> None:
        if updates:
            self.adjustments.inc(plugin, operation, "update", amount=updates)
        if evictions:
            self.adjustments.inc(plugin, operation, "evict", amount=evictions)

    def all(self) -> list[Counter | Gauge | Histogram]:
        return [self.invocations, self.adjustments, self.latency, self.active]
