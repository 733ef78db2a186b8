"""Version migrations of the configuration, on raw TOML tables.

Main-config steps (run by the loader on each file, oldest first):

* 1 -> 2: short plugin names become URIs in ``plugins``, ``disabled_plugins`` and
  ``required_plugins`` (:func:`migrate_v1`).
* 2 -> 3: nothing in the main config; plugins carry their own steps.
* 3 -> 4: the legacy ``[grpc]``, ``[ttrpc]``, ``[debug]`` and ``[metrics]`` server settings
  move into the sections of the server plugins (:func:`migrate_v3_services`).

Per-plugin steps have the :data:`~pycontainerd.core.plugin.registration.ConfigMigration`
signature ``(config_version, plugins) -> None`` and are called for every version from the
file's up to (not including) the current one. The ones below belong to registrations that do
not exist yet; each says which registration should carry it.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

PluginTables = MutableMapping[str, Any]

#: Short names of version-1 files and the URIs they stand for.
V1_PLUGIN_NAMES: dict[str, str] = {
    "cri": "io.containerd.grpc.v1.cri",
    "cgroups": "io.containerd.monitor.v1.cgroups",
    "linux": "io.containerd.runtime.v1.linux",
    "scheduler": "io.containerd.gc.v1.scheduler",
    "bolt": "io.containerd.metadata.v1.bolt",
    "task": "io.containerd.runtime.v2.task",
    "opt": "io.containerd.internal.v1.opt",
    "restart": "io.containerd.internal.v1.restart",
    "tracing": "io.containerd.internal.v1.tracing",
    "otlp": "io.containerd.tracing.processor.v1.otlp",
    "aufs": "io.containerd.snapshotter.v1.aufs",
    "btrfs": "io.containerd.snapshotter.v1.btrfs",
    "devmapper": "io.containerd.snapshotter.v1.devmapper",
    "native": "io.containerd.snapshotter.v1.native",
    "overlayfs": "io.containerd.snapshotter.v1.overlayfs",
    "zfs": "io.containerd.snapshotter.v1.zfs",
}

GRPC_SERVER = "io.containerd.server.v1.grpc"
GRPC_TCP_SERVER = "io.containerd.server.v1.grpc-tcp"
TTRPC_SERVER = "io.containerd.server.v1.ttrpc"
DEBUG_SERVER = "io.containerd.server.v1.debug"
METRICS_SERVER = "io.containerd.server.v1.metrics"
GRPC_PROMETHEUS = "io.containerd.metrics.v1.grpc-prometheus"


def v1_plugin_uri(name: str, warnings: list[str] | None = None) -> str:
    """The URI a version-1 plugin name stands for; names with a dot are already URIs."""
    if "." in name:
        return name
    if name in V1_PLUGIN_NAMES:
        return V1_PLUGIN_NAMES[name]
    if name.endswith("-service"):
        return "io.containerd.service.v1." + name
    if name in ("windows", "windows-lcow"):
        uri = "io.containerd.snapshotter.v1." + name
    else:
        uri = "io.containerd.grpc.v1." + name
    if warnings is not None:
        warnings.append(f"ambiguous plugin name {name!r} in version 1 config, treating as {uri}")
    return uri


def migrate_v1(raw: dict[str, Any], warnings: list[str]) -> None:
    """1 -> 2: rename short plugin names to URIs (proxy plugins are unchanged)."""
    plugins = raw.get("plugins")
    if isinstance(plugins, dict):
        raw["plugins"] = {v1_plugin_uri(k, warnings): v for k, v in plugins.items()}
    for key in ("disabled_plugins", "required_plugins"):
        entries = raw.get(key)
        if isinstance(entries, list):
            raw[key] = [v1_plugin_uri(e, warnings) if isinstance(e, str) else e for e in entries]


def _table(raw: dict[str, Any], name: str) -> dict[str, Any]:
    table = raw.get(name)
    return table if isinstance(table, dict) else {}


def _move(src: dict[str, Any], dst: dict[str, Any], old: str, new: str | None = None) -> None:
    if old in src:
        dst[new or old] = src.pop(old)


def migrate_v3_services(raw: dict[str, Any], warnings: list[str]) -> None:
    """3 -> 4: move the legacy server tables into the server plugins' sections.

    A value is moved only when the target plugin section does not exist yet (an explicit
    section wins, as in containerd); whatever cannot move stays where it was, so nothing in
    the file is lost. ``[debug]`` ``level``/``format``/``log_trace_id`` stay: they are the
    daemon's own logging settings. For old files an unset ttrpc address is derived from the
    grpc address (``<address>.ttrpc``) with the grpc uid/gid, as before version 4.
    """
    plugins = raw.setdefault("plugins", {})
    if not isinstance(plugins, dict):
        return

    debug = _table(raw, "debug")
    if debug.get("address") and DEBUG_SERVER not in plugins:
        section: dict[str, Any] = {}
        for key in ("address", "uid", "gid"):
            _move(debug, section, key)
        plugins[DEBUG_SERVER] = section

    grpc = _table(raw, "grpc")
    grpc_address = grpc.get("address", "")
    grpc_uid = grpc.get("uid", 0)
    grpc_gid = grpc.get("gid", 0)
    local_keys = ("address", "uid", "gid", "max_recv_message_size", "max_send_message_size")
    if any(k in grpc for k in local_keys) and GRPC_SERVER not in plugins:
        section = {k: grpc[k] for k in local_keys if k in grpc}
        plugins[GRPC_SERVER] = section
        moved_local = True
    else:
        moved_local = False
    if grpc.get("tcp_address") and GRPC_TCP_SERVER not in plugins:
        section = {}
        for old, new in (
            ("tcp_address", "address"),
            ("tcp_tls_ca", "tls_ca"),
            ("tcp_tls_cert", "tls_cert"),
            ("tcp_tls_key", "tls_key"),
            ("tcp_tls_common_name", "tls_common_name"),
        ):
            _move(grpc, section, old, new)
        for key in ("max_recv_message_size", "max_send_message_size"):
            if key in grpc:
                section[key] = grpc[key]
        plugins[GRPC_TCP_SERVER] = section
    if moved_local:
        for key in local_keys:
            grpc.pop(key, None)

    ttrpc = _table(raw, "ttrpc")
    if TTRPC_SERVER not in plugins:
        address = ttrpc.get("address", "")
        uid = ttrpc.get("uid", 0)
        gid = ttrpc.get("gid", 0)
        if not address and grpc_address:
            address = grpc_address + ".ttrpc"
            uid = uid or grpc_uid
            gid = gid or grpc_gid
        if address or uid or gid:
            plugins[TTRPC_SERVER] = {"address": address, "uid": uid, "gid": gid}
            for key in ("address", "uid", "gid"):
                ttrpc.pop(key, None)

    metrics = _table(raw, "metrics")
    if "grpc_histogram" in metrics and GRPC_PROMETHEUS not in plugins:
        plugins[GRPC_PROMETHEUS] = {"grpc_histogram": metrics.pop("grpc_histogram")}
    if metrics.get("address") and METRICS_SERVER not in plugins:
        plugins[METRICS_SERVER] = {"address": metrics.pop("address")}

    for name, table in (("debug", debug), ("grpc", grpc), ("ttrpc", ttrpc), ("metrics", metrics)):
        if table:
            raw[name] = table
            if name != "debug" or set(table) - {"level", "format", "log_trace_id"}:
                warnings.append(
                    f"[{name}] keys {sorted(table)} were not moved to a server plugin section"
                )
        else:
            raw.pop(name, None)


#: Main-config step that upgrades a file *from* the given version.
MAIN_MIGRATIONS: dict[int, Callable[[dict[str, Any], list[str]], None]] = {
    1: migrate_v1,
    3: migrate_v3_services,
}


# --- per-plugin steps, for registrations that do not exist yet ---------------------------

TASK_PLUGIN = "io.containerd.runtime.v2.task"
SHIM_MANAGER = "io.containerd.shim.v1.manager"
CGROUPS_MONITOR_V1 = "io.containerd.monitor.v1.cgroups"
CGROUPS_MONITOR = "io.containerd.monitor.task.v1.cgroups"
RESTART_V1 = "io.containerd.internal.v1.restart"
RESTART = "io.containerd.monitor.container.v1.restart"


def migrate_task_sched_core(config_version: int, plugins: PluginTables) -> None:
    """2 -> 3: ``io.containerd.runtime.v2.task`` ``sched_core = true`` becomes
    ``io.containerd.shim.v1.manager`` ``env = ["SCHED_CORE=1"]``.

    Carried by: the ``io.containerd.runtime.v2.task`` registration (plugins/runtimes).
    """
    if config_version != 2:
        return
    task = plugins.get(TASK_PLUGIN)
    if not isinstance(task, dict) or "sched_core" not in task:
        return
    enabled = task.pop("sched_core")
    if not task:
        del plugins[TASK_PLUGIN]
    if enabled is True:
        manager = plugins.setdefault(SHIM_MANAGER, {})
        env = list(manager.get("env", []))
        if "SCHED_CORE=1" not in env:
            env.append("SCHED_CORE=1")
        manager["env"] = env


def _rename_section(plugins: PluginTables, old: str, new: str) -> None:
    if old in plugins:
        section = plugins.pop(old)
        if new not in plugins:
            plugins[new] = section


def migrate_cgroups_monitor(config_version: int, plugins: PluginTables) -> None:
    """2 -> 3: ``io.containerd.monitor.v1.cgroups`` is now
    ``io.containerd.monitor.task.v1.cgroups``.

    Carried by: the ``io.containerd.monitor.task.v1.cgroups`` registration.
    """
    if config_version == 2:
        _rename_section(plugins, CGROUPS_MONITOR_V1, CGROUPS_MONITOR)


def migrate_restart_monitor(config_version: int, plugins: PluginTables) -> None:
    """2 -> 3: ``io.containerd.internal.v1.restart`` is now
    ``io.containerd.monitor.container.v1.restart``.

    Carried by: the ``io.containerd.monitor.container.v1.restart`` registration.
    """
    if config_version == 2:
        _rename_section(plugins, RESTART_V1, RESTART)
