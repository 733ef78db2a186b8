"""contrib/example-plugin: its registration follows the plugin contract, and it builds as a
wheel whose entry point names the module with the hook (the lead's test installs it)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pycontainerd.core.plugin import InitContext, Registration
from pycontainerd.core.plugin.context import PluginSet

PLUGIN_DIR = Path(__file__).resolve().parent.parent / "contrib" / "example-plugin"


def _load_plugin_module():
    path = PLUGIN_DIR / "pycontainerd_example" / "plugin.py"
    spec = importlib.util.spec_from_file_location("pycontainerd_example_plugin_under_test", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_example_plugin_registers_hello_and_exports_its_greeting():
    mod = _load_plugin_module()
    (reg,) = mod.pycontainerd_registrations()
    assert isinstance(reg, Registration)
    assert reg.uri == "io.pycontainerd.example.v1.hello"
    reg.validate()
    cfg = reg.config(greeting="hi", count=2)
    ic = InitContext(registration=reg, config=cfg, properties={}, plugins=PluginSet())
    greeter = await reg.init(ic)
    assert ic.meta.exports == {"greeting": "hi"}
    assert greeter.greet("kubelet") == "hi, kubelet! hi, kubelet!"
    assert reg.config().greeting == "hello" and reg.config().count == 1


@pytest.mark.slow
def test_example_plugin_builds_a_wheel_with_the_pycontainerd_entry_point(tmp_path):
    out = tmp_path / "wheels"
    build = tmp_path / "src"
    # build from a copy, so no build/ or egg-info is left in the checkout
    subprocess.run(["cp", "-r", str(PLUGIN_DIR), str(build)], check=True)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(out),
            str(build),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    (wheel,) = out.glob("pycontainerd_example_plugin-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        eps = zf.read("pycontainerd_example_plugin-0.1.0.dist-info/entry_points.txt").decode()
        assert "pycontainerd_example/plugin.py" in zf.namelist()
    assert "[pycontainerd.plugins]\nexample = pycontainerd_example.plugin" in eps
