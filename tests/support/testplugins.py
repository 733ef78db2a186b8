"""Plugin modules used by the integration tests (loaded via PYCONTAINERD_PLUGIN_MODULES)."""

from __future__ import annotations

import attrs

from pycontainerd.core.plugin import Registration, SkipPlugin, hookimpl


@attrs.define
class FlakyConfig:
    fail: bool = True


async def _skip(ic):
    raise SkipPlugin("test plugin cannot work on this host")


async def _fail(ic):
    if ic.config.fail:
        try:
            raise OSError("device not ready")
        except OSError as e:
            raise RuntimeError("failed to open test device") from e
    return object()


@hookimpl
def pycontainerd_registrations():
    return [
        Registration(type="io.pycontainerd.test.v1", id="skipper", init=_skip),
        Registration(type="io.pycontainerd.test.v1", id="failer", config=FlakyConfig, init=_fail),
    ]
