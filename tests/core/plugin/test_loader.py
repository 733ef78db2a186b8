from __future__ import annotations

import sys
import textwrap

import pytest

from pycontainerd.core.plugin import RegistrationError, loader
from pycontainerd.plugins import builtins


def test_builtins_load_through_the_hook_and_have_builtin_source():
    reg = loader.discover(builtins.modules(), autoload=False)
    uris = [r.uri for r in reg]
    assert "io.containerd.grpc.v1.introspection" in uris
    assert "io.containerd.server.v1.grpc" in uris
    assert all(r.source == "builtin" for r in reg)


def test_every_builtin_module_registers_something():
    import importlib

    for name in builtins.modules():
        mod = importlib.import_module(name)
        regs = mod.pycontainerd_registrations()
        assert regs, f"{name} registers nothing"


def _dist(site, dist, module, body, ep_name="ex"):
    (site / f"{module}.py").write_text(textwrap.dedent(body))
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[pycontainerd.plugins]\n{ep_name} = {module}\n")


PLUGIN = """
from pycontainerd.core.plugin import Registration, hookimpl

async def _init(ic):
    return object()

@hookimpl
def pycontainerd_registrations():
    return [Registration(type="io.example.v1", id="{id}", init=_init)]
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(loader.DISABLE_AUTOLOAD_ENV, raising=False)
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("tp_mod")]:
        del sys.modules[name]


def test_entry_point_plugins_are_loaded_and_know_their_distribution(site):
    _dist(site, "tpdist", "tp_mod1", PLUGIN.replace("{id}", "one"))
    reg = loader.discover([], autoload=True)
    r = reg.get("io.example.v1.one")
    assert r is not None
    assert "tpdist 1.0" in r.source


def test_autoload_can_be_switched_off_by_config_and_env(site, monkeypatch):
    _dist(site, "tpdist", "tp_mod2", PLUGIN.replace("{id}", "two"))
    assert "io.example.v1.two" not in loader.discover([], autoload=False)
    monkeypatch.setenv(loader.DISABLE_AUTOLOAD_ENV, "1")
    assert "io.example.v1.two" not in loader.discover([], autoload=True)


def test_duplicate_uri_from_two_distributions_names_both(site):
    _dist(site, "firstdist", "tp_mod3", PLUGIN.replace("{id}", "dup"), ep_name="first")
    _dist(site, "seconddist", "tp_mod4", PLUGIN.replace("{id}", "dup"), ep_name="second")
    with pytest.raises(RegistrationError) as e:
        loader.discover([], autoload=True)
    assert "firstdist 1.0" in str(e.value) and "seconddist 1.0" in str(e.value)


def test_a_broken_entry_point_names_itself(site):
    _dist(site, "brokendist", "tp_mod5", "raise ImportError('needs libfoo')\n")
    pattern = "brokendist.*needs libfoo|needs libfoo.*brokendist"
    with pytest.raises(RegistrationError, match=pattern):
        loader.discover([], autoload=True)


def test_entry_point_prescan_finds_only_distributions_declaring_the_group(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", [str(tmp_path), str(tmp_path / "missing")])
    info = tmp_path / "other-1.0.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text("[console_scripts]\nx = pycontainerd.plugins.y:main\n")
    assert not loader._may_have_entry_points("pycontainerd.plugins")
    (info / "entry_points.txt").write_text("[pycontainerd.plugins]\nx = mod\n")
    assert loader._may_have_entry_points("pycontainerd.plugins")
