"""``io.containerd.monitor.task.v1.cgroups``: the registration as containerd's, the rendering
of a task's ``io.containerd.cgroups.v1.Metrics`` and ``.v2.Metrics`` as containerd's
``container_*`` families, a collection that leaves out tasks that do not answer, and the
metrics server awaiting it."""

from __future__ import annotations

import asyncio

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.config.codec import decode_plugin_config
from pycontainerd.core.config.migrations import migrate_cgroups_monitor
from pycontainerd.core.metrics import render
from pycontainerd.core.plugin import InitContext, Meta, Plugin, Registration, types
from pycontainerd.core.plugin.context import PluginSet
from pycontainerd.plugins import builtins
from pycontainerd.plugins.monitor.cgroups import plugin, v2
from pycontainerd.plugins.monitor.cgroups.collector import TaskMonitor, families
from pycontainerd.plugins.runtimes.pyrunc.metrics import TYPE_URL, message_class
from pycontainerd.plugins.server.metrics import metrics_server


def test_registration_matches_containerd():
    [reg] = plugin.pycontainerd_registrations()
    assert reg.uri == "io.containerd.monitor.task.v1.cgroups"
    assert reg.requires == (types.RUNTIME_V2,)
    assert reg.config is plugin.Config
    assert reg.config_migration is migrate_cgroups_monitor


def test_is_a_builtin_right_before_the_tasks_service():
    mods = builtins.modules()
    i = mods.index("pycontainerd.plugins.monitor.cgroups.plugin")
    assert mods[i + 1] == "pycontainerd.plugins.services.tasks.plugin"
    assert i > mods.index("pycontainerd.plugins.runtimes.v2.plugin")


def test_no_prometheus_defaults_to_false():
    [reg] = plugin.pycontainerd_registrations()
    cfg, warnings = decode_plugin_config(plugin.Config, {}, reg.uri)
    assert (cfg.no_prometheus, warnings) == (False, [])
    cfg, _ = decode_plugin_config(plugin.Config, {"no_prometheus": True}, reg.uri)
    assert cfg.no_prometheus is True


def _metrics(**pids: int):
    """A Metrics message built with the shared description (what the shims send)."""
    m = message_class()()
    m.pids.current = pids.get("current", 3)
    m.pids.limit = pids.get("limit", 0)
    m.cpu.usage.total = 1500
    m.cpu.usage.kernel = 500
    m.cpu.usage.user = 1000
    m.cpu.usage.per_cpu.extend([700, 800])
    m.cpu.throttling.periods = 4
    m.cpu.throttling.throttled_periods = 1
    m.cpu.throttling.throttled_time = 99
    m.memory.rss = 4096
    m.memory.total_cache = 8192
    m.memory.pg_fault = 17
    m.memory.hierarchical_swap_limit = 1 << 63
    m.memory.usage.usage = 123456
    m.memory.usage.limit = 9223372036854771712
    m.memory.usage.max = 200000
    m.memory.usage.failcnt = 2
    m.memory.kernel_tcp.usage = 64
    m.blkio.io_service_bytes_recursive.add(op="Read", device="sda", major=8, minor=0, value=4096)
    m.blkio.io_serviced_recursive.add(op="Write", device="sda", major=8, minor=0, value=3)
    m.hugetlb.add(pagesize="2MB", usage=0, max=2097152, failcnt=1)
    return m


def _text(stats) -> list[str]:
    return render(families(stats))


def test_a_tasks_metrics_render_as_containerds_families():
    lines = _text([("c1", "default", _metrics())])
    task = 'container_id="c1",namespace="default"'
    for line in [
        "# TYPE container_pids_current gauge",
        f"container_pids_current{{{task}}} 3",
        f"container_pids_limit{{{task}}} 0",
        "# TYPE container_cpu_total_nanoseconds gauge",
        f"container_cpu_total_nanoseconds{{{task}}} 1500",
        f"container_cpu_kernel_nanoseconds{{{task}}} 500",
        f"container_cpu_user_nanoseconds{{{task}}} 1000",
        f'container_per_cpu_nanoseconds{{{task},cpu="0"}} 700',
        f'container_per_cpu_nanoseconds{{{task},cpu="1"}} 800',
        f"container_cpu_throttle_periods_total{{{task}}} 4",
        f"container_cpu_throttled_periods_total{{{task}}} 1",
        f"container_cpu_throttled_time_nanoseconds{{{task}}} 99",
        f"container_memory_rss_bytes{{{task}}} 4096",
        f"container_memory_total_cache_bytes{{{task}}} 8192",
        f"container_memory_pgfault_bytes{{{task}}} 17",
        f"container_memory_hierarchical_memsw_limit_bytes{{{task}}} {1 << 63}",
        "# TYPE container_memory_usage_usage_bytes gauge",
        f"container_memory_usage_usage_bytes{{{task}}} 123456",
        f"container_memory_usage_limit_bytes{{{task}}} 9223372036854771712",
        f"container_memory_usage_max_bytes{{{task}}} 200000",
        f"container_memory_usage_failcnt_total{{{task}}} 2",
        f"container_memory_kerneltcp_usage_bytes{{{task}}} 64",
        f"container_blkio_io_service_bytes_recursive_bytes{{{task},"
        'op="Read",device="sda",major="8",minor="0"} 4096',
        f"container_blkio_io_serviced_recursive_total{{{task},"
        'op="Write",device="sda",major="8",minor="0"} 3',
        f'container_hugetlb_usage_bytes{{{task},page="2MB"}} 0',
        f'container_hugetlb_max_bytes{{{task},page="2MB"}} 2097152',
        f'container_hugetlb_failcnt_total{{{task},page="2MB"}} 1',
    ]:
        assert line in lines
    assert any(line.startswith("# HELP container_pids_current ") for line in lines)


def test_unset_parts_of_the_message_give_no_series():
    m = message_class()()
    m.pids.current = 1
    lines = _text([("c1", "ns", m)])
    names = {line.split("{")[0] for line in lines if not line.startswith("#")}
    # no cpu, memory, blkio or hugetlb in the message: only the pids families
    assert names == {"container_pids_current", "container_pids_limit"}


def test_series_of_several_tasks_share_one_family_header():
    lines = _text([("b", "ns2", _metrics(current=2)), ("a", "ns1", _metrics(current=5))])
    assert lines.count("# TYPE container_pids_current gauge") == 1
    i = lines.index("# TYPE container_pids_current gauge")
    assert lines[i + 1 : i + 3] == [
        'container_pids_current{container_id="a",namespace="ns1"} 5',
        'container_pids_current{container_id="b",namespace="ns2"} 2',
    ]


def test_label_values_are_escaped():
    lines = _text([('we"ird', "ns", _metrics())])
    assert 'container_pids_current{container_id="we\\"ird",namespace="ns"} 3' in lines


class _Task:
    def __init__(self, id_: str, namespace: str, stats) -> None:
        self.id = id_
        self.namespace = namespace
        self._stats = stats

    async def stats(self):
        if isinstance(self._stats, BaseException):
            raise self._stats
        if self._stats == "hang":
            await asyncio.Event().wait()
        return self._stats


class _Runtime:
    def __init__(self, tasks: list[_Task]) -> None:
        self._tasks = tasks
        self.listed: list[bool] = []

    async def tasks(self, all: bool = False):  # noqa: A002
        self.listed.append(all)
        return list(self._tasks)


def _v1(m) -> tuple[str, bytes]:
    return (TYPE_URL, m.SerializeToString())


def _pids_lines_of(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("container_pids_current{")]


def _pids_lines(fams) -> list[str]:
    return _pids_lines_of(render(fams))


async def test_collection_asks_every_namespace_and_skips_tasks_that_do_not_answer():
    runtime = _Runtime(
        [
            _Task("good", "default", _v1(_metrics(current=4))),
            _Task("typeurl", "k8s.io", ("type.googleapis.com/" + TYPE_URL, _v1(_metrics())[1])),
            _Task("gone", "default", errdefs.NotFound("task gone")),
            _Task("down", "default", errdefs.Unavailable("shim closed")),
            _Task("slow", "default", "hang"),
            _Task("nostats", "default", None),
            _Task("other", "default", ("io.containerd.cgroups.v9.Metrics", b"\x0a\x02\x08\x01")),
            _Task("garbage", "default", (TYPE_URL, b"\xff\xff\xff")),
        ]
    )
    monitor = TaskMonitor(runtime=runtime, stats_timeout=0.2)
    fams = await monitor.collect_prometheus_metrics()
    assert runtime.listed == [True]
    assert _pids_lines(fams) == [
        'container_pids_current{container_id="good",namespace="default"} 4',
        'container_pids_current{container_id="typeurl",namespace="k8s.io"} 3',
    ]


def _metrics_v2():
    m = v2.message_class()()
    m.pids.current = 2
    m.cpu.usage_usec = 1500
    m.cpu.nr_throttled = 1
    m.memory.usage = 123456
    m.memory.usage_limit = 1 << 62
    m.memory.pgfault = 17
    m.memory_events.oom = 1
    m.io.usage.add(major=8, minor=0, rbytes=4096, wios=3)
    return m


def test_a_cgroup_v2_tasks_metrics_render_as_containerds_v2_families():
    lines = render(families([("c2", "default", _metrics_v2())], v2.DEFINITIONS))
    task = 'container_id="c2",namespace="default"'
    for line in [
        f"container_pids_current{{{task}}} 2",
        "# TYPE container_cpu_usage_usec_microseconds gauge",
        f"container_cpu_usage_usec_microseconds{{{task}}} 1500",
        f"container_cpu_nr_throttled_total{{{task}}} 1",
        f"container_memory_usage_bytes{{{task}}} 123456",
        f"container_memory_usage_limit_bytes{{{task}}} {1 << 62}",
        f"container_memory_pgfault_bytes{{{task}}} 17",
        f"container_memory_oom_total{{{task}}} 1",
        f'container_io_rbytes_bytes{{{task},major="8",minor="0"}} 4096',
        f'container_io_wios_total{{{task},major="8",minor="0"}} 3',
    ]:
        assert line in lines
    # no io in the message: no io families
    m = _metrics_v2()
    m.ClearField("io")
    names = {ln.split("{")[0] for ln in render(families([("c2", "ns", m)], v2.DEFINITIONS))}
    assert not any(n.startswith("container_io_") for n in names)


def test_the_v2_description_reads_containerd_cgroups_field_numbers():
    # hand-encoded per containerd/cgroups' cgroup2 stats proto: pids(1).current(1)=3,
    # cpu(2).throttled_usec(6)=9, memory(4).usage(32)=5, io(6).usage(1){major(1)=8,
    # rbytes(3)=7}, memory_events(8).oom(4)=1
    data = (
        b"\x0a\x02\x08\x03"
        b"\x12\x02\x30\x09"
        b"\x22\x03\x80\x02\x05"
        b"\x32\x06\x0a\x04\x08\x08\x18\x07"
        b"\x42\x02\x20\x01"
    )
    m = v2.decode(data)
    assert (m.pids.current, m.cpu.throttled_usec, m.memory.usage) == (3, 9, 5)
    assert [(e.major, e.rbytes) for e in m.io.usage] == [(8, 7)]
    assert m.memory_events.oom == 1


async def test_cgroup_v1_and_v2_tasks_in_one_scrape_share_a_family_header():
    runtime = _Runtime(
        [
            _Task("one", "default", _v1(_metrics(current=4))),
            _Task("two", "default", (v2.TYPE_URL, _metrics_v2().SerializeToString())),
        ]
    )
    lines = render(await TaskMonitor(runtime=runtime).collect_prometheus_metrics())
    assert lines.count("# TYPE container_pids_current gauge") == 1
    assert _pids_lines_of(lines) == [
        'container_pids_current{container_id="one",namespace="default"} 4',
        'container_pids_current{container_id="two",namespace="default"} 2',
    ]
    assert 'container_cpu_total_nanoseconds{container_id="one",namespace="default"} 1500' in lines
    assert (
        'container_cpu_usage_usec_microseconds{container_id="two",namespace="default"} 1500'
        in lines
    )


async def test_no_prometheus_collects_nothing():
    runtime = _Runtime([_Task("good", "default", _v1(_metrics()))])
    monitor = TaskMonitor(runtime=runtime, prometheus=False)
    assert await monitor.collect_prometheus_metrics() == []
    assert runtime.listed == []


async def _noop(ic):  # pragma: no cover
    return None


def _plugin(type_: str, id_: str, instance) -> Plugin:
    return Plugin(
        registration=Registration(type=type_, id=id_, init=_noop),
        config=None,
        meta=Meta(),
        instance=instance,
    )


@pytest.mark.parametrize("no_prometheus", [False, True])
async def test_init_takes_the_runtime_v2_task_plugin(no_prometheus):
    runtime = _Runtime([])
    ps = PluginSet()
    ps.add(_plugin(types.RUNTIME_V2, "task", runtime))
    [reg] = plugin.pycontainerd_registrations()
    ic = InitContext(
        registration=reg,
        config=plugin.Config(no_prometheus=no_prometheus),
        properties={},
        plugins=ps,
    )
    monitor = await reg.init(ic)
    assert isinstance(monitor, TaskMonitor)
    assert monitor.runtime is runtime
    assert monitor.prometheus is (not no_prometheus)
    assert len(ic.meta.platforms) == 1


class _Broken:
    async def collect_prometheus_metrics(self):
        raise RuntimeError("boom")


async def test_the_metrics_server_awaits_the_collection_on_every_scrape():
    task = _Task("c1", "default", _v1(_metrics(current=6)))
    runtime = _Runtime([task])
    ps = PluginSet()
    ps.add(_plugin(types.MONITOR_TASK, "broken", _Broken()))
    ps.add(_plugin(types.MONITOR_TASK, "cgroups", TaskMonitor(runtime=runtime)))
    handler = metrics_server("127.0.0.1:0", ps).routes["/v1/metrics"]

    status, content_type, body = await handler("")
    assert (status, content_type) == (200, "text/plain; version=0.0.4")
    text = body.decode()
    assert 'container_pids_current{container_id="c1",namespace="default"} 6\n' in text
    # the plugin states are still rendered around the collection
    assert 'pycontainerd_plugin_status{type="io.containerd.monitor.task.v1",id="cgroups"' in text

    task._stats = errdefs.NotFound("deleted")
    _, _, body = await handler("")
    assert "container_pids_current{" not in body.decode()
    assert runtime.listed == [True, True]
