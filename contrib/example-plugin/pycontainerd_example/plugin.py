"""Registration of the example plugin: ``io.pycontainerd.example.v1.hello``.

Configure it in ``/etc/pycontainerd/config.toml``::

    [plugins."io.pycontainerd.example.v1.hello"]
      greeting = "hi"
      count = 2
"""

from __future__ import annotations

import logging

import attrs

from pycontainerd.core.plugin import InitContext, Registration, hookimpl

log = logging.getLogger(__name__)

PLUGIN_TYPE = "io.pycontainerd.example.v1"
PLUGIN_ID = "hello"


@attrs.define(kw_only=True)
class Config:
    greeting: str = "hello"
    count: int = 1


@attrs.frozen(kw_only=True)
class Greeter:
    """The instance the plugin provides: other plugins that require the type can use it."""

    greeting: str
    count: int

    def greet(self, name: str = "world") -> str:
        return " ".join([f"{self.greeting}, {name}!"] * self.count)


async def _init(ic: InitContext) -> Greeter:
    config: Config = ic.config if ic.config is not None else Config()
    ic.meta.exports["greeting"] = config.greeting
    log.debug("example plugin ready: greeting=%r count=%d", config.greeting, config.count)
    return Greeter(greeting=config.greeting, count=config.count)


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [Registration(type=PLUGIN_TYPE, id=PLUGIN_ID, config=Config, init=_init)]
