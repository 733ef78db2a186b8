from __future__ import annotations

import pytest

from pycontainerd.core.plugin import Registration, RegistrationError
from pycontainerd.core.plugin.registry import Registry


async def _init(ic):
    return object()


def test_uri_is_type_dot_id():
    r = Registration(type="io.containerd.content.v1", id="content", init=_init)
    assert r.uri == "io.containerd.content.v1.content"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(type="", id="x"), "no type"),
        (dict(type="io.t.v1", id=""), "no id"),
        (dict(type="io.t.v1", id="x", requires=("*", "io.other.v1")), '"*" must be the only'),
        (dict(type="io.t.v1", id="x", requires=("io.t.v1",)), "its own type"),
    ],
)
def test_invalid_registration_is_refused_with_its_name(kwargs, message):
    reg = Registration(init=_init, source="entry point bad (baddist 1.0)", **kwargs)
    with pytest.raises(RegistrationError, match=message) as e:
        Registry().register(reg)
    assert "baddist 1.0" in str(e.value)


def test_duplicate_uri_names_both_sources():
    reg = Registry()
    reg.register(Registration(type="io.t.v1", id="x", init=_init, source="builtin"))
    with pytest.raises(RegistrationError) as e:
        reg.register(Registration(type="io.t.v1", id="x", init=_init, source="entry point x (d 2)"))
    assert "io.t.v1.x" in str(e.value)
    assert "builtin" in str(e.value) and "entry point x (d 2)" in str(e.value)


def test_requires_accepts_a_single_string():
    r = Registration(type="io.t.v1", id="x", requires="io.u.v1", init=_init)
    assert r.requires == ("io.u.v1",)
