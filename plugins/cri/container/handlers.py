"""RuntimeService handlers for containers (containerd's ``internal/cri/server/container_*.go``,
``container_execsync.go``, ``container_exec.go``, ``container_attach.go``,
``sandbox_portforward*.go``, ``container_stats*.go``, ``events.go``). Each delegates to the
:class:`~pycontainerd.plugins.cri.container.service.ContainerManager` of the CRI service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from pycontainerd.core import errdefs
from pycontainerd.plugins.cri.container.service import ContainerManager

log = logging.getLogger(__name__)


def _pb() -> Any:
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2

    return api_pb2


def _get(c: Any) -> ContainerManager:
    m = getattr(c, "container_manager", None)
    if m is None:
        raise errdefs.FailedPrecondition("cri: containers are not available")
    return m  # type: ignore[no-any-return]


async def manager(c: Any) -> ContainerManager:
    """The container manager once start-up recovery (pods, then containers) is done."""
    sandboxes_ = getattr(c, "sandboxes", None)
    if sandboxes_ is not None:
        await sandboxes_.wait_started()
    m = _get(c)
    await m.wait_started()
    return m


def _stream_server(c: Any) -> Any:
    s = getattr(c, "stream_server", None)
    if s is None:
        raise errdefs.FailedPrecondition("cri: the streaming server is not running")
    return s


async def create_container(c: Any, request: Any, context: Any) -> Any:
    if not request.pod_sandbox_id:
        raise errdefs.InvalidArgument("pod sandbox id must not be empty")
    id_ = await (await manager(c)).create(request)
    return _pb().CreateContainerResponse(container_id=id_)


async def start_container(c: Any, request: Any, context: Any) -> Any:
    await (await manager(c)).start(request.container_id)
    return _pb().StartContainerResponse()


async def stop_container(c: Any, request: Any, context: Any) -> Any:
    await (await manager(c)).stop(request.container_id, float(request.timeout))
    return _pb().StopContainerResponse()


async def remove_container(c: Any, request: Any, context: Any) -> Any:
    await (await manager(c)).remove(request.container_id)
    return _pb().RemoveContainerResponse()


async def container_status(c: Any, request: Any, context: Any) -> Any:
    return await (await manager(c)).status(request.container_id, request.verbose)


async def list_containers(c: Any, request: Any, context: Any) -> Any:
    m = await manager(c)
    flt = request.filter if request.HasField("filter") else None
    return _pb().ListContainersResponse.FromString(m.listed(m.list(flt)))


async def stream_containers(c: Any, request: Any, context: Any) -> AsyncIterator[Any]:
    m = await manager(c)
    flt = request.filter if request.HasField("filter") else None
    yield _pb().StreamContainersResponse.FromString(m.listed(m.list(flt)))


async def update_container_resources(c: Any, request: Any, context: Any) -> Any:
    if not request.HasField("linux"):
        return _pb().UpdateContainerResourcesResponse()
    await (await manager(c)).update_resources(
        request.container_id, request.linux, dict(request.annotations)
    )
    return _pb().UpdateContainerResourcesResponse()


async def reopen_container_log(c: Any, request: Any, context: Any) -> Any:
    await (await manager(c)).reopen_log(request.container_id)
    return _pb().ReopenContainerLogResponse()


async def exec_sync(c: Any, request: Any, context: Any) -> Any:
    return await (await manager(c)).exec_sync(
        request.container_id, list(request.cmd), float(request.timeout)
    )


async def exec(c: Any, request: Any, context: Any) -> Any:  # noqa: A001 - the RPC's name
    m = await manager(c)
    container = m.get(request.container_id)
    if container.state() != "CONTAINER_RUNNING":
        raise errdefs.FailedPrecondition(
            f"container {container.id!r} is in {container.state()} state"
        )
    from pycontainerd.core.streaming.types import ExecRequest

    req = ExecRequest.from_request(request)
    req = ExecRequest(
        container_id=container.id,
        cmd=req.cmd,
        tty=req.tty,
        stdin=req.stdin,
        stdout=req.stdout,
        stderr=req.stderr,
    )
    return _pb().ExecResponse(url=_stream_server(c).get_exec(req))


async def attach(c: Any, request: Any, context: Any) -> Any:
    m = await manager(c)
    container = m.get(request.container_id)
    if container.state() != "CONTAINER_RUNNING":
        raise errdefs.FailedPrecondition(
            f"container {container.id!r} is in {container.state()} state"
        )
    from pycontainerd.core.streaming.types import AttachRequest

    req = AttachRequest.from_request(request)
    req = AttachRequest(
        container_id=container.id,
        tty=req.tty,
        stdin=req.stdin,
        stdout=req.stdout,
        stderr=req.stderr,
    )
    return _pb().AttachResponse(url=_stream_server(c).get_attach(req))


async def port_forward(c: Any, request: Any, context: Any) -> Any:
    from pycontainerd.core.streaming.types import PortForwardRequest
    from pycontainerd.plugins.cri.container import sandboxes

    sb = sandboxes.get(c, request.pod_sandbox_id)
    if not sb.ready:
        raise errdefs.FailedPrecondition(f"sandbox {sb.id!r} is not running")
    req = PortForwardRequest(pod_sandbox_id=sb.id, ports=tuple(request.port))
    return _pb().PortForwardResponse(url=_stream_server(c).get_port_forward(req))


async def container_stats(c: Any, request: Any, context: Any) -> Any:
    m = await manager(c)
    container = m.get(request.container_id)
    stats = await m.stats([container])
    return _pb().ContainerStatsResponse(stats=stats[0])


def _stats_filter(m: ContainerManager, flt: Any) -> list[Any]:
    pb = _pb()
    if flt is None:
        return m.list()
    lf = pb.ContainerFilter(
        id=flt.id, pod_sandbox_id=flt.pod_sandbox_id, label_selector=dict(flt.label_selector)
    )
    return m.list(lf)


async def list_container_stats(c: Any, request: Any, context: Any) -> Any:
    m = await manager(c)
    flt = request.filter if request.HasField("filter") else None
    return _pb().ListContainerStatsResponse(stats=await m.stats(_stats_filter(m, flt)))


async def stream_container_stats(c: Any, request: Any, context: Any) -> AsyncIterator[Any]:
    m = await manager(c)
    flt = request.filter if request.HasField("filter") else None
    yield _pb().StreamContainerStatsResponse(container_stats=await m.stats(_stats_filter(m, flt)))
