"""The remaining RuntimeService handlers around pods (listed in
``pycontainerd.plugins.cri.server.RUNTIME_HANDLER_MODULES``):

* ``StreamPodSandboxes``: the ``ListPodSandbox`` answer (same filter), as one stream message;
* ``ListMetricDescriptors``: the cAdvisor-named descriptors of
  :mod:`pycontainerd.plugins.cri.sandbox.metrics` (containerd 2.x's label keys);
* ``ListPodSandboxMetrics`` / ``StreamPodSandboxMetrics``: per READY pod, the pod's series
  (its network namespace, its cgroup when it has a parent) and those of its running
  containers (their cgroups, processes, writable layers), read by that module in one
  worker thread;
* ``UpdatePodSandboxResources``: as containerd does, the sandbox is looked up, NRI is told
  (``cri_update_pod_sandbox_resources`` then ``cri_post_update_pod_sandbox_resources`` when
  ``c.nri`` has them) and the resources are remembered on the sandbox; no cgroup is written
  (kubelet resizes the pod cgroup itself);
* ``CheckpointContainer``: containerd's CRIU check first (error shaped as containerd's), then
  the container lookup; checkpointing itself is not implemented (UNIMPLEMENTED).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
from collections.abc import AsyncIterator
from typing import Any

from pycontainerd.core import errdefs
from pycontainerd.plugins.cri.sandbox.handlers import _manager, _pb

log = logging.getLogger(__name__)

# --- StreamPodSandboxes ------------------------------------------------------------------


async def stream_pod_sandboxes(c: Any, request: Any, context: Any) -> AsyncIterator[Any]:
    flt = request.filter if request.HasField("filter") else None
    yield _pb().StreamPodSandboxesResponse(pod_sandboxes=(await _manager(c)).list(flt))


# --- ListMetricDescriptors / ListPodSandboxMetrics / StreamPodSandboxMetrics -------------


async def list_metric_descriptors(c: Any, request: Any, context: Any) -> Any:
    from pycontainerd.plugins.cri.sandbox import metrics

    return _pb().ListMetricDescriptorsResponse(descriptors=metrics.descriptors())


async def _metric_targets(c: Any) -> list[Any]:
    """What to read for each READY pod and its running containers."""
    from pycontainerd.plugins.cri.sandbox import metrics, stats

    sandboxes = await _manager(c)
    containers = getattr(c, "container_manager", None)
    images = getattr(c, "images", None)
    if images is not None and containers is not None:
        with contextlib.suppress(Exception):  # usage may then be a second old: still fine
            await images.snapshot_store.sync(max_age=1.0)
    targets = []
    for sb in list(sandboxes.store):
        if str(getattr(sb.state, "value", sb.state)) != "SANDBOX_READY":
            continue
        ctrs = []
        for ctr in containers.store.by_sandbox(sb.id) if containers is not None else []:
            if ctr.state() != "CONTAINER_RUNNING" or ctr.status.pid <= 0:
                continue
            fs_path, fs_used = "", None
            if images is not None:
                fs_path = images.image_fs_paths.get(ctr.snapshotter, "")
                with contextlib.suppress(errdefs.ContainerdError):
                    fs_used = images.get_snapshot(ctr.id, ctr.snapshotter).size
            image = ctr.config.image
            ctrs.append(
                metrics.ContainerTarget(
                    id=ctr.id,
                    name=ctr.config.metadata.name,
                    image=image.user_specified_image or image.image,
                    pid=ctr.status.pid,
                    started_at=ctr.status.started_at,
                    fs_path=fs_path,
                    fs_used=fs_used,
                )
            )
        config = sb.config
        parent = config.linux.cgroup_parent
        targets.append(
            metrics.PodTarget(
                id=sb.id,
                name=config.metadata.name,
                namespace=config.metadata.namespace,
                cgroup=stats.cgroup_relpath(parent) if parent else "",
                netns_pid=int(sb.status.pid or 0) if sb.netns_path else 0,
                containers=tuple(ctrs),
            )
        )
    return targets


async def _pod_metrics(c: Any) -> list[Any]:
    from pycontainerd.plugins.cri.sandbox import metrics

    return await asyncio.to_thread(metrics.collect, await _metric_targets(c))


async def list_pod_sandbox_metrics(c: Any, request: Any, context: Any) -> Any:
    return _pb().ListPodSandboxMetricsResponse(pod_metrics=await _pod_metrics(c))


async def stream_pod_sandbox_metrics(c: Any, request: Any, context: Any) -> AsyncIterator[Any]:
    yield _pb().StreamPodSandboxMetricsResponse(pod_sandbox_metrics=await _pod_metrics(c))


# --- UpdatePodSandboxResources -----------------------------------------------------------


def updated_resources(sandbox: Any) -> tuple[Any, Any] | None:
    """(overhead, resources) the last UpdatePodSandboxResources gave ``sandbox``, if any."""
    st = sandbox.status
    if st.overhead is None and st.resources is None:
        return None
    return st.overhead, st.resources


async def update_pod_sandbox_resources(c: Any, request: Any, context: Any) -> Any:
    m = await _manager(c)
    try:
        sandbox = m.store.get(request.pod_sandbox_id)
    except errdefs.ContainerdError as e:
        raise type(e)(f"failed to find sandbox: {e}") from None
    overhead = request.overhead if request.HasField("overhead") else None
    resources = request.resources if request.HasField("resources") else None
    nri = getattr(c, "nri", None)
    update = getattr(nri, "cri_update_pod_sandbox_resources", None)
    if update is not None:
        try:
            await update(sandbox=sandbox, overhead=overhead, resources=resources)
        except errdefs.ContainerdError as e:
            raise type(e)(f"NRI sandbox update failed: {e}") from None
    # kept in the sandbox's status and record, as containerd does (NRI sees them as the pod's
    # resources); nothing is applied to cgroups
    sandbox.status.overhead, sandbox.status.resources = overhead, resources
    try:
        await m.record_resources(sandbox)
    except errdefs.ContainerdError as e:
        raise type(e)(f"failed to update sandbox {sandbox.id} in core store: {e}") from None
    post = getattr(nri, "cri_post_update_pod_sandbox_resources", None)
    if post is not None:
        try:
            await post(sandbox=sandbox)
        except Exception as e:  # noqa: BLE001 - a notification; containerd only logs it
            log.error("NRI post-update notification failed: %s", e)
    return _pb().UpdatePodSandboxResourcesResponse()


# --- CheckpointContainer -----------------------------------------------------------------

#: The CRIU version containerd requires for pod checkpointing (go-criu's PodCriuVersion).
POD_CRIU_VERSION = 31600
CRIU_BINARY = "criu"


def criu_version(binary: str | None = None) -> int:
    """CRIU's version as major*10000 + minor*100 + sublevel; raises OSError/ValueError when
    it cannot be found or asked."""
    path = shutil.which(binary or CRIU_BINARY) or shutil.which(
        binary or CRIU_BINARY, path="/usr/local/sbin:/usr/sbin:/sbin"
    )
    if path is None:
        raise FileNotFoundError(f'exec: "{binary or CRIU_BINARY}": executable file not found')
    out = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    for line in out.splitlines():
        if line.startswith("Version:"):
            parts = [int(p) for p in line.split(":", 1)[1].strip().split(".")[:3]]
            parts += [0] * (3 - len(parts))
            return parts[0] * 10000 + parts[1] * 100 + parts[2]
    raise ValueError(f"unexpected output of {path} --version: {out!r}")


def _check_criu() -> str | None:
    """None when a recent enough CRIU is there, else why not (go-criu's wording)."""
    try:
        version = criu_version()
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        return f"failed to check for criu version: {e}"
    if version < POD_CRIU_VERSION:
        return (
            f"checkpoint/restore requires at least CRIU {POD_CRIU_VERSION}, "
            f"current version is {version}"
        )
    return None


async def checkpoint_container(c: Any, request: Any, context: Any) -> Any:
    from pycontainerd.plugins.cri.container.handlers import manager

    cid = request.container_id
    problem = await asyncio.to_thread(_check_criu)
    if problem is not None:
        # containerd wraps a plain error here: UNKNOWN on the wire
        raise errdefs.Unknown(
            f"CRIU binary not found or too old (<{POD_CRIU_VERSION}). Failed to checkpoint "
            f'container "{cid}": {problem}'
        )
    m = await manager(c)
    try:
        m.get(cid)
    except errdefs.ContainerdError as e:
        raise type(e)(
            f'an error occurred when trying to find container the container status "{cid}": {e}'
        ) from None
    raise errdefs.NotImplemented_(
        f'cri: checkpointing container "{cid}" is not implemented by pycontainerd (CRIU is '
        "available, but the task Checkpoint and the checkpoint archive are not built)"
    )
