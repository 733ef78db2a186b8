"""Pod sandbox lifecycle on the CRI side (containerd's ``internal/cri/server/sandbox_*.go``).

:class:`SandboxManager` is what the CRI service holds as ``c.sandboxes``:

- ``run``: id and name reservation, lease, runtime handler, sandbox record (extension
  ``metadata``), network namespace and CNI ADD unless host networking, then the sandbox
  controller's create+start; READY, events, exit monitor. Each failure undoes what was
  done, in reverse.
- ``stop``: stop hooks (the pod's containers), the controller's stop (pause task killed),
  CNI DEL with the cached result before the netns goes; idempotent.
- ``remove``: stop, remove hooks, controller shutdown (task, container, snapshot, files),
  sandbox record, lease, store; idempotent and NotFound-tolerant.
- ``status``/``list``; ``recover`` rebuilds the store at start from the sandbox records.

For the containers code: ``store.get(id)`` gives a :class:`~.store.Sandbox` (config,
netns path, IPs, runtime handler, status.pid), :meth:`SandboxManager.paths` its files,
``stop_hooks``/``remove_hooks`` take ``async def hook(sandbox)`` called before the sandbox's
own stop/remove, and ``events`` publishes CRI container events.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.metadata.containers import Runtime as RecordRuntime
from pycontainerd.core.metadata.sandboxes import Sandbox as SandboxRecord
from pycontainerd.plugins.cri.sandbox import convert
from pycontainerd.plugins.cri.sandbox.annotations import (
    SANDBOX_RECORD_METADATA,
    SANDBOX_RECORD_UPDATED_RESOURCES,
)
from pycontainerd.plugins.cri.sandbox.events import ContainerEventBroadcaster
from pycontainerd.plugins.cri.sandbox.paths import SandboxPaths
from pycontainerd.plugins.cri.sandbox.store import (
    Metadata,
    Sandbox,
    SandboxStore,
    State,
    make_sandbox_name,
    new_id,
)

log = logging.getLogger(__name__)

DEFAULT_SANDBOXER = "podsandbox"
STOP_WAIT_TIMEOUT = 30.0

Hook = Callable[[Sandbox], Awaitable[None]]


def _pb() -> Any:
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2

    return api_pb2


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@attrs.define(eq=False, kw_only=True)
class SandboxManager:
    #: the CRI service (config, runtime dirs, client, sandbox controllers)
    c: Any
    store: SandboxStore = attrs.Factory(SandboxStore)
    events: ContainerEventBroadcaster = attrs.Factory(ContainerEventBroadcaster)
    #: ``async def hook(sandbox)`` run first by stop (the pod's containers are stopped) and
    #: by remove (they are removed)
    stop_hooks: list[Hook] = attrs.Factory(list)
    remove_hooks: list[Hook] = attrs.Factory(list)
    #: CNI per conf dir ("" = the default ``cni.conf_dir``)
    _cni: dict[str, Any] = attrs.Factory(dict)
    _tasks: set[asyncio.Task[Any]] = attrs.Factory(set)
    #: set once :meth:`start` (recovery) is done
    _started: asyncio.Event = attrs.Factory(asyncio.Event)

    async def wait_started(self, timeout: float = 60.0) -> None:
        """Block until recovery at start-up is done (CRI calls wait for it, as containerd
        answers none before it is initialised)."""
        if self._started.is_set():
            return
        try:
            async with asyncio.timeout(timeout):
                await self._started.wait()
        except TimeoutError:
            raise errdefs.Unavailable("cri: server is not initialized yet") from None

    # --- helpers -------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        return self.c.client

    def paths(self, id_: str) -> SandboxPaths:
        return SandboxPaths(self.c.runtime.root_dir, self.c.runtime.state_dir, id_)

    def controller(self, sandboxer: str) -> Any:
        name = sandboxer or DEFAULT_SANDBOXER
        found = self.c.sandbox_controllers.get(name)
        if found is None:
            known = ", ".join(sorted(self.c.sandbox_controllers)) or "none"
            raise errdefs.FailedPrecondition(
                f"sandbox controller {name!r} is not available (loaded: {known})"
            )
        return found

    def netns_dir(self) -> str:
        from pycontainerd.core.netns import DEFAULT_BASE_DIR

        if self.c.config.netns_mounts_under_state_dir:
            return os.path.join(self.c.runtime.state_dir, "netns")
        return DEFAULT_BASE_DIR

    def network_plugin(self, handler: str) -> Any:
        """The CNI of a runtime handler (its ``cni_conf_dir``, else the default), loaded on
        first use and reloaded when its conf dir changes."""
        from pycontainerd.core.cni import CNI, Options

        cfg = self.c.config.cni
        conf_dir = cfg.conf_dir
        max_conf = cfg.max_conf_num
        try:
            rt = self.c.config.runtime(handler)
        except errdefs.NotFound:
            rt = None
        if rt is not None and rt.cni_conf_dir:
            conf_dir = rt.cni_conf_dir
            max_conf = rt.cni_max_conf_num or max_conf
        net = self._cni.get(conf_dir)
        if net is None:
            bin_dirs = list(cfg.bin_dirs)
            if cfg.bin_dir and cfg.bin_dir not in bin_dirs:
                bin_dirs.insert(0, cfg.bin_dir)
            net = CNI(
                Options(
                    bin_dirs=tuple(bin_dirs),
                    conf_dir=conf_dir,
                    max_conf_num=max_conf,
                    setup_serially=cfg.setup_serially,
                    use_internal_loopback=cfg.use_internal_loopback,
                )
            )
            self._cni[conf_dir] = net
        return net

    async def _load_network(self, net: Any) -> None:
        await asyncio.to_thread(net.reload_if_changed)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def publish(self, sandbox: Sandbox, event_type: int) -> None:
        pb = _pb()
        self.events.publish(
            pb.ContainerEventResponse(
                container_id=sandbox.id,
                container_event_type=event_type,
                created_at=convert.unix_nano(_now()),
                pod_sandbox_status=self.cri_status(sandbox),
            )
        )

    async def _nri(self, hook: str, sandbox: Sandbox) -> None:
        """An NRI call point (``c.nri.<hook>(sandbox)``), when the CRI has NRI."""
        fn = getattr(getattr(self.c, "nri", None), hook, None)
        if fn is not None:
            await fn(sandbox)

    async def _nri_forget(self, sandbox: Sandbox) -> None:
        await self._nri("cri_stop_pod_sandbox", sandbox)
        await self._nri("cri_remove_pod_sandbox", sandbox)

    async def _record_update(self, sandbox_id: str, metadata: Metadata) -> None:
        with self.client.scope():
            store = self.client.require("sandbox_store")
            record = await store.get(sandbox_id)
            extensions = dict(record.extensions)
            extensions[SANDBOX_RECORD_METADATA] = metadata.to_typed()
            await store.update(
                attrs.evolve(record, extensions=extensions),
                [f"extensions.{SANDBOX_RECORD_METADATA}"],
            )

    async def record_resources(self, sandbox: Sandbox) -> None:
        """Keep the sandbox's updated resources in its record (they survive a restart, as
        containerd keeps them in the record's ``updated-resources`` extension). A sandbox
        without a record has nothing to recover them into: only logged."""
        from pycontainerd.plugins.cri.sandbox.store import updated_resources_to_typed

        value = updated_resources_to_typed(sandbox.status.overhead, sandbox.status.resources)
        key = SANDBOX_RECORD_UPDATED_RESOURCES
        with self.client.scope():
            store = self.client.require("sandbox_store")
            try:
                record = await store.get(sandbox.id)
            except errdefs.NotFound:
                log.warning("cri: sandbox %s has no record; resources not kept", sandbox.id)
                return
            extensions = {**record.extensions, key: value}
            await store.update(attrs.evolve(record, extensions=extensions), [f"extensions.{key}"])

    # --- RunPodSandbox -------------------------------------------------------------------

    async def run(self, config: Any, runtime_handler: str) -> str:
        from pycontainerd.core.netns import NetNS

        if not config.HasField("metadata") or not config.metadata.name:
            raise errdefs.InvalidArgument("sandbox config must include metadata with a name")
        id_ = new_id()
        name = make_sandbox_name(config.metadata)
        try:
            self.store.names.reserve(name, id_)
        except errdefs.AlreadyExists as e:
            raise errdefs.AlreadyExists(f"failed to reserve sandbox name {name!r}: {e}") from None
        undo: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("name", lambda: _sync(self.store.names.release_by_name, name))
        ]
        try:
            with self.client.scope():
                leases = self.client.require("leases")
                await leases.create(id_)
                undo.append(("lease", lambda: leases.delete(id_)))

                handler = self._resolve_handler(runtime_handler)
                sandboxer = handler.sandboxer or DEFAULT_SANDBOXER
                controller = self.controller(sandboxer)
                from pycontainerd.plugins.cri.podsandbox.controller import runtime_options

                metadata = Metadata(
                    id=id_, name=name, config=config, runtime_handler=runtime_handler
                )
                sandbox = Sandbox(metadata=metadata, sandboxer=sandboxer)
                record_store = self.client.require("sandbox_store")
                await record_store.create(
                    SandboxRecord(
                        id=id_,
                        runtime=RecordRuntime(
                            name=handler.runtime_type, options=runtime_options(handler)
                        ),
                        labels={"name": name[:4096]},
                        extensions={SANDBOX_RECORD_METADATA: metadata.to_typed()},
                        sandboxer=sandboxer,
                    )
                )
                undo.append(("sandbox record", lambda: record_store.delete(id_)))

                if not metadata.host_network:
                    netns = await NetNS.acreate(self.netns_dir())
                    undo.append(("network namespace", netns.aremove))
                    metadata.netns_path = netns.path
                    await self._record_update(id_, metadata)
                    await self._setup_network(sandbox, undo)
                    await self._record_update(id_, metadata)

                await controller.create(metadata)
                undo.append(("sandbox", lambda: _shutdown(controller, id_)))
                instance = await controller.start(id_)
                sandbox.status.pid = instance.pid
                undo.append(("nri", lambda: self._nri_forget(sandbox)))
                await self._nri("cri_run_pod_sandbox", sandbox)
        except BaseException as e:
            log.warning("RunPodSandbox for %s failed, undoing: %s", name, e)
            await asyncio.shield(self._undo(id_, undo))
            raise
        sandbox.status.pid = instance.pid
        sandbox.status.created_at = instance.created_at
        sandbox.status.state = State.READY
        self.store.add(sandbox)
        pb = _pb()
        self.publish(sandbox, pb.CONTAINER_CREATED_EVENT)
        sandbox.monitor = self._spawn(self._monitor(sandbox), f"sandbox exit {id_[:12]}")
        self.publish(sandbox, pb.CONTAINER_STARTED_EVENT)
        log.info("RunPodSandbox for %s returns sandbox id %s", name, id_)
        return id_

    def _resolve_handler(self, runtime_handler: str) -> Any:
        from pycontainerd.plugins.runtimes.v2.binary import RuntimeResolver

        try:
            handler = self.c.config.runtime(runtime_handler)
        except errdefs.NotFound as e:
            raise errdefs.NotFound(
                f"failed to get sandbox runtime for handler {runtime_handler!r}: {e}"
            ) from None
        shim = handler.runtime_path or handler.runtime_type
        try:
            RuntimeResolver().resolve(shim)
        except errdefs.ContainerdError as e:
            name = runtime_handler or self.c.config.containerd.default_runtime_name
            raise errdefs.FailedPrecondition(
                f"runtime handler {name!r}: runtime type {handler.runtime_type!r} "
                f"cannot be used: {e}"
            ) from None
        return handler

    async def _setup_network(
        self, sandbox: Sandbox, undo: list[tuple[str, Callable[[], Awaitable[Any]]]]
    ) -> None:
        from pycontainerd.core.cni import select_pod_ips

        md = sandbox.metadata
        net = self.network_plugin(md.runtime_handler)
        await self._load_network(net)
        args = convert.cni_args(md.id, md.config)
        undo.append(("pod network", lambda: net.remove(md.id, md.netns_path, **args)))
        result = await net.setup(md.id, md.netns_path, **args)
        configs = result.interfaces.get(f"{net.options.if_prefix}0")
        md.ip, md.additional_ips = select_pod_ips(
            list(configs.ip_configs) if configs else [], self.c.config.cni.ip_pref
        )
        md.cni_result = result.to_json()
        log.info("pod %s (%s) got ip %s %s", md.name, md.id, md.ip, md.additional_ips)

    async def _undo(self, id_: str, undo: list[tuple[str, Callable[[], Awaitable[Any]]]]) -> None:
        with self.client.scope():
            for what, fn in reversed(undo):
                try:
                    await fn()
                except errdefs.NotFound:
                    pass
                except Exception as e:  # noqa: BLE001 - every step is tried
                    log.error("failed to undo %s of sandbox %s: %s", what, id_, e)

    async def _monitor(self, sandbox: Sandbox) -> None:
        """Follow the sandbox until its pause task exits: NOTREADY, exit status, event."""
        try:
            exit_ = await self.controller(sandbox.sandboxer).wait(sandbox.id)
        except errdefs.NotFound:
            exit_ = None
        except errdefs.ContainerdError as e:
            log.warning("failed to wait for sandbox %s: %s", sandbox.id, e)
            exit_ = None
        sandbox.status.state = State.NOTREADY
        sandbox.status.pid = 0
        if exit_ is not None:
            sandbox.status.exit_status = exit_.status
            sandbox.status.exited_at = exit_.exited_at
        sandbox.stopped.set()
        if self.store.get_or_none(sandbox.id) is sandbox:
            self.publish(sandbox, _pb().CONTAINER_STOPPED_EVENT)

    # --- StopPodSandbox ------------------------------------------------------------------

    async def stop(self, id_: str) -> None:
        try:
            sandbox = self.store.get(id_)
        except errdefs.NotFound:
            return  # idempotent: nothing left to stop
        async with sandbox.lock:
            await self._stop(sandbox)

    async def _stop(self, sandbox: Sandbox) -> None:
        from pycontainerd.core.netns import NetNS

        id_ = sandbox.id
        for hook in list(self.stop_hooks):
            await hook(sandbox)
        await self._nri("cri_stop_pod_sandbox", sandbox)
        if sandbox.state in (State.READY, State.UNKNOWN):
            try:
                await self.controller(sandbox.sandboxer).stop(id_)
            except errdefs.NotFound:
                log.warning("sandbox %s is not found when stopping it", id_)
            if sandbox.monitor is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(STOP_WAIT_TIMEOUT):
                        await sandbox.stopped.wait()
            else:
                sandbox.status.state = State.NOTREADY
                sandbox.stopped.set()
        md = sandbox.metadata
        if md.netns_path:
            netns = NetNS.load(md.netns_path)
            path = "" if await asyncio.to_thread(netns.closed) else md.netns_path
            net = self.network_plugin(md.runtime_handler)
            try:
                await self._load_network(net)
                await net.remove(id_, path, **convert.cni_args(id_, md.config))
            except errdefs.ContainerdError as e:
                if md.cni_result is not None:
                    raise errdefs.from_code(
                        e.code, f"failed to destroy network for sandbox {id_!r}: {e}"
                    ) from e
                log.warning(
                    "failed to destroy network for sandbox %s, ignored as its setup never "
                    "completed: %s",
                    id_,
                    e,
                )
            await netns.aremove()
        log.info("TearDown network for sandbox %s successfully", id_)

    # --- RemovePodSandbox ----------------------------------------------------------------

    async def remove(self, id_: str) -> None:
        try:
            sandbox = self.store.get(id_)
        except errdefs.NotFound:
            log.info("RemovePodSandbox: sandbox %s not found, nothing to remove", id_)
            return
        async with sandbox.lock:
            if self.store.get_or_none(sandbox.id) is not sandbox:
                return
            await self._stop(sandbox)
            for hook in list(self.remove_hooks):
                await hook(sandbox)
            await self._nri("cri_remove_pod_sandbox", sandbox)
            with self.client.scope():
                try:
                    await self.controller(sandbox.sandboxer).shutdown(sandbox.id)
                except errdefs.NotFound:
                    pass
                try:
                    await self.client.require("sandbox_store").delete(sandbox.id)
                except errdefs.NotFound:
                    pass
                try:
                    await self.client.require("leases").delete(sandbox.id)
                except errdefs.NotFound:
                    pass
            if sandbox.monitor is not None and not sandbox.monitor.done():
                sandbox.monitor.cancel()
            self.store.delete(sandbox.id)
            self.store.names.release_by_name(sandbox.name)
            self.publish(sandbox, _pb().CONTAINER_DELETED_EVENT)
            log.info("removed sandbox %s", sandbox.id)

    # --- status and list -----------------------------------------------------------------

    def ips(self, sandbox: Sandbox) -> tuple[str, list[str]]:
        """The pod's IPs; none for host networking or once the netns is gone."""
        md = sandbox.metadata
        if md.host_network or not md.netns_path:
            return "", []
        from pycontainerd.core.netns import NetNS

        try:
            if NetNS.load(md.netns_path).closed():
                return "", []
        except errdefs.ContainerdError:
            return "", []
        return md.ip, list(md.additional_ips)

    def cri_status(self, sandbox: Sandbox) -> Any:
        ip, additional = self.ips(sandbox)
        return convert.to_cri_status(sandbox, ip, additional)

    async def status(self, id_: str, verbose: bool = False) -> tuple[Any, dict[str, str]]:
        sandbox = self.store.get(id_)
        info: dict[str, str] = {}
        try:
            cstatus = await self.controller(sandbox.sandboxer).status(sandbox.id, verbose)
            info = dict(cstatus.info)
        except errdefs.NotFound:
            if verbose:
                info = {"info": json.dumps(self._deleted_info(sandbox))}
        status = self.cri_status(sandbox)
        if status.created_at == 0:
            with self.client.scope(), contextlib.suppress(errdefs.NotFound):
                record = await self.client.require("sandbox_store").get(sandbox.id)
                status.created_at = convert.unix_nano(record.created_at)
        return status, info

    def _deleted_info(self, sandbox: Sandbox) -> dict[str, Any]:
        from google.protobuf import json_format

        md = sandbox.metadata
        return {
            "pid": sandbox.status.pid,
            "processStatus": "deleted",
            "netNamespaceClosed": not self.ips(sandbox)[0] and not md.host_network,
            "config": json_format.MessageToDict(md.config),
            "cniResult": md.cni_result,
            "sandboxMetadata": md.to_json()["Metadata"],
        }

    def list(self, flt: Any = None) -> list[Any]:
        return [convert.to_cri_sandbox(s) for s in self.store if convert.matches(s, flt)]

    # --- start, recovery and shutdown ----------------------------------------------------

    async def start(self) -> None:
        """Rebuild the store from the sandbox records of ``k8s.io`` (after a restart)."""
        try:
            await self._recover_all()
        finally:
            self._started.set()

    async def _recover_all(self) -> None:
        records_store = self.client.sandbox_store
        if records_store is None:
            log.warning("cri: no sandbox store; sandboxes are not recovered")
            return
        try:
            with self.client.scope():
                records = await records_store.list()
        except errdefs.ContainerdError as e:
            log.error("cri: failed to list sandbox records; none recovered: %s", e)
            return
        for record in records:
            try:
                await self._recover(record)
            except Exception as e:  # noqa: BLE001 - one bad record must not stop the rest
                log.error("cri: failed to recover sandbox %s: %s", record.id, e)

    async def _recover(self, record: SandboxRecord) -> None:
        ext = record.extensions.get(SANDBOX_RECORD_METADATA)
        if ext is None:
            log.warning("cri: sandbox record %s has no CRI metadata; skipped", record.id)
            return
        md = Metadata.from_typed(ext)
        sandbox = Sandbox(metadata=md, sandboxer=record.sandboxer or DEFAULT_SANDBOXER)
        updated = record.extensions.get(SANDBOX_RECORD_UPDATED_RESOURCES)
        if updated is not None:
            from pycontainerd.plugins.cri.sandbox.store import updated_resources_from_typed

            try:
                overhead, resources = updated_resources_from_typed(updated[1])
            except ValueError as e:
                log.warning("cri: sandbox %s: bad updated-resources extension: %s", md.id, e)
            else:
                sandbox.status.overhead, sandbox.status.resources = overhead, resources
        try:
            controller = self.controller(sandbox.sandboxer)
            cstatus = await controller.recover(md)
        except errdefs.ContainerdError as e:
            log.warning("cri: sandbox %s state unknown: %s", md.id, e)
            sandbox.status.state = State.UNKNOWN
        else:
            sandbox.status.state = {
                "SANDBOX_READY": State.READY,
                "SANDBOX_NOTREADY": State.NOTREADY,
            }.get(cstatus.state, State.UNKNOWN)
            sandbox.status.pid = cstatus.pid
            sandbox.status.created_at = cstatus.created_at or record.created_at
        if sandbox.status.created_at is None:
            sandbox.status.created_at = record.created_at
        self.store.names.reserve(md.name, md.id)
        self.store.add(sandbox)
        if sandbox.state is State.READY:
            sandbox.monitor = self._spawn(self._monitor(sandbox), f"sandbox exit {md.id[:12]}")
        elif sandbox.state is State.NOTREADY:
            sandbox.stopped.set()
        log.info("cri: recovered sandbox %s (%s) %s", md.id, md.name, sandbox.state.name)

    async def close(self) -> None:
        self.events.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


async def _sync(fn: Callable[..., Any], *args: Any) -> None:
    fn(*args)


async def _shutdown(controller: Any, id_: str) -> None:
    with contextlib.suppress(errdefs.NotFound):
        await controller.shutdown(id_)
