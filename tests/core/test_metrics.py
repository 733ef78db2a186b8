"""The small Prometheus client: text exposition of counters, gauges and histograms."""

from __future__ import annotations

import pytest

from pycontainerd.core.metrics import Counter, Gauge, Histogram, render


def test_counter_renders_each_label_set_sorted_with_escaped_values():
    c = Counter("x_total", "Things.", "plugin", "op")
    c.inc("b", "Create")
    c.inc("a", 'say "hi"\n', amount=2.5)
    c.inc("b", "Create")
    assert c.render() == [
        "# HELP x_total Things.",
        "# TYPE x_total counter",
        'x_total{plugin="a",op="say \\"hi\\"\\n"} 2.5',
        'x_total{plugin="b",op="Create"} 2',
    ]
    assert c.value("b", "Create") == 2
    with pytest.raises(ValueError, match="expected labels"):
        c.inc("only-one")


def test_gauge_reads_its_value_when_rendered():
    n = [3]
    g = Gauge("active_total", "Active.", lambda: n[0])
    n[0] = 4
    assert g.render()[-1] == "active_total 4"


def test_histogram_buckets_are_cumulative_with_sum_and_count():
    h = Histogram("lat_seconds", "Latency.", "op", buckets=(0.1, 1))
    h.observe(0.05, "a")
    h.observe(0.5, "a")
    h.observe(3, "a")
    assert h.render()[2:] == [
        'lat_seconds_bucket{op="a",le="0.1"} 1',
        'lat_seconds_bucket{op="a",le="1"} 2',
        'lat_seconds_bucket{op="a",le="+Inf"} 3',
        'lat_seconds_sum{op="a"} 3.55',
        'lat_seconds_count{op="a"} 3',
    ]
    assert h.count("a") == 3 and h.count("b") == 0
    assert render([Counter("empty_total", "None.")]) == [
        "# HELP empty_total None.",
        "# TYPE empty_total counter",
    ]
