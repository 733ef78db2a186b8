"""RuntimeService handlers for pod sandboxes (listed in
``pycontainerd.plugins.cri.server.RUNTIME_HANDLER_MODULES``): each delegates to
``c.sandboxes`` (:class:`~pycontainerd.plugins.cri.sandbox.service.SandboxManager`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pycontainerd.core import errdefs


def _pb() -> Any:
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2

    return api_pb2


async def _manager(c: Any) -> Any:
    if getattr(c, "sandboxes", None) is None:
        raise errdefs.FailedPrecondition("cri: pod sandboxes are not available")
    await c.sandboxes.wait_started()
    return c.sandboxes


async def run_pod_sandbox(c: Any, request: Any, context: Any) -> Any:
    id_ = await (await _manager(c)).run(request.config, request.runtime_handler)
    return _pb().RunPodSandboxResponse(pod_sandbox_id=id_)


async def stop_pod_sandbox(c: Any, request: Any, context: Any) -> Any:
    if not request.pod_sandbox_id:
        raise errdefs.InvalidArgument("pod sandbox id must not be empty")
    await (await _manager(c)).stop(request.pod_sandbox_id)
    return _pb().StopPodSandboxResponse()


async def remove_pod_sandbox(c: Any, request: Any, context: Any) -> Any:
    if not request.pod_sandbox_id:
        raise errdefs.InvalidArgument("pod sandbox id must not be empty")
    await (await _manager(c)).remove(request.pod_sandbox_id)
    return _pb().RemovePodSandboxResponse()


async def pod_sandbox_status(c: Any, request: Any, context: Any) -> Any:
    try:
        status, info = await (await _manager(c)).status(request.pod_sandbox_id, request.verbose)
    except errdefs.NotFound as e:
        raise errdefs.NotFound(f"an error occurred when try to find sandbox: {e}") from None
    return _pb().PodSandboxStatusResponse(status=status, info=info)


async def list_pod_sandbox(c: Any, request: Any, context: Any) -> Any:
    flt = request.filter if request.HasField("filter") else None
    return _pb().ListPodSandboxResponse(items=(await _manager(c)).list(flt))


async def get_container_events(c: Any, request: Any, context: Any) -> AsyncIterator[Any]:
    async for event in (await _manager(c)).events.subscribe():
        yield event


async def pod_sandbox_stats(c: Any, request: Any, context: Any) -> Any:
    from pycontainerd.plugins.cri.sandbox import stats

    sandbox = (await _manager(c)).store.get(request.pod_sandbox_id)
    return _pb().PodSandboxStatsResponse(stats=await stats.pod_sandbox_stats(c, sandbox))


async def list_pod_sandbox_stats(c: Any, request: Any, context: Any) -> Any:
    from pycontainerd.plugins.cri.sandbox import stats

    await _manager(c)
    flt = request.filter if request.HasField("filter") else None
    return _pb().ListPodSandboxStatsResponse(stats=await stats.list_stats(c, flt))


async def stream_pod_sandbox_stats(c: Any, request: Any, context: Any) -> AsyncIterator[Any]:
    from pycontainerd.plugins.cri.sandbox import stats

    await _manager(c)
    flt = request.filter if request.HasField("filter") else None
    yield _pb().StreamPodSandboxStatsResponse(pod_sandbox_stats=await stats.list_stats(c, flt))
