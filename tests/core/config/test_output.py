from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import tomli

from pycontainerd.core.config import (
    CURRENT_VERSION,
    DEFAULT_ROOT,
    DEFAULT_TIMEOUTS,
    ConfigError,
    default_config,
    dump,
    load,
    migrate,
    to_toml,
)
from pycontainerd.core.plugin.registration import Registration


@attrs.frozen(kw_only=True)
class Runtime:
    runtime_type: str = "io.containerd.runc.v2"
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class RuntimeConfig:
    default_runtime_name: str = "runc"
    runtimes: dict[str, Runtime] = attrs.field(
        factory=lambda: {"runc": Runtime(options={"SystemdCgroup": False})}
    )
    cdi_spec_dirs: tuple[str, ...] = ("/etc/cdi", "/var/run/cdi")
    address: str | None = None


@attrs.frozen(kw_only=True)
class GCConfig:
    pause_threshold: float = 0.02
    startup_delay: str = "100ms"


async def _init(ic: Any) -> None:
    return None


def regs() -> list[Registration]:
    return [
        Registration(type="io.containerd.cri.v1", id="runtime", init=_init, config=RuntimeConfig),
        Registration(type="io.containerd.gc.v1", id="scheduler", init=_init, config=GCConfig),
        Registration(type="io.containerd.content.v1", id="content", init=_init),
    ]


def test_default_config_has_current_version_paths_plugin_defaults_and_timeouts():
    out = default_config(regs())
    assert out["version"] == CURRENT_VERSION
    assert out["root"] == DEFAULT_ROOT
    assert out["plugins"]["io.containerd.gc.v1.scheduler"] == {
        "pause_threshold": 0.02,
        "startup_delay": "100ms",
    }
    assert "io.containerd.content.v1.content" not in out["plugins"]
    assert "address" not in out["plugins"]["io.containerd.cri.v1.runtime"]
    assert out["timeouts"] == DEFAULT_TIMEOUTS
    assert "grpc" not in out and "ttrpc" not in out and "metrics" not in out


def test_default_config_loaded_back_gives_the_same_effective_config(tmp_path):
    expected = default_config(regs())
    path = tmp_path / "config.toml"
    path.write_text(to_toml(expected))
    loaded = load(path)
    assert loaded.warnings == []
    assert loaded.deprecations == []
    assert dump(loaded, regs()) == expected


def test_dump_fills_plugin_defaults_and_keeps_unknown_plugin_sections(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        'version = 4\n[plugins."io.containerd.gc.v1.scheduler"]\npause_threshold = 0.5\n'
        '[plugins."io.example.v1.third-party"]\nanything = [1, 2]\n'
    )
    out = dump(load(path), regs())
    assert out["plugins"]["io.containerd.gc.v1.scheduler"] == {
        "pause_threshold": 0.5,
        "startup_delay": "100ms",
    }
    assert out["plugins"]["io.example.v1.third-party"] == {"anything": [1, 2]}
    assert "io.containerd.cri.v1.runtime" in out["plugins"]


def test_dump_refuses_a_plugin_section_of_the_wrong_type(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('version = 4\n[plugins."io.containerd.gc.v1.scheduler"]\nstartup_delay = 1\n')
    with pytest.raises(ConfigError, match=r'scheduler"\.startup_delay: expected str'):
        dump(load(path), regs())


def _recording(calls: list[tuple[int, str]], uri: str):
    def migration(version: int, plugins: dict[str, Any]) -> None:
        calls.append((version, uri))
        plugins.setdefault("io.example.v1.seen", {})[f"v{version}"] = True

    return migration


def test_plugin_migrations_run_for_every_version_from_each_files_own(tmp_path):
    main = tmp_path / "main.toml"
    main.write_text('version = 2\nimports = ["new.toml", "v3.toml"]\n')
    (tmp_path / "new.toml").write_text("version = 4\n")
    (tmp_path / "v3.toml").write_text("version = 3\n")
    calls: list[tuple[int, str]] = []
    reg = Registration(
        type="io.example.v1", id="m", init=_init, config_migration=_recording(calls, "m")
    )
    loaded = load(main)
    warnings = migrate(loaded, [reg])
    assert calls == [(2, "m"), (3, "m"), (3, "m")]
    assert len(warnings) == 2
    assert loaded.config.plugins["io.example.v1.seen"] == {"v3": True}
    assert migrate(loaded, [reg]) == []
    assert len(calls) == 3


def test_v1_file_runs_plugin_migrations_from_version_1(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[plugins.cri]\nsandbox_image = 'x'\n")
    calls: list[tuple[int, str]] = []
    reg = Registration(
        type="io.example.v1", id="m", init=_init, config_migration=_recording(calls, "m")
    )
    loaded = load(path, registrations=[reg])
    assert [v for v, _ in calls] == [1, 2, 3]
    assert "io.containerd.grpc.v1.cri" in loaded.config.plugins


def test_failing_plugin_migration_is_a_config_error_naming_plugin_and_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("version = 2\n")

    def broken(version: int, plugins: dict[str, Any]) -> None:
        raise KeyError("boom")

    reg = Registration(type="io.example.v1", id="bad", init=_init, config_migration=broken)
    with pytest.raises(ConfigError, match=r"c\.toml: config migration of plugin io.example.v1.bad"):
        load(path, registrations=[reg])


def test_to_toml_output_parses_back_to_the_same_tables():
    tables = default_config(regs())
    assert tomli.loads(to_toml(tables)) == tables


def test_dump_of_missing_default_file_equals_default_config(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(
        "pycontainerd.core.config.loader.DEFAULT_CONFIG_PATH", str(tmp_path / "none.toml")
    )
    assert dump(load(), regs()) == default_config(regs())
