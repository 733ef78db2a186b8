"""Introspection: the local service (``io.containerd.service.v1.introspection-service``)
and its gRPC front-end (``io.containerd.grpc.v1.introspection``), as containerd splits them."""

from __future__ import annotations

from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.SERVICE,
            id="introspection-service",
            requires=(types.WARNING,),
            init=_init_local,
        ),
        Registration(
            type=types.GRPC,
            id="introspection",
            requires=(types.SERVICE,),
            init=_init_grpc,
        ),
    ]


async def _init_local(ic: InitContext) -> Any:
    from pycontainerd.core.introspection import Local

    # The UUID lives under the gRPC plugin's root, where containerd keeps it.
    root = ic.properties[types.PROPERTY_ROOT_DIR].replace(
        f"{types.SERVICE}.introspection-service", f"{types.GRPC}.introspection"
    )
    return Local(plugins=ic.plugins, root=root, warnings=ic.get_single(types.WARNING))


async def _init_grpc(ic: InitContext) -> Any:
    from pycontainerd.plugins.services.introspection.service import IntrospectionService

    return IntrospectionService(ic.get_by_id(types.SERVICE, "introspection-service"))
