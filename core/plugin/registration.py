"""The unit of extension: a :class:`Registration` declares a type, an ID, the types it
requires, an optional config class, and an async init function returning the instance."""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from pycontainerd.core.plugin.context import InitContext

InitFn = Callable[["InitContext"], Awaitable[Any]]
#: ``config_migration(config_version, plugins)`` rewrites the raw ``plugins`` table in place
#: when the file's version is older than the current one.
ConfigMigration = Callable[[int, dict[str, Any]], None]

ALL = "*"


class RegistrationError(ValueError):
    """A registration that can never be valid (empty type/id, bad requires, duplicate)."""


class SkipPlugin(Exception):
    """Raised by an init function when the plugin cannot work on this host. Not a failure."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"skip plugin: {self.reason}"


def _requires(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.frozen(kw_only=True)
class Registration:
    type: str
    id: str
    init: InitFn
    requires: tuple[str, ...] = attrs.field(default=(), converter=_requires)
    #: An attrs class with defaults; ``[plugins."<uri>"]`` decodes into it. None: no config.
    config: builtins.type | None = None
    config_migration: ConfigMigration | None = None
    #: Where it came from: "builtin", or the distribution name of an entry point ("dist 1.0").
    source: str = attrs.field(default="builtin", eq=False)

    @property
    def uri(self) -> str:
        return f"{self.type}.{self.id}"

    def validate(self) -> None:
        where = f" (from {self.source})"
        if not self.type:
            raise RegistrationError(f"plugin {self.id!r}{where}: no type")
        if not self.id:
            raise RegistrationError(f"plugin of type {self.type!r}{where}: no id")
        if ALL in self.requires and len(self.requires) > 1:
            raise RegistrationError(
                f'plugin {self.uri}{where}: invalid requires: "*" must be the only requirement'
            )
        if self.type in self.requires:
            raise RegistrationError(
                f"plugin {self.uri}{where}: invalid requires: a plugin cannot require its own type"
            )
