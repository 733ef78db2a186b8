"""The lease manager the lease plugin serves: metadata leases plus synchronous GC on delete."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import attrs

from pycontainerd.core.leases import Lease, Resource
from pycontainerd.core.metadata.leases import LeaseManager


class _Scheduler(Protocol):
    async def schedule_and_wait(self) -> Any: ...


@attrs.define(eq=False)
class Manager:
    """Implements :class:`pycontainerd.core.leases.Manager`."""

    _leases: LeaseManager
    _gc: _Scheduler | None = None

    async def create(self, id: str, labels: Mapping[str, str] | None = None) -> Lease:  # noqa: A002
        return await self._leases.create(id, labels)

    async def delete(self, id: str, *, sync: bool = False) -> None:  # noqa: A002
        await self._leases.delete(id)
        if sync and self._gc is not None:
            await self._gc.schedule_and_wait()

    async def list(self, filters: list[str] | None = None) -> list[Lease]:
        return await self._leases.list(filters)

    async def add_resource(self, lease_id: str, resource: Resource) -> None:
        await self._leases.add_resource(lease_id, resource)

    async def delete_resource(self, lease_id: str, resource: Resource) -> None:
        await self._leases.delete_resource(lease_id, resource)

    async def list_resources(self, lease_id: str) -> list[Resource]:
        return await self._leases.list_resources(lease_id)
