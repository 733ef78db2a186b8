"""Sandbox records: ``io.containerd.sandbox.store.v1.local`` (the metadata sandbox store) and
its gRPC front-end ``io.containerd.grpc.v1.sandboxes`` (containerd.services.sandbox.v1.Store)."""

from __future__ import annotations

from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.SANDBOX_STORE, id="local", requires=(types.METADATA,), init=_init_store
        ),
        Registration(
            type=types.GRPC, id="sandboxes", requires=(types.SANDBOX_STORE,), init=_init_grpc
        ),
    ]


async def _init_store(ic: InitContext) -> Any:
    return ic.get_single(types.METADATA).sandboxes


async def _init_grpc(ic: InitContext) -> Any:
    from pycontainerd.plugins.services.sandboxes.service import SandboxStoreService

    return SandboxStoreService(ic.get_by_id(types.SANDBOX_STORE, "local"))
