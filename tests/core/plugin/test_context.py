from __future__ import annotations

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.plugin import InitContext, Plugin, Registration, SkipPlugin
from pycontainerd.core.plugin.context import Meta, PluginSet, Status


async def _init(ic):
    return None


def plugin(t, i, instance=None, error=None):
    return Plugin(
        registration=Registration(type=t, id=i, init=_init),
        config=None,
        meta=Meta(),
        instance=instance,
        error=error,
    )


def ctx(plugins, requires=("snap",)):
    return InitContext(
        registration=Registration(type="user", id="u", requires=requires, init=_init),
        config=None,
        properties={},
        plugins=plugins,
    )


def test_get_single_ignores_skipped_and_returns_the_one_ok():
    ps = PluginSet()
    ps.add(plugin("snap", "a", error=SkipPlugin("no overlay")))
    ps.add(plugin("snap", "b", instance="B"))
    assert ctx(ps).get_single("snap") == "B"


def test_get_single_with_two_ok_is_an_error():
    ps = PluginSet()
    ps.add(plugin("snap", "a", instance="A"))
    ps.add(plugin("snap", "b", instance="B"))
    with pytest.raises(errdefs.FailedPrecondition, match="multiple"):
        ctx(ps).get_single("snap")


def test_get_single_reports_a_failed_plugin():
    ps = PluginSet()
    ps.add(plugin("snap", "a", error=RuntimeError("disk gone")))
    with pytest.raises(errdefs.FailedPrecondition, match="disk gone"):
        ctx(ps).get_single("snap")


def test_get_by_type_and_by_id():
    ps = PluginSet()
    ps.add(plugin("snap", "a", instance="A"))
    ps.add(plugin("snap", "s", error=SkipPlugin("x")))
    ps.add(plugin("snap", "b", instance="B"))
    c = ctx(ps)
    assert c.get_by_type("snap") == {"a": "A", "b": "B"}
    assert c.get_by_id("snap", "b") == "B"
    with pytest.raises(errdefs.NotFound):
        c.get_by_id("snap", "zzz")
    with pytest.raises(errdefs.FailedPrecondition, match="skip plugin"):
        c.get_by_id("snap", "s")


def test_lookups_are_restricted_to_declared_types():
    ps = PluginSet()
    ps.add(plugin("other", "a", instance="A"))
    with pytest.raises(errdefs.FailedPrecondition, match="without requiring"):
        ctx(ps).get_single("other")
    assert ctx(ps, requires=("*",)).get_single("other") == "A"


def test_not_found_when_no_plugin_of_the_type():
    with pytest.raises(errdefs.NotFound):
        ctx(PluginSet()).get_by_type("snap")


def test_status_and_error_text_with_cause_chain():
    try:
        try:
            raise OSError("device not ready")
        except OSError as e:
            raise RuntimeError("failed to open test device") from e
    except RuntimeError as e:
        p = plugin("t", "x", error=e)
    assert p.status is Status.ERROR
    assert p.error_text() == "failed to open test device: device not ready"
    assert plugin("t", "y", error=SkipPlugin("nope")).status is Status.SKIPPED
    assert plugin("t", "z", instance=1).status is Status.OK


def test_root_and_state_dirs_are_created_on_use(tmp_path):
    from pycontainerd.core.plugin import types

    c = InitContext(
        registration=Registration(type="t", id="x", init=_init),
        config=None,
        properties={
            types.PROPERTY_ROOT_DIR: str(tmp_path / "r" / "t.x"),
            types.PROPERTY_STATE_DIR: str(tmp_path / "s" / "t.x"),
        },
        plugins=PluginSet(),
    )
    assert (tmp_path / "r" / "t.x").is_dir() is False
    assert c.root == str(tmp_path / "r" / "t.x") and (tmp_path / "r" / "t.x").is_dir()
    assert c.state == str(tmp_path / "s" / "t.x") and (tmp_path / "s" / "t.x").is_dir()
