"""What a plugin sees while it initialises, and what the daemon keeps of each plugin after."""

from __future__ import annotations

import asyncio
import enum
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.plugin import types
from pycontainerd.core.plugin.registration import ALL, Registration, SkipPlugin

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""

    def format(self) -> str:
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)


@attrs.define(kw_only=True)
class Meta:
    platforms: list[Platform] = attrs.Factory(list)
    exports: dict[str, str] = attrs.Factory(dict)
    capabilities: list[str] = attrs.Factory(list)


class Status(enum.Enum):
    OK = "ok"
    SKIPPED = "skip"
    ERROR = "error"


class PluginNotFound(errdefs.NotFound):
    pass


class MultiplePlugins(errdefs.FailedPrecondition):
    pass


@attrs.define(eq=False, kw_only=True)
class Plugin:
    """One plugin after init: its registration, config, meta, and instance or error."""

    registration: Registration
    config: Any
    meta: Meta
    instance: Any = None
    error: BaseException | None = None

    @property
    def uri(self) -> str:
        return self.registration.uri

    @property
    def status(self) -> Status:
        if self.error is None:
            return Status.OK
        if isinstance(self.error, SkipPlugin):
            return Status.SKIPPED
        return Status.ERROR

    def error_text(self) -> str:
        """The error with its cause chain, as introspection reports it."""
        if self.error is None:
            return ""
        parts: list[str] = []
        err: BaseException | None = self.error
        seen: set[int] = set()
        while err is not None and id(err) not in seen:
            seen.add(id(err))
            text = str(err) or type(err).__name__
            if not parts or text not in parts[-1]:
                parts.append(text)
            err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
        return ": ".join(parts)


@attrs.define(eq=False)
class PluginSet:
    """Initialised plugins (ok, skipped or failed), in init order."""

    _ordered: list[Plugin] = attrs.Factory(list)
    _by_uri: dict[str, Plugin] = attrs.Factory(dict)

    def add(self, p: Plugin) -> None:
        if p.uri in self._by_uri:
            raise errdefs.AlreadyExists(f"plugin {p.uri}: already initialized")
        self._ordered.append(p)
        self._by_uri[p.uri] = p

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._ordered)

    def __len__(self) -> int:
        return len(self._ordered)

    def get(self, uri: str) -> Plugin | None:
        return self._by_uri.get(uri)

    def of_type(self, type_: str) -> list[Plugin]:
        return [p for p in self._ordered if p.registration.type == type_]


@attrs.define(eq=False, kw_only=True)
class InitContext:
    """Handed to ``Registration.init``. Lookups see only already-initialised plugins, and only
    of the types the registration declared in ``requires``."""

    registration: Registration
    config: Any
    properties: dict[str, str]
    plugins: PluginSet
    meta: Meta = attrs.Factory(Meta)
    _spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]] | None = None
    _readiness: Callable[[], Callable[[], None]] | None = None
    readiness_registered: bool = False

    @property
    def root(self) -> str:
        """This plugin's persistent directory (created on first use)."""
        path = self.properties[types.PROPERTY_ROOT_DIR]
        os.makedirs(path, mode=0o711, exist_ok=True)
        return path

    @property
    def state(self) -> str:
        """This plugin's volatile directory (created on first use)."""
        path = self.properties[types.PROPERTY_STATE_DIR]
        os.makedirs(path, mode=0o711, exist_ok=True)
        return path

    @property
    def grpc_address(self) -> str:
        return self.properties.get(types.PROPERTY_GRPC_ADDRESS, "")

    @property
    def ttrpc_address(self) -> str:
        return self.properties.get(types.PROPERTY_TTRPC_ADDRESS, "")

    def _check_declared(self, type_: str) -> None:
        req = self.registration.requires
        if ALL in req or type_ in req:
            return
        raise errdefs.FailedPrecondition(
            f"plugin {self.registration.uri} looked up type {type_!r} without requiring it"
        )

    def get_single(self, type_: str) -> Any:
        """The one ok instance of ``type_``; skipped ones are ignored, a failed one raises."""
        self._check_declared(type_)
        found: list[Plugin] = []
        for p in self.plugins.of_type(type_):
            if p.status is Status.SKIPPED:
                continue
            if p.status is Status.ERROR:
                raise errdefs.FailedPrecondition(f"plugin {p.uri}: {p.error_text()}")
            found.append(p)
        if len(found) > 1:
            raise MultiplePlugins(f"multiple plugins of type {type_}")
        if not found:
            raise PluginNotFound(f"no plugins registered for {type_}")
        return found[0].instance

    def get_by_type(self, type_: str) -> dict[str, Any]:
        """ID -> instance for every ok plugin of ``type_``."""
        self._check_declared(type_)
        out: dict[str, Any] = {}
        for p in self.plugins.of_type(type_):
            if p.status is Status.SKIPPED:
                continue
            if p.status is Status.ERROR:
                raise errdefs.FailedPrecondition(f"plugin {p.uri}: {p.error_text()}")
            out[p.registration.id] = p.instance
        if not out:
            raise PluginNotFound(f"no plugins registered for {type_}")
        return out

    def get_by_id(self, type_: str, id_: str) -> Any:
        """The instance of ``type_.id_``; raises its init error, or NotFound."""
        self._check_declared(type_)
        p = self.plugins.get(f"{type_}.{id_}")
        if p is None:
            raise PluginNotFound(f"plugin {type_}.{id_}: not found")
        if p.error is not None:
            raise errdefs.FailedPrecondition(f"plugin {p.uri}: {p.error_text()}")
        return p.instance

    def get_plugins(self, type_: str) -> list[Plugin]:
        """Every initialised Plugin record of ``type_`` (any status), e.g. for introspection."""
        self._check_declared(type_)
        return self.plugins.of_type(type_)

    def register_readiness(self) -> Callable[[], None]:
        """Delay the daemon's READY until the returned function is called."""
        self.readiness_registered = True
        if self._readiness is None:
            return lambda: None
        return self._readiness()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        """Run a background task owned by the daemon (cancelled at shutdown)."""
        if self._spawn is None:
            return asyncio.get_running_loop().create_task(coro, name=name or None)
        return self._spawn(coro, name or self.registration.uri)
