"""The CRI side of NRI (containerd's ``internal/cri/nri``): what the CRI code calls at each
lifecycle point, turned into calls on the NRI adaptation (:class:`pycontainerd.core.nri.NRI`).

:class:`CRINRI` is what the CRI service holds as ``c.nri``. It converts CRI sandboxes and
containers to NRI :class:`~pycontainerd.core.nri.PodSandbox` / :class:`~pycontainerd.core.nri.
Container` values and implements the call points the pod and container code use
(``cri_<hook>``): run/stop/remove pod sandbox; create (the merged adjustment applied to the
OCI spec before the container record exists; a conflict or plugin error fails the create),
post-create, start, post-start, update/post-update, stop and remove container. It starts the
adaptation with the CRI's sync (current pods and containers), update (Linux resources of
running containers through the tasks service) and evict (stop) functions.

Without NRI (plugin disabled or failed, or its start failed) every call point does nothing
and the spec is returned unchanged. Notifications that cannot change the outcome (post-*,
stop, remove, pod stop/remove) log errors instead of failing the CRI call, as containerd does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import attrs
from google.protobuf import any_pb2

from pycontainerd.core import errdefs

log = logging.getLogger(__name__)

_CRI_TO_NRI_STATE = {
    "CONTAINER_CREATED": "created",
    "CONTAINER_RUNNING": "running",
    "CONTAINER_EXITED": "stopped",
    "CONTAINER_UNKNOWN": "unknown",
}


def _api() -> Any:
    from pycontainerd.core import nri

    return nri


@attrs.define(eq=False, kw_only=True)
class CRINRI:
    #: the CRI service (sandbox and container managers, client)
    c: Any
    #: the NRI adaptation (``io.containerd.nri.v1.nri``); None: NRI is not in use
    api: Any = None
    _tasks: set[asyncio.Task[Any]] = attrs.Factory(set)

    @property
    def enabled(self) -> bool:
        return self.api is not None

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the adaptation (pre-installed plugins, the socket) once the CRI stores are
        recovered. A failure leaves the CRI running without NRI."""
        if self.api is None:
            return
        try:
            await self.api.start(sync=self._sync, update=self._update, evict=self._evict)
        except Exception as e:  # noqa: BLE001 - the CRI works without NRI
            log.error("cri: failed to start NRI, running without it: %s", e)
            api, self.api = self.api, None
            try:
                await api.close()
            except Exception as ce:  # noqa: BLE001
                log.warning("cri: failed to close NRI after a failed start: %s", ce)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # --- conversions -----------------------------------------------------------------

    def _sandbox(self, sandbox: Any) -> Any:
        """The store's sandbox for a sandbox or a view of one (by id)."""
        store = getattr(getattr(self.c, "sandboxes", None), "store", None)
        if store is not None and not hasattr(sandbox, "metadata"):
            found = store.get_or_none(sandbox.id)
            if found is not None:
                return found
        return sandbox

    def pod(self, sandbox: Any) -> Any:
        """An NRI PodSandbox for a CRI sandbox (store entry or the container code's view)."""
        sb = self._sandbox(sandbox)
        md = getattr(sb, "metadata", None)
        config = md.config if md is not None else sb.config
        meta = config.metadata
        ips: list[str] = []
        netns = ""
        if md is not None:
            ips = [ip for ip in [md.ip, *md.additional_ips] if ip]
            netns = md.netns_path
            handler = md.runtime_handler
        else:
            netns = getattr(sb, "netns_path", "")
            handler = getattr(sb, "runtime_handler", "")
        status = getattr(sb, "status", None)
        pid = int(getattr(status, "pid", 0) or getattr(sb, "pid", 0) or 0)
        # the pod's resources: as the last UpdatePodSandboxResources set them, else its config
        lin = config.linux if config.HasField("linux") else None
        overhead = getattr(status, "overhead", None) or (
            lin.overhead if lin is not None and lin.HasField("overhead") else None
        )
        resources = getattr(status, "resources", None) or (
            lin.resources if lin is not None and lin.HasField("resources") else None
        )
        return _api().PodSandbox(
            id=sb.id,
            name=meta.name,
            uid=meta.uid,
            namespace=meta.namespace,
            labels=dict(config.labels),
            annotations=dict(config.annotations),
            runtime_handler=handler,
            pid=pid,
            ips=ips,
            cgroup_parent=config.linux.cgroup_parent,
            namespaces=(("network", netns),) if netns else (),
            pod_overhead=resources_to_nri(overhead) if overhead is not None else None,
            pod_resources=resources_to_nri(resources) if resources is not None else None,
        )

    def container(self, container: Any, spec: dict[str, Any] | None = None) -> Any:
        """An NRI Container for a CRI container (from its OCI spec and status)."""
        md, st = container.metadata, container.status
        if spec is None:
            spec = getattr(container, "spec_json", None) or {}
        return _api().Container.from_oci_spec(
            spec,
            id=container.id,
            pod_sandbox_id=md.sandbox_id,
            name=md.config.metadata.name,
            state=_CRI_TO_NRI_STATE.get(container.state(), "unknown"),
            labels=dict(md.config.labels),
            pid=int(st.pid or 0),
            created_at=int(st.created_at or 0),
            started_at=int(st.started_at or 0),
            finished_at=int(st.finished_at or 0),
            exit_code=int(st.exit_code or 0),
            status_reason=st.reason or "",
            status_message=st.message or "",
            image_name=md.image_name,
            seccomp_profile=seccomp_profile(md.config),
            cdi_devices=[d.name for d in md.config.CDI_devices],
        )

    async def _pod_of(self, container: Any, sandbox: Any = None) -> Any:
        if sandbox is not None:
            return self.pod(sandbox)
        store = self.c.sandboxes.store
        sb = store.get_or_none(container.sandbox_id)
        if sb is None:
            # the pod is gone already: what the container knows of it
            return _api().PodSandbox(id=container.sandbox_id)
        return self.pod(sb)

    # --- the adaptation's callbacks --------------------------------------------------

    async def _sync(self) -> tuple[list[Any], list[Any]]:
        pods = [self.pod(sb) for sb in self.c.sandboxes.store.list()]
        ctrs = []
        cm = self.c.container_manager
        for container in cm.store.list() if cm is not None else []:
            try:
                spec = await cm._load_spec(container)
            except errdefs.ContainerdError as e:
                log.warning("nri: no spec for container %s: %s", container.id, e)
                spec = None
            ctrs.append(self.container(container, spec or {}))
        return pods, ctrs

    async def _update(self, updates: list[Any]) -> list[Any]:
        """Apply the Linux resources of each update (record spec, running task)."""
        failed = []
        for u in updates:
            try:
                await self._apply_update(u)
            except Exception as e:  # noqa: BLE001 - reported back as failed
                log.warning("nri: failed to update container %s: %s", u.container_id, e)
                if not u.ignore_failure:
                    failed.append(u)
        return failed

    async def _apply_update(self, update: Any) -> None:
        from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2
        from pycontainerd.core.nri.types import apply_resources
        from pycontainerd.core.runtime.spec import LINUX_RESOURCES_TYPE_URL, from_any, to_any
        from pycontainerd.plugins.cri.container import spec as specs
        from pycontainerd.plugins.cri.container.store import CREATED, RUNNING

        cm = self.c.container_manager
        container = cm.store.get(update.container_id)
        state = container.state()
        if state not in (CREATED, RUNNING):
            raise errdefs.FailedPrecondition(f"container {container.id!r} is in {state} state")
        client = self.c.client
        with client.scope():
            containers = client.require("containers")
            record = await containers.get(container.id)
            spec = from_any(record.spec)
            res = spec.setdefault("linux", {}).setdefault("resources", {})
            apply_resources(res, update.linux.resources)
            if not specs.swap_controller_available():
                (res.get("memory") or {}).pop("swap", None)
            await containers.update(attrs.evolve(record, spec=to_any(spec)), ["spec"])
            if state == RUNNING:
                await client.require("tasks").update(
                    tasks_pb2.UpdateTaskRequest(
                        container_id=container.id,
                        resources=any_pb2.Any(
                            type_url=LINUX_RESOURCES_TYPE_URL, value=json.dumps(res).encode()
                        ),
                    )
                )
        container.spec_json = spec
        await asyncio.to_thread(container.update, resources=specs.resources_to_cri(spec))

    async def _evict(self, evictions: list[Any]) -> list[Any]:
        """Stop the containers plugins evict. In the background: the adaptation holds its
        lock while it calls us, and stopping notifies NRI."""
        cm = self.c.container_manager
        for ev in evictions:
            log.info("nri: evicting container %s: %s", ev.container_id, ev.reason)

            async def stop(cid: str = ev.container_id) -> None:
                try:
                    await cm.stop(cid, 0)
                except errdefs.ContainerdError as e:
                    log.warning("nri: failed to evict container %s: %s", cid, e)

            task = asyncio.get_running_loop().create_task(
                stop(), name=f"nri evict {ev.container_id}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return []

    # --- pod sandbox call points -----------------------------------------------------

    async def cri_run_pod_sandbox(self, sandbox: Any) -> None:
        if self.api is not None:
            await self.api.run_pod_sandbox(self.pod(sandbox))

    async def cri_stop_pod_sandbox(self, sandbox: Any) -> None:
        if self.api is None:
            return
        try:
            await self.api.stop_pod_sandbox(self.pod(sandbox))
        except Exception as e:  # noqa: BLE001 - a notification
            log.error("nri: StopPodSandbox notification for %s failed: %s", sandbox.id, e)

    async def cri_remove_pod_sandbox(self, sandbox: Any) -> None:
        if self.api is None:
            return
        try:
            await self.api.remove_pod_sandbox(self.pod(sandbox))
        except Exception as e:  # noqa: BLE001 - a notification
            log.error("nri: RemovePodSandbox notification for %s failed: %s", sandbox.id, e)

    async def cri_update_pod_sandbox_resources(
        self, *, sandbox: Any, overhead: Any = None, resources: Any = None
    ) -> None:
        """Before UpdatePodSandboxResources takes effect; a plugin's error fails it."""
        if self.api is None:
            return
        await self.api.update_pod_sandbox(
            self.pod(sandbox),
            resources_to_nri(overhead) if overhead is not None else None,
            resources_to_nri(resources) if resources is not None else None,
        )

    async def cri_post_update_pod_sandbox_resources(self, *, sandbox: Any) -> None:
        if self.api is not None:
            await self.api.post_update_pod_sandbox(self.pod(sandbox))

    # --- container call points -------------------------------------------------------

    async def cri_create_container(
        self, *, sandbox: Any, metadata: Any, spec: dict[str, Any]
    ) -> dict[str, Any]:
        """The spec with the plugins' merged adjustment applied (the spec itself without
        NRI). A conflict between two plugins or a plugin's error fails the create."""
        if self.api is None:
            return spec
        from pycontainerd.core.nri import Container
        from pycontainerd.plugins.cri.container import spec as specs

        ctr = Container.from_oci_spec(
            spec,
            id=metadata.id,
            pod_sandbox_id=sandbox.id,
            name=metadata.config.metadata.name,
            state="created",
            labels=dict(metadata.config.labels),
            image_name=metadata.image_name,
            seccomp_profile=seccomp_profile(metadata.config),
            cdi_devices=[d.name for d in metadata.config.CDI_devices],
        )
        try:
            result = await self.api.create_container(self.pod(sandbox), ctr)
            if result.adjustment.CDI_devices:  # resolving them reads spec files
                from pycontainerd.plugins.cri.container import cdi

                cfg = self.c.config
                inject = cdi.injector(enabled=cfg.enable_cdi, spec_dirs=cfg.cdi_spec_dirs)
                await asyncio.to_thread(
                    self.api.apply_adjustment, spec, result.adjustment, cdi_injector=inject
                )
            else:
                self.api.apply_adjustment(spec, result.adjustment)
        except errdefs.ContainerdError as e:
            raise errdefs.from_code(
                e.code, f"nri: failed to adjust container {metadata.name!r}: {e}"
            ) from e
        mem = ((spec.get("linux") or {}).get("resources") or {}).get("memory")
        if mem and "swap" in mem and not specs.swap_controller_available():
            mem.pop("swap")
        return spec

    async def _notify(self, what: str, container: Any, sandbox: Any = None) -> None:
        if self.api is None:
            return
        pod = await self._pod_of(container, sandbox)
        await getattr(self.api, what)(pod, self.container(container))

    async def cri_post_create_container(self, *, container: Any, sandbox: Any = None) -> None:
        await self._notify("post_create_container", container, sandbox)

    async def cri_start_container(self, *, container: Any, sandbox: Any = None) -> None:
        """Before the task starts; a plugin's error fails the start."""
        await self._notify("start_container", container, sandbox)

    async def cri_post_start_container(self, *, container: Any, sandbox: Any = None) -> None:
        await self._notify("post_start_container", container, sandbox)

    async def cri_stop_container(self, *, container: Any, sandbox: Any = None) -> None:
        """On stop, on exit and on a failed start (plugins hear it once)."""
        try:
            await self._notify("stop_container", container, sandbox)
        except Exception as e:  # noqa: BLE001 - a notification
            log.error("nri: StopContainer notification for %s failed: %s", container.id, e)

    async def cri_remove_container(self, *, container: Any, sandbox: Any = None) -> None:
        try:
            await self._notify("remove_container", container, sandbox)
        except Exception as e:  # noqa: BLE001 - a notification
            log.error("nri: RemoveContainer notification for %s failed: %s", container.id, e)

    async def cri_update_container(self, *, container: Any, resources: Any) -> Any:
        """The CRI ``LinuxContainerResources`` to apply, after plugins had their say."""
        if self.api is None or resources is None:
            return resources
        pod = await self._pod_of(container)
        try:
            adjusted = await self.api.update_container(
                pod, self.container(container), resources_to_nri(resources)
            )
        except errdefs.ContainerdError as e:
            raise errdefs.from_code(
                e.code, f"nri: failed to update container {container.id!r}: {e}"
            ) from e
        if adjusted is None:
            return resources
        return resources_to_cri(adjusted, resources)

    async def cri_post_update_container(self, *, container: Any, sandbox: Any = None) -> None:
        await self._notify("post_update_container", container, sandbox)


def seccomp_profile(config: Any) -> tuple[int, str] | None:
    """The seccomp profile a CRI ContainerConfig asks for, as NRI's (type, localhost ref); the
    CRI and NRI ProfileType enums number their values alike."""
    sc = config.linux.security_context
    if not config.HasField("linux") or not sc.HasField("seccomp"):
        return None
    return int(sc.seccomp.profile_type), sc.seccomp.localhost_ref


# --- resources: CRI LinuxContainerResources <-> NRI LinuxResources ---------------------


def resources_to_nri(r: Any) -> Any:
    """NRI LinuxResources from a CRI ``LinuxContainerResources``."""
    pb = _api().pb
    out = pb.LinuxResources()
    if r.memory_limit_in_bytes:
        out.memory.limit.value = r.memory_limit_in_bytes
    if r.memory_swap_limit_in_bytes:
        out.memory.swap.value = r.memory_swap_limit_in_bytes
    if r.cpu_shares:
        out.cpu.shares.value = r.cpu_shares
    if r.cpu_quota:
        out.cpu.quota.value = r.cpu_quota
    if r.cpu_period:
        out.cpu.period.value = r.cpu_period
    if r.cpuset_cpus:
        out.cpu.cpus = r.cpuset_cpus
    if r.cpuset_mems:
        out.cpu.mems = r.cpuset_mems
    for h in r.hugepage_limits:
        out.hugepage_limits.add(page_size=h.page_size, limit=h.limit)
    out.unified.update(dict(r.unified))
    return out


def resources_to_cri(r: Any, base: Any) -> Any:
    """``base`` (CRI ``LinuxContainerResources``) with what NRI resources ``r`` set."""
    out = type(base)()
    out.CopyFrom(base)
    if r.HasField("memory"):
        if r.memory.HasField("limit"):
            out.memory_limit_in_bytes = r.memory.limit.value
        if r.memory.HasField("swap"):
            out.memory_swap_limit_in_bytes = r.memory.swap.value
    if r.HasField("cpu"):
        if r.cpu.HasField("shares"):
            out.cpu_shares = r.cpu.shares.value
        if r.cpu.HasField("quota"):
            out.cpu_quota = r.cpu.quota.value
        if r.cpu.HasField("period"):
            out.cpu_period = r.cpu.period.value
        if r.cpu.cpus:
            out.cpuset_cpus = r.cpu.cpus
        if r.cpu.mems:
            out.cpuset_mems = r.cpu.mems
    if r.hugepage_limits:
        del out.hugepage_limits[:]
        for h in r.hugepage_limits:
            out.hugepage_limits.add(page_size=h.page_size, limit=h.limit)
    if r.unified:
        out.unified.clear()
        out.unified.update(dict(r.unified))
    return out
