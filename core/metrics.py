"""A small Prometheus client: labelled counters, gauges and histograms rendered in the text
exposition format, for subsystems that expose metrics the way containerd's do (docker/go-metrics
names: ``<namespace>_<subsystem>_<name>_<unit>``).

A plugin instance with a ``prometheus_metrics()`` method returning these objects has them on
the metrics server's ``/v1/metrics`` (``io.containerd.server.v1.metrics``). An instance whose
metrics must be gathered at scrape time by awaiting something (shims, other processes) offers
``async def collect_prometheus_metrics() -> list`` instead: the server awaits it on every
scrape and renders what it returns (objects with a ``render() -> list[str]`` method, as these
classes have) after the others; a collection that raises is logged and left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

#: Prometheus client_golang's DefBuckets (what go-metrics timers use), in seconds.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def escape(value: str) -> str:
    """A label value as the text format writes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(keys: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{k}="{escape(v)}"' for k, v in zip(keys, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v)) if v != int(v) else str(int(v))


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, *labels: str) -> None:  # noqa: A002
        self.name = name
        self.help = help
        self.label_keys = labels

    def _header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def _key(self, values: tuple[str, ...]) -> tuple[str, ...]:
        if len(values) != len(self.label_keys):
            raise ValueError(f"{self.name}: expected labels {self.label_keys}, got {values}")
        return tuple(str(v) for v in values)

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, *labels: str) -> None:  # noqa: A002
        super().__init__(name, help, *labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, *values: str, amount: float = 1.0) -> None:
        key = self._key(values)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *values: str) -> float:
        return self._values.get(self._key(values), 0.0)

    def render(self) -> list[str]:
        lines = self._header()
        for key, v in sorted(self._values.items()):
            lines.append(f"{self.name}{_labels(self.label_keys, key)} {_number(v)}")
        return lines


class Gauge(_Metric):
    """A gauge without labels whose value comes from ``read()`` when rendered."""

    kind = "gauge"

    def __init__(self, name: str, help: str, read: Callable[[], float]) -> None:  # noqa: A002
        super().__init__(name, help)
        self.read = read

    def render(self) -> list[str]:
        return [*self._header(), f"{self.name} {_number(self.read())}"]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,  # noqa: A002
        *labels: str,
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, help, *labels)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[tuple[str, ...], list[float]] = {}  # bucket counts..., sum, count

    def observe(self, value: float, *values: str) -> None:
        key = self._key(values)
        s = self._series.setdefault(key, [0.0] * (len(self.buckets) + 2))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                s[i] += 1
        s[-2] += value
        s[-1] += 1

    def count(self, *values: str) -> int:
        s = self._series.get(self._key(values))
        return int(s[-1]) if s else 0

    def render(self) -> list[str]:
        lines = self._header()
        for key, s in sorted(self._series.items()):
            for bound, n in zip(self.buckets, s, strict=False):
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.label_keys, key, le)} {int(n)}")
            inf = _labels(self.label_keys, key, 'le="+Inf"')
            lines.append(f"{self.name}_bucket{inf} {int(s[-1])}")
            lines.append(f"{self.name}_sum{_labels(self.label_keys, key)} {_number(s[-2])}")
            lines.append(f"{self.name}_count{_labels(self.label_keys, key)} {int(s[-1])}")
        return lines


def render(metrics: Iterable[_Metric]) -> list[str]:
    out: list[str] = []
    for m in metrics:
        out += m.render()
    return out
