from __future__ import annotations

from pathlib import Path

import pytest

from pycontainerd.core.config import (
    CURRENT_VERSION,
    DEFAULT_ROOT,
    ConfigError,
    load,
)
from pycontainerd.core.errdefs import InvalidArgument


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_missing_default_file_gives_defaults(monkeypatch, tmp_path):
    monkeypatch.setattr(
        "pycontainerd.core.config.loader.DEFAULT_CONFIG_PATH", str(tmp_path / "none.toml")
    )
    loaded = load()
    assert loaded.path is None
    assert loaded.config.root == DEFAULT_ROOT
    assert loaded.config.version == CURRENT_VERSION


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.toml")


def test_config_error_is_invalid_argument():
    assert issubclass(ConfigError, InvalidArgument)


def test_syntax_error_names_file_line_and_column(tmp_path):
    path = write(tmp_path / "c.toml", "version = 4\nroot = = 1\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value) == f"{path}:2:8: Invalid value"


def test_newer_version_is_refused(tmp_path):
    path = write(tmp_path / "c.toml", "version = 5\n")
    with pytest.raises(ConfigError, match="version 5 is newer than supported 4"):
        load(path)


def test_imports_relative_paths_resolve_against_importing_file(tmp_path):
    main = write(tmp_path / "main.toml", 'version = 4\nimports = ["sub/a.toml"]\n')
    write(tmp_path / "sub" / "a.toml", 'version = 4\nimports = ["b.toml"]\noom_score = -999\n')
    write(tmp_path / "sub" / "b.toml", 'version = 4\ntemp = "/tmp/b"\n')
    loaded = load(main)
    assert [f.path.name for f in loaded.files] == ["main.toml", "a.toml", "b.toml"]
    assert loaded.config.oom_score == -999
    assert loaded.config.temp == "/tmp/b"


def test_imports_globs_load_matches_in_lexical_order(tmp_path):
    main = write(tmp_path / "main.toml", 'version = 4\nimports = ["conf.d/*.toml"]\n')
    write(tmp_path / "conf.d" / "20.toml", 'version = 4\nroot = "/r20"\n')
    write(tmp_path / "conf.d" / "10.toml", 'version = 4\nroot = "/r10"\n')
    write(tmp_path / "conf.d" / "skip.txt", 'root = "/nope"\n')
    loaded = load(main)
    assert [f.path.name for f in loaded.files] == ["main.toml", "10.toml", "20.toml"]
    assert loaded.config.root == "/r20"


def test_glob_matching_nothing_is_fine_but_a_missing_import_is_not(tmp_path):
    main = write(tmp_path / "main.toml", 'version = 4\nimports = ["none/*.toml"]\n')
    assert len(load(main).files) == 1
    main = write(tmp_path / "main.toml", 'version = 4\nimports = ["gone.toml"]\n')
    with pytest.raises(ConfigError, match=r"gone\.toml imported by .*main\.toml"):
        load(main)


def test_file_imported_twice_is_loaded_once(tmp_path):
    main = write(tmp_path / "main.toml", 'version = 4\nimports = ["a.toml", "b.toml"]\n')
    write(tmp_path / "a.toml", 'version = 4\nimports = ["common.toml"]\n')
    write(tmp_path / "b.toml", 'version = 4\nimports = ["./common.toml"]\n')
    write(tmp_path / "common.toml", 'version = 4\ndisabled_plugins = ["io.containerd.x.v1.y"]\n')
    loaded = load(main)
    assert [f.path.name for f in loaded.files] == ["main.toml", "a.toml", "b.toml", "common.toml"]


def test_import_loop_is_reported_with_its_chain(tmp_path):
    main = write(tmp_path / "main.toml", 'version = 4\nimports = ["a.toml"]\n')
    write(tmp_path / "a.toml", 'version = 4\nimports = ["b.toml"]\n')
    write(tmp_path / "b.toml", 'version = 4\nimports = ["a.toml"]\n')
    with pytest.raises(ConfigError) as info:
        load(main)
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    assert str(info.value) == f"config import loop: {a} -> {b} -> {a}"


def test_merge_scalars_override_unless_zero_and_lists_union(tmp_path):
    main = write(
        tmp_path / "main.toml",
        'version = 4\nroot = "/main"\nstate = "/s"\noom_score = 5\n'
        'imports = ["a.toml"]\n'
        'disabled_plugins = ["io.containerd.a.v1.x", "io.containerd.b.v1.x"]\n'
        '[debug]\nlevel = "info"\nformat = "json"\n',
    )
    write(
        tmp_path / "a.toml",
        'version = 4\nroot = "/imported"\nstate = ""\noom_score = 0\n'
        'disabled_plugins = ["io.containerd.b.v1.x", "io.containerd.c.v1.x"]\n'
        '[debug]\nlevel = "debug"\n',
    )
    config = load(main).config
    assert config.root == "/imported"
    assert config.state == "/s"
    assert config.oom_score == 5
    assert config.disabled_plugins == (
        "io.containerd.a.v1.x",
        "io.containerd.b.v1.x",
        "io.containerd.c.v1.x",
    )
    assert (config.debug.level, config.debug.format) == ("debug", "json")


def test_merge_replaces_plugin_proxy_stream_and_timeout_entries_wholesale(tmp_path):
    main = write(
        tmp_path / "main.toml",
        """version = 4
imports = ["a.toml"]
[plugins."io.containerd.gc.v1.scheduler"]
pause_threshold = 0.5
startup_delay = "1s"
[plugins."io.containerd.other.v1.kept"]
x = 1
[proxy_plugins.snap]
type = "snapshot"
address = "/run/snap.sock"
platform = "linux/amd64"
[timeouts]
"io.containerd.timeout.shim.load" = "9s"
"io.containerd.timeout.task.state" = "7s"
""",
    )
    write(
        tmp_path / "a.toml",
        """version = 4
[plugins."io.containerd.gc.v1.scheduler"]
deletion_threshold = 3
[proxy_plugins.snap]
type = "snapshot"
address = "/run/other.sock"
[timeouts]
"io.containerd.timeout.shim.load" = "1s"
""",
    )
    config = load(main).config
    assert config.plugins["io.containerd.gc.v1.scheduler"] == {"deletion_threshold": 3}
    assert config.plugins["io.containerd.other.v1.kept"] == {"x": 1}
    assert config.proxy_plugins["snap"].address == "/run/other.sock"
    assert config.proxy_plugins["snap"].platform == ""
    assert config.timeouts == {
        "io.containerd.timeout.shim.load": "1s",
        "io.containerd.timeout.task.state": "7s",
    }


def test_v1_short_plugin_names_become_uris(tmp_path):
    path = write(
        tmp_path / "c.toml",
        """disabled_plugins = ["cri", "aufs", "diff-service"]
required_plugins = ["bolt"]
[plugins.scheduler]
pause_threshold = 0.1
[plugins.linux]
shim = "x"
[plugins.myplugin]
a = 1
""",
    )
    loaded = load(path)
    assert loaded.version == 1
    assert loaded.config.disabled_plugins == (
        "io.containerd.grpc.v1.cri",
        "io.containerd.snapshotter.v1.aufs",
        "io.containerd.service.v1.diff-service",
    )
    assert loaded.config.required_plugins == ("io.containerd.metadata.v1.bolt",)
    assert set(loaded.config.plugins) == {
        "io.containerd.gc.v1.scheduler",
        "io.containerd.runtime.v1.linux",
        "io.containerd.grpc.v1.myplugin",
    }
    assert any("ambiguous plugin name 'myplugin'" in w for w in loaded.warnings)
    assert any("version 1 is deprecated" in d for d in loaded.deprecations)


@pytest.mark.parametrize("version", [2, 3, 4])
@pytest.mark.parametrize("key", ["disabled_plugins", "required_plugins"])
def test_short_plugin_name_is_refused_after_version_1(tmp_path, version, key):
    path = write(tmp_path / "c.toml", f'version = {version}\n{key} = ["cri"]\n')
    with pytest.raises(ConfigError, match=rf"'cri' in {key}, expect io\.containerd\.x\.vx"):
        load(path)


def test_unknown_top_level_key_is_a_warning_with_its_path(tmp_path):
    path = write(tmp_path / "c.toml", 'version = 4\nrooot = "/x"\n[cgroup]\npth = "/y"\n')
    loaded = load(path)
    assert f"{path}: unknown key rooot" in loaded.warnings
    assert f"{path}: unknown key cgroup.pth" in loaded.warnings


def test_wrong_top_level_type_names_file_and_key(tmp_path):
    path = write(tmp_path / "c.toml", 'version = 4\n[proxy_plugins.s]\ncapabilities = "x"\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value) == (
        f"{path}: invalid config at proxy_plugins.s.capabilities: "
        "expected array of str, got 'x' (str)"
    )


def test_disable_plugin_autoload_is_read(tmp_path):
    path = write(tmp_path / "c.toml", "version = 4\ndisable_plugin_autoload = true\n")
    assert load(path).config.disable_plugin_autoload is True


def test_import_loop_through_a_symlinked_directory_is_detected(tmp_path):
    write(tmp_path / "d" / "main.toml", 'version = 4\nimports = ["link/main.toml"]\n')
    (tmp_path / "d" / "link").symlink_to(tmp_path / "d")
    with pytest.raises(ConfigError, match="config import loop"):
        load(tmp_path / "d" / "main.toml")


def test_plugin_section_that_is_not_a_table_is_refused(tmp_path):
    path = write(tmp_path / "c.toml", 'version = 4\n[plugins]\n"io.containerd.x.v1.y" = 1\n')
    with pytest.raises(ConfigError, match=r'plugins\."io\.containerd\.x\.v1\.y": expected table'):
        load(path)
