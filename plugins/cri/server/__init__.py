"""The CRI gRPC front-end: ``runtime.v1.RuntimeService`` and ``runtime.v1.ImageService``
servicers whose methods live in handler modules.

A handler is a module-level function named after the RPC in snake case, taking the
:class:`~pycontainerd.plugins.cri.service.CRIService`, the request and the gRPC context:

    async def run_pod_sandbox(c, request, context) -> api_pb2.RunPodSandboxResponse: ...

and, for a server-streaming RPC, an async generator yielding responses. To implement more
methods, add a module defining them and list it in :data:`RUNTIME_HANDLER_MODULES` (or
:data:`IMAGE_HANDLER_MODULES`); one function per RPC across the modules (a duplicate is an
error at start-up). A method without a handler answers UNIMPLEMENTED, naming itself.

Every handler runs in namespace ``k8s.io`` (CRI clients send no namespace header); errors are
raised as errdefs categories and mapped to codes by the server's interceptor.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from pycontainerd.core import errdefs, namespaces
from pycontainerd.plugins.cri import constants

log = logging.getLogger(__name__)

RUNTIME_SERVICE = "RuntimeService"
IMAGE_SERVICE = "ImageService"

#: Modules holding RuntimeService handlers (sandboxes, containers, streaming, stats, ... go
#: here as they are written).
RUNTIME_HANDLER_MODULES: list[str] = [
    "pycontainerd.plugins.cri.server.runtime_info",
    "pycontainerd.plugins.cri.sandbox.handlers",
    "pycontainerd.plugins.cri.container.handlers",
    "pycontainerd.plugins.cri.sandbox.extra",
]
#: Modules holding ImageService handlers.
IMAGE_HANDLER_MODULES: list[str] = [
    "pycontainerd.plugins.cri.server.images",
]


def snake_case(name: str) -> str:
    """``RunPodSandbox`` -> ``run_pod_sandbox``; ``ImageFsInfo`` -> ``image_fs_info``."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _methods(service: str) -> list[Any]:
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2

    return list(api_pb2.DESCRIPTOR.services_by_name[service].methods)


def find_handlers(service: str, modules: Sequence[str]) -> dict[str, Callable[..., Any]]:
    """RPC name -> handler function, from ``modules``."""
    names = {snake_case(m.name): m.name for m in _methods(service)}
    found: dict[str, Callable[..., Any]] = {}
    where: dict[str, str] = {}
    for module_name in modules:
        module = importlib.import_module(module_name)
        for attr, rpc in names.items():
            fn = getattr(module, attr, None)
            if fn is None or not callable(fn):
                continue
            if rpc in found:
                raise errdefs.AlreadyExists(
                    f"cri: {service}.{rpc} is handled in both {where[rpc]} and {module_name}"
                )
            found[rpc] = fn
            where[rpc] = module_name
    return found


def _unary(service: str, rpc: str, fn: Callable[..., Any] | None, c: Any) -> Callable[..., Any]:
    async def call(request: Any, context: Any) -> Any:
        if fn is None:
            raise errdefs.NotImplemented_(f"{service}.{rpc} is not implemented")
        with namespaces.use(constants.K8S_NAMESPACE):
            log.debug("cri %s", rpc)
            return await fn(c, request, context)

    call.__name__ = rpc
    return call


def _streaming(service: str, rpc: str, fn: Callable[..., Any] | None, c: Any) -> Callable[..., Any]:
    async def call(request: Any, context: Any) -> AsyncIterator[Any]:
        if fn is None:
            raise errdefs.NotImplemented_(f"{service}.{rpc} is not implemented")
        with namespaces.use(constants.K8S_NAMESPACE):
            log.debug("cri %s", rpc)
            async for item in fn(c, request, context):
                yield item

    call.__name__ = rpc
    return call


def build_servicer(service: str, modules: Sequence[str], c: Any) -> Any:
    """A servicer object for ``service`` with one method per RPC."""
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2_grpc

    base = getattr(api_pb2_grpc, f"{service}Servicer")
    handlers = find_handlers(service, modules)
    servicer = base()
    for m in _methods(service):
        fn = handlers.get(m.name)
        wrap = _streaming if m.server_streaming else _unary
        setattr(servicer, m.name, wrap(service, m.name, fn, c))
    servicer.implemented = sorted(handlers)
    return servicer


def register(server: Any, c: Any) -> None:
    """Add both CRI services to a grpc.aio server."""
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2_grpc

    api_pb2_grpc.add_RuntimeServiceServicer_to_server(
        build_servicer(RUNTIME_SERVICE, RUNTIME_HANDLER_MODULES, c), server
    )
    api_pb2_grpc.add_ImageServiceServicer_to_server(
        build_servicer(IMAGE_SERVICE, IMAGE_HANDLER_MODULES, c), server
    )
