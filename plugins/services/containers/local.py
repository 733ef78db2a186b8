"""The local containers service over the metadata container store (which validates, commits
and publishes ``/containers/*``)."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Sequence

import attrs

from pycontainerd.core.metadata.containers import Container, ContainerStore


@attrs.define(eq=False)
class Local:
    _store: ContainerStore

    async def get(self, id: str) -> Container:  # noqa: A002
        return await self._store.get(id)

    async def list(self, filters: Sequence[str] = ()) -> builtins.list[Container]:
        return await self._store.list(filters)

    async def list_stream(self, filters: Sequence[str] = ()) -> AsyncIterator[Container]:
        """The containers matching ``filters``, read in one consistent view, one at a time."""
        for c in await self._store.list(filters):
            yield c

    async def create(self, container: Container) -> Container:
        return await self._store.create(container)

    async def update(self, container: Container, fieldpaths: Sequence[str] = ()) -> Container:
        return await self._store.update(container, fieldpaths)

    async def delete(self, id: str) -> None:  # noqa: A002
        await self._store.delete(id)
