from __future__ import annotations

from pycontainerd.core.config.migrations import (
    migrate_cgroups_monitor,
    migrate_restart_monitor,
    migrate_task_sched_core,
    migrate_v1,
    migrate_v3_services,
    v1_plugin_uri,
)


def test_v1_names_map_to_containerd_uris():
    assert v1_plugin_uri("task") == "io.containerd.runtime.v2.task"
    assert v1_plugin_uri("otlp") == "io.containerd.tracing.processor.v1.otlp"
    assert v1_plugin_uri("content-service") == "io.containerd.service.v1.content-service"
    assert v1_plugin_uri("io.containerd.gc.v1.scheduler") == "io.containerd.gc.v1.scheduler"
    warnings: list[str] = []
    assert v1_plugin_uri("windows-lcow", warnings) == "io.containerd.snapshotter.v1.windows-lcow"
    assert v1_plugin_uri("foo", warnings) == "io.containerd.grpc.v1.foo"
    assert len(warnings) == 2


def test_v1_migration_leaves_proxy_plugins_alone():
    raw = {"proxy_plugins": {"snap": {"type": "snapshot"}}, "plugins": {"bolt": {}}}
    migrate_v1(raw, [])
    assert raw == {
        "proxy_plugins": {"snap": {"type": "snapshot"}},
        "plugins": {"io.containerd.metadata.v1.bolt": {}},
    }


def test_v3_migration_moves_server_tables_into_plugin_sections():
    raw = {
        "grpc": {"address": "/g.sock", "gid": 5, "tcp_address": ":1", "tcp_tls_ca": "/ca"},
        "ttrpc": {"uid": 7},
        "debug": {"address": "/d.sock", "level": "debug"},
        "metrics": {"address": ":9", "grpc_histogram": False},
    }
    warnings: list[str] = []
    migrate_v3_services(raw, warnings)
    assert raw == {
        "plugins": {
            "io.containerd.server.v1.grpc": {"address": "/g.sock", "gid": 5},
            "io.containerd.server.v1.grpc-tcp": {"address": ":1", "tls_ca": "/ca"},
            "io.containerd.server.v1.ttrpc": {"address": "/g.sock.ttrpc", "uid": 7, "gid": 5},
            "io.containerd.server.v1.debug": {"address": "/d.sock"},
            "io.containerd.server.v1.metrics": {"address": ":9"},
            "io.containerd.metrics.v1.grpc-prometheus": {"grpc_histogram": False},
        },
        "debug": {"level": "debug"},
    }
    assert warnings == []


def test_v3_migration_keeps_legacy_values_when_the_plugin_section_exists():
    raw = {
        "grpc": {"address": "/old.sock"},
        "ttrpc": {"address": "/old.ttrpc"},
        "plugins": {
            "io.containerd.server.v1.grpc": {"address": "/new.sock"},
            "io.containerd.server.v1.ttrpc": {"address": "/new.ttrpc"},
        },
    }
    warnings: list[str] = []
    migrate_v3_services(raw, warnings)
    assert raw["plugins"]["io.containerd.server.v1.grpc"] == {"address": "/new.sock"}
    assert raw["grpc"] == {"address": "/old.sock"}
    assert raw["ttrpc"] == {"address": "/old.ttrpc"}
    assert len(warnings) == 2


def test_v3_migration_of_a_file_without_server_tables_adds_nothing():
    raw: dict = {"root": "/r"}
    migrate_v3_services(raw, [])
    assert raw == {"root": "/r", "plugins": {}}


def test_sched_core_becomes_shim_manager_env():
    plugins = {
        "io.containerd.runtime.v2.task": {"sched_core": True, "platforms": ["linux/amd64"]},
        "io.containerd.shim.v1.manager": {"env": ["A=1"]},
    }
    migrate_task_sched_core(2, plugins)
    assert plugins == {
        "io.containerd.runtime.v2.task": {"platforms": ["linux/amd64"]},
        "io.containerd.shim.v1.manager": {"env": ["A=1", "SCHED_CORE=1"]},
    }


def test_sched_core_false_is_dropped_and_other_versions_are_untouched():
    plugins = {"io.containerd.runtime.v2.task": {"sched_core": False}}
    migrate_task_sched_core(3, plugins)
    assert plugins == {"io.containerd.runtime.v2.task": {"sched_core": False}}
    migrate_task_sched_core(2, plugins)
    assert plugins == {}


def test_monitor_sections_are_renamed():
    plugins = {
        "io.containerd.monitor.v1.cgroups": {"no_prometheus": True},
        "io.containerd.internal.v1.restart": {"interval": "10s"},
    }
    migrate_cgroups_monitor(2, plugins)
    migrate_restart_monitor(2, plugins)
    assert plugins == {
        "io.containerd.monitor.task.v1.cgroups": {"no_prometheus": True},
        "io.containerd.monitor.container.v1.restart": {"interval": "10s"},
    }
