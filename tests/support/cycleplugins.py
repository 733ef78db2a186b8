"""Two registrations that require each other's type: a cycle."""

from __future__ import annotations

from pycontainerd.core.plugin import Registration, hookimpl


async def _init(ic):
    return object()


@hookimpl
def pycontainerd_registrations():
    return [
        Registration(
            type="io.pycontainerd.a.v1", id="a", requires=("io.pycontainerd.b.v1",), init=_init
        ),
        Registration(
            type="io.pycontainerd.b.v1", id="b", requires=("io.pycontainerd.a.v1",), init=_init
        ),
    ]
