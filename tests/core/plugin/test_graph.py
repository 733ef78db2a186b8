from __future__ import annotations

import pytest

from pycontainerd.core.plugin import Registration, graph


async def _init(ic):
    return None


def R(t, i, *req):
    return Registration(type=t, id=i, requires=req, init=_init)


def uris(regs):
    return [r.uri for r in regs]


def test_requirements_come_first_and_ties_keep_registration_order():
    regs = [
        R("grpc", "b", "service"),
        R("service", "s1", "metadata"),
        R("metadata", "bolt", "content", "snapshot"),
        R("snapshot", "overlay"),
        R("content", "local"),
        R("snapshot", "native"),
        R("grpc", "a"),
    ]
    order = uris(graph.order(regs))
    assert order.index("content.local") < order.index("metadata.bolt")
    assert order.index("snapshot.overlay") < order.index("metadata.bolt")
    assert order.index("snapshot.native") < order.index("metadata.bolt")
    assert order.index("metadata.bolt") < order.index("service.s1") < order.index("grpc.b")
    # independent plugins keep registration order relative to each other
    assert (
        order.index("snapshot.overlay")
        < order.index("content.local")
        < order.index("snapshot.native")
    )
    assert order == uris(graph.order(list(regs)))  # deterministic


def test_star_requires_every_other_plugin():
    regs = [R("last", "x", "*"), R("a", "1"), R("b", "2")]
    assert uris(graph.order(regs)) == ["a.1", "b.2", "last.x"]


def test_missing_required_type_is_not_an_error():
    assert uris(graph.order([R("a", "1", "nothing.here")])) == ["a.1"]


def test_disabled_plugins_are_removed_and_never_pulled_in():
    regs = [R("a", "1", "b"), R("b", "2"), R("b", "3")]
    assert uris(graph.order(regs, disabled=["b.2"])) == ["b.3", "a.1"]


def test_cycle_is_an_error_that_prints_the_cycle():
    regs = [R("a", "1", "b"), R("b", "2", "c"), R("c", "3", "a"), R("d", "4")]
    with pytest.raises(graph.CycleError) as e:
        graph.order(regs)
    msg = str(e.value)
    assert "cycle" in msg
    for u in ("a.1", "b.2", "c.3"):
        assert u in msg
    assert "d.4" not in msg


def test_cached_order_skips_the_sort(tmp_path, monkeypatch):
    regs = [R("a", "1", "b"), R("b", "2")]
    first = uris(graph.order(regs, cache_dir=str(tmp_path)))
    assert (tmp_path / "plugin-order.json").exists()

    def boom(_):
        raise AssertionError("sorted again although the registrations did not change")

    monkeypatch.setattr(graph, "_sort", boom)
    assert uris(graph.order(regs, cache_dir=str(tmp_path))) == first
    # a changed set of registrations is sorted again
    with pytest.raises(AssertionError, match="sorted again"):
        graph.order([*regs, R("c", "3")], cache_dir=str(tmp_path))
