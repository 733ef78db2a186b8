"""The shim manager (``io.containerd.shim.v1.manager``) and the task manager
(``io.containerd.runtime.v2.task``), as containerd's ``core/runtime/v2/{shim_manager,
task_manager,shim_load}.go``.

The shim manager starts shims for bundles, keeps one :class:`ShimInstance` per task and
namespace, notices shims that die (their connection drops) and cleans up after them with the
shim's ``delete`` command, publishing ``/tasks/exit`` and ``/tasks/delete``; at daemon start it
walks the bundles and reconnects to the shims that still run. The task manager is the
platform runtime the tasks service uses: bundles, shims and task objects per namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import shutil
from collections.abc import Mapping
from typing import Any

import attrs

from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.runtime import (
    TASK_DELETE_TOPIC,
    TASK_EXIT_TOPIC,
    UNKNOWN_EXIT_STATUS,
    CreateOpts,
    Exit,
    Status,
)
from pycontainerd.core.runtime.bundle import (
    SHIM_BINARY_PATH,
    Bundle,
    atomic_delete,
    load_bundle,
    new_bundle,
)
from pycontainerd.plugins.runtimes.v2.binary import (
    RuntimeResolver,
    ShimBinary,
    ShimLog,
    read_bootstrap,
)
from pycontainerd.plugins.runtimes.v2.shim import (
    LOAD_TIMEOUT,
    ShimInstance,
    ShimTask,
    TaskClient,
)

log = logging.getLogger(__name__)

TASK_PLUGIN_URI = "io.containerd.runtime.v2.task"
#: containerd's io.containerd.timeout.shim.cleanup (the shim's delete command has its own)
CLEANUP_TIMEOUT = 60.0


def _recategorise(e: errdefs.ContainerdError, prefix: str) -> errdefs.ContainerdError:
    err = type(e)(f"{prefix}: {e}")
    err.__cause__ = e
    return err


def _timestamp(dt: datetime.datetime | None) -> Any:
    from google.protobuf import timestamp_pb2

    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(dt or datetime.datetime.now(datetime.UTC))
    return ts


@attrs.define(eq=False, kw_only=True)
class ShimManager:
    """Starts, tracks, reloads and cleans up shims."""

    #: the daemon's gRPC address (``-address``, ``GRPC_ADDRESS``)
    address: str
    #: the daemon's ttrpc address (``TTRPC_ADDRESS``): where shims forward events
    ttrpc_address: str
    #: an event publisher (the exchange)
    events: Any
    #: the metadata container store (runtime name of bundles without ``shim-binary-path``)
    containers: Any = None
    #: the metadata sandbox store (sandbox shims are kept even without tasks)
    sandboxes: Any = None
    env: Mapping[str, str] = attrs.Factory(dict)
    debug: bool = False
    resolver: RuntimeResolver = attrs.Factory(RuntimeResolver)
    _shims: dict[tuple[str, str], ShimInstance] = attrs.Factory(dict)
    _background: set[asyncio.Task[Any]] = attrs.Factory(set)
    _closed: bool = False

    # -- the list

    def get(self, namespace: str, id: str) -> ShimInstance:  # noqa: A002
        shim = self._shims.get((namespace, id))
        if shim is None:
            raise errdefs.NotFound(f"task {id!r} in namespace {namespace!r}: not found")
        return shim

    def list(self, namespace: str | None = None) -> list[ShimInstance]:
        return [s for (ns, _), s in self._shims.items() if namespace is None or ns == namespace]

    def add(self, shim: ShimInstance) -> None:
        key = (shim.namespace, shim.id)
        if key in self._shims:
            raise errdefs.AlreadyExists(f"task {shim.id!r} in namespace {shim.namespace!r}")
        self._shims[key] = shim

    def remove(self, shim: ShimInstance) -> None:
        key = (shim.namespace, shim.id)
        if self._shims.get(key) is shim:
            del self._shims[key]

    def _binary(self, bundle: Bundle, runtime_path: str) -> ShimBinary:
        return ShimBinary(
            bundle=bundle,
            runtime=runtime_path,
            address=self.address,
            ttrpc_address=self.ttrpc_address,
            env=self.env,
            debug=self.debug or logging.getLogger().isEnabledFor(logging.DEBUG),
        )

    def _watch(self, shim: ShimInstance) -> None:
        shim.watch()
        if shim._watcher is not None:
            self._background.add(shim._watcher)
            shim._watcher.add_done_callback(self._background.discard)

    # -- start

    async def start(self, id: str, bundle: Bundle, opts: CreateOpts) -> ShimInstance:  # noqa: A002
        """Start (or join, when the shim groups tasks) the shim for ``bundle`` and connect."""
        if self._closed:
            raise errdefs.Unavailable("shim manager is shut down")
        try:
            runtime_path = self.resolver.resolve(opts.runtime)
        except errdefs.ContainerdError as e:
            raise _recategorise(e, "failed to resolve runtime path") from None
        binary = self._binary(bundle, runtime_path)
        shim_log = await ShimLog.open(bundle)
        try:
            params = await binary.start(opts.options())
            client = await TaskClient.connect(params)
        except errdefs.ContainerdError as e:
            shim_log.close()
            raise _recategorise(e, "failed to start shim") from None
        except BaseException:
            shim_log.close()
            raise
        shim = ShimInstance(bundle=bundle, params=params, client=client, shim_log=shim_log)
        shim.on_close = lambda: self._cleanup_after_dead_shim(shim, binary)
        try:
            self.add(shim)
        except BaseException:
            await shim.close()
            raise
        self._watch(shim)
        log.info(
            "shim started id=%s namespace=%s address=%s version=%d",
            id,
            bundle.namespace,
            params.address,
            params.version,
        )
        return shim

    # -- dead shims

    async def _cleanup_after_dead_shim(self, shim: ShimInstance, binary: ShimBinary) -> Exit:
        """The shim is gone: run its ``delete``, drop it, publish exit and delete events
        (when it was still listed), and tell waiters how it ended."""
        ns, id_ = shim.namespace, shim.id
        log.warning("cleaning up after shim disconnected id=%s namespace=%s", id_, ns)
        exit_: Exit | None = None
        try:
            async with asyncio.timeout(CLEANUP_TIMEOUT):
                exit_ = await binary.delete()
        except (errdefs.ContainerdError, OSError, TimeoutError) as e:
            log.warning("failed to clean up after shim disconnected id=%s: %s", id_, e)
            try:
                await asyncio.to_thread(shim.bundle.delete)
            except (errdefs.ContainerdError, OSError) as e2:
                log.warning("failed to remove bundle of dead shim id=%s: %s", id_, e2)
        if exit_ is None:
            exit_ = Exit(
                pid=0, status=UNKNOWN_EXIT_STATUS, timestamp=datetime.datetime.now(datetime.UTC)
            )
        if shim.params.address:
            await asyncio.to_thread(_remove_stale_socket, shim.params.address)
        listed = self._shims.get((ns, id_)) is shim
        self.remove(shim)
        if shim.shim_log is not None:
            shim.shim_log.close()
        if listed:
            await self._publish_exit(ns, id_, exit_)
        if not shim.dead_exit.done():
            shim.dead_exit.set_result(exit_)
        return exit_

    async def _publish_exit(self, namespace: str, id: str, exit_: Exit) -> None:  # noqa: A002
        from pycontainerd.api.containerd.events import task_pb2

        ts = _timestamp(exit_.timestamp)
        with namespaces.use(namespace):
            try:
                await self.events.publish(
                    TASK_EXIT_TOPIC,
                    task_pb2.TaskExit(
                        container_id=id,
                        id=id,
                        pid=exit_.pid,
                        exit_status=exit_.status,
                        exited_at=ts,
                    ),
                )
                await self.events.publish(
                    TASK_DELETE_TOPIC,
                    task_pb2.TaskDelete(
                        container_id=id, pid=exit_.pid, exit_status=exit_.status, exited_at=ts
                    ),
                )
            except errdefs.ContainerdError as e:
                log.error("failed to publish exit of dead shim id=%s: %s", id, e)

    # -- reload at daemon start

    async def load_existing_shims(self, state: str, root: str) -> None:
        """Reconnect to the shims of every bundle under ``state``; clean up dead ones and
        work directories without a bundle."""
        if not os.path.isdir(state):
            return
        for ns in sorted(os.listdir(state)):
            if ns.startswith(".") or not os.path.isdir(os.path.join(state, ns)):
                continue
            with namespaces.use(ns):
                await self._load_shims(state, ns)
                await asyncio.to_thread(_cleanup_work_dirs, state, root, ns)

    async def _load_shims(self, state: str, ns: str) -> None:
        ns_dir = os.path.join(state, ns)
        for id_ in sorted(os.listdir(ns_dir)):
            path = os.path.join(ns_dir, id_)
            if id_.startswith("."):
                # a delete that crashed half-way
                await asyncio.to_thread(shutil.rmtree, path, True)
                continue
            if not os.path.isdir(path):
                continue
            bundle = load_bundle(state, ns, id_)
            try:
                await self._load_shim(bundle)
            except Exception as e:  # one broken bundle must not stop the daemon
                log.error("failed to load shim id=%s namespace=%s: %s", id_, ns, e)

    async def _runtime_of(self, bundle: Bundle) -> str | None:
        try:
            with open(bundle.file(SHIM_BINARY_PATH)) as f:
                runtime = f.read().strip()
            if runtime:
                return runtime
        except FileNotFoundError:
            pass
        if self.containers is not None:
            try:
                container = await self.containers.get(bundle.id)
                return str(container.runtime.name)
            except errdefs.NotFound:
                pass
        return None

    async def _load_shim(self, bundle: Bundle) -> None:
        if not os.listdir(bundle.path):
            await asyncio.to_thread(bundle.delete)
            return
        runtime = await self._runtime_of(bundle)
        if runtime is None:
            log.error(
                "loading bundle %s: no runtime recorded and no container; removing", bundle.id
            )
            await asyncio.to_thread(bundle.delete)
            return
        try:
            runtime_path = self.resolver.resolve(runtime)
        except errdefs.ContainerdError as e:
            log.error("loading bundle %s: %s; removing", bundle.id, e)
            await asyncio.to_thread(bundle.delete)
            return
        binary = self._binary(bundle, runtime_path)
        shim_log = await ShimLog.open(bundle)
        params = _no_params()
        try:
            params = await asyncio.to_thread(read_bootstrap, bundle)
            client = await TaskClient.connect(params, timeout=LOAD_TIMEOUT)
        except (errdefs.ContainerdError, OSError) as e:
            log.warning(
                "shim of task %s in namespace %s is gone: %s", bundle.id, bundle.namespace, e
            )
            shim_log.close()
            dead = ShimInstance(
                bundle=bundle,
                params=params,
                client=_DeadClient(),
                shim_log=None,
            )
            self._shims[(bundle.namespace, bundle.id)] = dead  # so that events are published
            await self._cleanup_after_dead_shim(dead, binary)
            return
        shim = ShimInstance(bundle=bundle, params=params, client=client, shim_log=shim_log)
        shim.on_close = lambda: self._cleanup_after_dead_shim(shim, binary)
        task = ShimTask(shim)
        try:
            async with asyncio.timeout(LOAD_TIMEOUT):
                await task.pid()
        except (errdefs.ContainerdError, TimeoutError) as e:
            log.warning("shim of task %s does not answer: %s", bundle.id, e)
            await shim.close()
            self._shims[(bundle.namespace, bundle.id)] = shim
            await self._cleanup_after_dead_shim(shim, binary)
            return
        # a shim started for a task that was never created (the daemon died in between) is
        # a leak, unless it serves a sandbox. A task whose process exited while we were down
        # is not: its state (STOPPED, exit status) is what the CRI and `ctr task ls` recover.
        leaked = False
        try:
            await task.state()
        except errdefs.NotFound:
            leaked = True
        if leaked and self.sandboxes is not None:
            with contextlib.suppress(errdefs.NotFound):
                await self.sandboxes.get(bundle.id)
                leaked = False
        if leaked:
            log.info("cleaning leaked shim process id=%s namespace=%s", bundle.id, bundle.namespace)
            with contextlib.suppress(errdefs.ContainerdError):
                await task.delete(sandboxed=False, remove_task=lambda: None)
            return
        self.add(shim)
        self._watch(shim)
        log.info(
            "shim reconnected id=%s namespace=%s address=%s",
            bundle.id,
            bundle.namespace,
            params.address,
        )

    # -- shutdown

    async def close(self) -> None:
        """Drop every shim connection; the shims and their containers keep running."""
        self._closed = True
        shims = list(self._shims.values())
        self._shims.clear()
        for shim in shims:
            with contextlib.suppress(Exception):
                await shim.close()
        for t in list(self._background):
            t.cancel()
        for t in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


def _no_params() -> Any:
    from pycontainerd.plugins.runtimes.v2.binary import BootstrapParams

    return BootstrapParams(version=0, address="", protocol="")


class _DeadClient:
    """Stands in for the connection to a shim that could not be reached."""

    closed = True

    async def wait_closed(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def call(self, *args: Any, **kw: Any) -> Any:
        raise errdefs.Unavailable("shim is gone")


def _remove_stale_socket(address: str) -> None:
    """Remove the socket file of a dead shim (one that no longer accepts connections)."""
    import socket

    if not address.startswith("unix://"):
        return
    path = address[len("unix://") :]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1)
        s.connect(path)
        return  # alive: another task of a grouped shim may still use it
    except ConnectionRefusedError:
        pass
    except OSError:
        return
    finally:
        s.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
        log.debug("removed stale shim socket %s", path)


def _cleanup_work_dirs(state: str, root: str, ns: str) -> None:
    """Remove work directories whose bundle is gone (blocking)."""
    ns_root = os.path.join(root, ns)
    if not os.path.isdir(ns_root):
        return
    for name in os.listdir(ns_root):
        if name.startswith("."):
            shutil.rmtree(os.path.join(ns_root, name), ignore_errors=True)
            continue
        if not os.path.exists(os.path.join(state, ns, name)):
            try:
                atomic_delete(os.path.join(ns_root, name))
            except errdefs.ContainerdError as e:
                log.warning("failed to remove work dir %s: %s", name, e)


@attrs.define(eq=False, kw_only=True)
class TaskManager:
    """The runtime v2 platform runtime: tasks as shims, bundles under ``state``."""

    root: str
    state: str
    shims: ShimManager

    def id(self) -> str:
        return TASK_PLUGIN_URI

    async def load(self) -> None:
        await self.shims.load_existing_shims(self.state, self.root)

    async def create(self, task_id: str, opts: CreateOpts) -> ShimTask:
        ns = namespaces.required()
        spec = opts.spec[1] if opts.spec is not None else None
        bundle = await asyncio.to_thread(new_bundle, self.root, self.state, ns, task_id, spec)
        try:
            shim = await self.shims.start(task_id, bundle, opts)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(bundle.delete)
            raise
        task = ShimTask(shim)
        try:
            await task.create(opts)
        except BaseException as e:
            self.shims.remove(shim)
            try:
                async with asyncio.timeout(CLEANUP_TIMEOUT):
                    await task.delete(sandboxed=bool(opts.sandbox_id), remove_task=lambda: None)
            except (errdefs.ContainerdError, TimeoutError) as cleanup_err:
                log.debug("cleanup of failed task %s: %s", task_id, cleanup_err)
                await task.shutdown()
                await shim.close()
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(bundle.delete)
            if isinstance(e, errdefs.ContainerdError):
                raise _recategorise(e, "failed to create shim task") from None
            raise
        return task

    async def get(self, task_id: str) -> ShimTask:
        ns = namespaces.required()
        try:
            return ShimTask(self.shims.get(ns, task_id))
        except errdefs.NotFound:
            raise errdefs.NotFound(f"task {task_id!r}: not found") from None

    async def tasks(self, all: bool = False) -> list[ShimTask]:  # noqa: A002
        ns = None if all else namespaces.required()
        return [ShimTask(s) for s in self.shims.list(ns)]

    async def delete(self, task_id: str, *, sandboxed: bool = False) -> Exit:
        ns = namespaces.required()
        shim = self.shims.get(ns, task_id)
        if shim.client.closed and shim.closing:
            raise errdefs.NotFound(f"task {task_id!r}: not found")
        if shim.client.closed:
            # the shim died; its cleanup is under way or done
            try:
                async with asyncio.timeout(CLEANUP_TIMEOUT):
                    return await asyncio.shield(shim.dead_exit)
            except TimeoutError:
                raise errdefs.Unavailable(f"shim of task {task_id!r} is gone") from None
        task = ShimTask(shim)
        with contextlib.suppress(errdefs.NotFound, errdefs.Unavailable, errdefs.DeadlineExceeded):
            state = await task.state()
            if state.status in (Status.RUNNING, Status.PAUSED, Status.PAUSING):
                raise errdefs.FailedPrecondition(
                    f"task {task_id!r} must be stopped before deletion: {state.status.name.lower()}"
                )
        try:
            return await task.delete(
                sandboxed=sandboxed, remove_task=lambda: self.shims.remove(shim)
            )
        except errdefs.ContainerdError as e:
            raise _recategorise(e, "failed to delete task") from None
