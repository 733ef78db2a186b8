"""Packaging: the wheel installs and runs on its own; a third-party plugin distribution
installed beside it joins the graph, ``plugins ls``, ``config default`` and can be disabled."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from daemon import Daemon

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert res.returncode == 0, f"{cmd}:\n{res.stdout}\n{res.stderr}"
    return res


def _wheel(src: Path, out: Path) -> Path:
    work = out / ("src-" + src.name)
    shutil.copytree(
        src,
        work,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "*.egg-info", "build", "dist", "__pycache__"
        ),
    )
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(work),
        ]
    )
    return out


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    _wheel(REPO, out)
    _wheel(REPO / "contrib" / "example-plugin", out)
    return out


def test_wheel_installs_in_a_fresh_venv_and_runs(wheels, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    (whl,) = wheels.glob("pycontainerd-*.whl")
    _run([str(venv / "bin" / "pip"), "install", "-q", str(whl)])
    out = _run([str(venv / "bin" / "pycontainerd"), "--version"], cwd=tmp_path).stdout
    assert out.strip() == "pycontainerd 0.1.0"
    code = (
        "import pycontainerd.plugins.services.introspection.plugin as m, pycontainerd; "
        "print(pycontainerd.__file__); print(len(m.pycontainerd_registrations()))"
    )
    lines = _run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path).stdout.split()
    assert lines[0].startswith(str(venv)), "imported from the checkout, not the wheel"
    assert lines[1] == "2"
    # the .proto sources travel with the generated code
    protos = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.resources as r; "
            "print(r.files('pycontainerd.api').joinpath('containerd/types/platform.proto')"
            ".is_file())",
        ],
        cwd=tmp_path,
    ).stdout.strip()
    assert protos == "True"


@pytest.fixture(scope="module")
def example_site(wheels, tmp_path_factory) -> Path:
    """The example plugin installed into a separate site dir (not into the test venv)."""
    site = tmp_path_factory.mktemp("site")
    (whl,) = wheels.glob("pycontainerd_example_plugin-*.whl")
    _run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(whl)]
    )
    return site


def test_third_party_plugin_appears_in_config_default(example_site):
    env = {**os.environ, "PYTHONPATH": str(example_site)}
    out = _run(
        [sys.executable, "-m", "pycontainerd.cli.daemon", "config", "default"], env=env
    ).stdout
    section = tomllib.loads(out)["plugins"]["io.pycontainerd.example.v1.hello"]
    assert section == {"greeting": "hello", "count": 1}
    # and it is absent when autoload is switched off
    env["PYCONTAINERD_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    out = _run(
        [sys.executable, "-m", "pycontainerd.cli.daemon", "config", "default"], env=env
    ).stdout
    assert "io.pycontainerd.example.v1.hello" not in tomllib.loads(out)["plugins"]


def test_third_party_plugin_runs_in_the_daemon_with_its_config(example_site, tmp_path):
    config = 'version = 4\n[plugins."io.pycontainerd.example.v1.hello"]\n  greeting = "hi"\n'
    with Daemon(tmp_path / "d", config=config, env={"PYTHONPATH": str(example_site)}) as d:
        out = d.pyctr("plugins", "ls", "-d", "type==io.pycontainerd.example.v1").stdout
        assert "ID:            hello" in out
        assert "greeting  hi" in out
        assert "Error" not in out
        if shutil.which("ctr"):
            rows = d.ctr("plugins", "ls", "id==hello").stdout.splitlines()
            assert rows[1].split() == ["io.pycontainerd.example.v1", "hello", "-", "ok"]
        assert "loaded plugin id=hello type=io.pycontainerd.example.v1" in d.log()


def test_third_party_plugin_is_disabled_by_disabled_plugins(example_site, tmp_path):
    config = 'version = 4\ndisabled_plugins = ["io.pycontainerd.example.v1.hello"]\n'
    with Daemon(tmp_path / "d", config=config, env={"PYTHONPATH": str(example_site)}) as d:
        assert d.pyctr("plugins", "ls", "-q", "id==hello").stdout.strip() == ""


def test_third_party_plugin_is_off_when_autoload_is_disabled_in_config(example_site, tmp_path):
    config = "version = 4\ndisable_plugin_autoload = true\n"
    with Daemon(tmp_path / "d", config=config, env={"PYTHONPATH": str(example_site)}) as d:
        assert d.pyctr("plugins", "ls", "-q", "id==hello").stdout.strip() == ""
