"""The daemon's lifecycle: init plugins in graph order, start listeners, stop in reverse.

One owner (:class:`Server`) for everything that runs: plugin instances, server plugins
(listeners) and background tasks spawned through ``InitContext.spawn``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.plugin import graph, types
from pycontainerd.core.plugin.context import InitContext, Meta, Plugin, PluginSet, Status
from pycontainerd.core.plugin.registration import Registration, SkipPlugin
from pycontainerd.core.plugin.registry import Registry

log = logging.getLogger(__name__)

#: seconds a stop waits for cancelled background tasks before going on without them
TASK_STOP_TIMEOUT = 10.0

#: ``decode(config_class, raw_table_or_None, uri) -> (instance, warnings)``
Decoder = Callable[[type, "dict[str, Any] | None", str], "tuple[Any, list[str]]"]


class StartupError(RuntimeError):
    """The daemon cannot start (a required plugin failed, is disabled or unknown, ...)."""


@attrs.define(kw_only=True)
class Settings:
    """What the server needs from the loaded configuration."""

    root: str
    state: str
    grpc_address: str = ""
    ttrpc_address: str = ""
    disabled_plugins: Sequence[str] = ()
    required_plugins: Sequence[str] = ()
    plugin_configs: dict[str, Any] = attrs.Factory(dict)


@attrs.define(eq=False)
class Server:
    settings: Settings
    registry: Registry
    decode: Decoder
    plugins: PluginSet = attrs.Factory(PluginSet)
    _servers: list[Any] = attrs.Factory(list)
    _tasks: set[asyncio.Task[Any]] = attrs.Factory(set)
    _pending_readiness: int = 0
    _ready: asyncio.Event | None = None
    #: Config warnings (unknown keys, deprecations) gathered during init.
    warnings: list[str] = attrs.Factory(list)

    # -- init ---------------------------------------------------------------------------

    def check_required(self) -> None:
        """A required plugin that is unknown or disabled is an error before anything starts."""
        disabled = set(self.settings.disabled_plugins)
        for uri in self.settings.required_plugins:
            if uri not in self.registry:
                raise StartupError(f"required plugin {uri} is not registered")
            if uri in disabled:
                raise StartupError(f"required plugin {uri} is disabled in disabled_plugins")

    def ordered(self) -> list[Registration]:
        return graph.order(
            self.registry,
            self.settings.disabled_plugins,
            cache_dir=os.path.join(self.settings.state, "pycontainerd")
            if self.settings.state
            else None,
        )

    async def init_plugins(self) -> None:
        self.check_required()
        self._ready = asyncio.Event()
        required = set(self.settings.required_plugins)
        order = self.ordered()
        started = time.monotonic()
        for reg in order:
            p = await self._init_one(reg)
            self.plugins.add(p)
            if p.status is not Status.OK and reg.uri in required:
                raise StartupError(f"load required plugin {reg.uri}: {p.error_text()}")
        counts = {s: 0 for s in Status}
        for p in self.plugins:
            counts[p.status] += 1
        log.info(
            "plugins loaded: %d ok, %d skipped, %d failed in %.1f ms",
            counts[Status.OK],
            counts[Status.SKIPPED],
            counts[Status.ERROR],
            (time.monotonic() - started) * 1000,
        )

    def _properties(self, reg: Registration) -> dict[str, str]:
        return {
            types.PROPERTY_ROOT_DIR: os.path.join(self.settings.root, reg.uri),
            types.PROPERTY_STATE_DIR: os.path.join(self.settings.state, reg.uri),
            types.PROPERTY_GRPC_ADDRESS: self.settings.grpc_address,
            types.PROPERTY_TTRPC_ADDRESS: self.settings.ttrpc_address,
        }

    async def _init_one(self, reg: Registration) -> Plugin:
        t0 = time.monotonic()
        cfg: Any = None
        meta = Meta()
        try:
            if reg.config is not None:
                cfg, warns = self.decode(
                    reg.config, self.settings.plugin_configs.get(reg.uri), reg.uri
                )
                for w in warns:
                    log.warning("%s", w)
                    self.warnings.append(w)
            ic = InitContext(
                registration=reg,
                config=cfg,
                properties=self._properties(reg),
                plugins=self.plugins,
                meta=meta,
                spawn=self.spawn,
                readiness=self._register_readiness,
            )
            instance = await reg.init(ic)
            p = Plugin(registration=reg, config=cfg, meta=meta, instance=instance)
        except SkipPlugin as e:
            p = Plugin(registration=reg, config=cfg, meta=meta, error=e)
        except Exception as e:  # noqa: BLE001 - recorded, reported by introspection
            p = Plugin(registration=reg, config=cfg, meta=meta, error=e)
        ms = (time.monotonic() - t0) * 1000
        if p.status is Status.OK:
            log.info("loaded plugin id=%s type=%s (%.1f ms)", reg.id, reg.type, ms)
        elif p.status is Status.SKIPPED:
            log.info("skip loading plugin id=%s type=%s: %s", reg.id, reg.type, p.error_text())
        else:
            log.warning(
                "failed to load plugin id=%s type=%s error=%s",
                reg.id,
                reg.type,
                p.error_text(),
                exc_info=log.isEnabledFor(logging.DEBUG) and p.error is not None,
            )
        return p

    def _register_readiness(self) -> Callable[[], None]:
        self._pending_readiness += 1
        done = False

        def mark() -> None:
            nonlocal done
            if done:
                return
            done = True
            self._pending_readiness -= 1
            if self._pending_readiness == 0 and self._ready is not None:
                self._ready.set()

        return mark

    # -- background tasks ---------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name or None)
        self._tasks.add(task)

        def _done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("background task %s failed: %r", t.get_name(), t.exception())

        task.add_done_callback(_done)
        return task

    # -- listeners ----------------------------------------------------------------------

    def instances(self) -> list[Any]:
        return [
            p.instance for p in self.plugins if p.status is Status.OK and p.instance is not None
        ]

    async def start_servers(self) -> None:
        """Start every ok server plugin with every ok instance to register services from."""
        services = self.instances()
        for p in self.plugins.of_type(types.SERVER):
            if p.status is not Status.OK:
                continue
            await p.instance.start(services)
            self._servers.append(p.instance)

    async def wait_ready(self) -> None:
        if self._pending_readiness and self._ready is not None:
            await self._ready.wait()

    async def start(self) -> None:
        await self.init_plugins()
        await self.start_servers()

    # -- shutdown -----------------------------------------------------------------------

    async def stop(self, grace: float = 5.0) -> list[BaseException]:
        """Listeners first, then background tasks, then instances in reverse init order."""
        errors: list[BaseException] = []
        for srv in reversed(self._servers):
            try:
                await srv.stop(grace)
            except Exception as e:  # noqa: BLE001
                errors.append(e)
                log.error("failed to stop server: %s", e)
        self._servers.clear()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=TASK_STOP_TIMEOUT)
            if stuck:
                # a task that ignores cancellation must not keep the daemon from stopping
                names = ", ".join(sorted(t.get_name() for t in stuck))
                err = errdefs.DeadlineExceeded(
                    f"background tasks did not stop within {TASK_STOP_TIMEOUT:g}s: {names}"
                )
                errors.append(err)
                log.error("%s", err)
        for p in reversed(list(self.plugins)):
            if p.status is not Status.OK or p.instance is None:
                continue
            close = getattr(p.instance, "close", None)
            if close is None:
                continue
            try:
                res = close()
                if inspect.isawaitable(res):
                    await res
            except Exception as e:  # noqa: BLE001
                errors.append(e)
                log.error("failed to close plugin %s: %s", p.uri, e)
        return errors


def sd_notify(state: str) -> bool:
    """Send ``state`` to systemd's NOTIFY_SOCKET, if set. Returns whether it was sent."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
        return True
    except OSError as e:
        log.warning("sd_notify failed: %s", e)
        return False
