"""The local images service: the metadata image store (which publishes ``/images/*``) plus
synchronous garbage collection after a ``sync`` delete, as containerd's images service."""

from __future__ import annotations

import builtins
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import attrs

from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.metadata.images import Image, ImageStore

log = logging.getLogger(__name__)


class Scheduler(Protocol):
    async def schedule_and_wait(self) -> Any: ...


@attrs.define(eq=False)
class Local:
    _store: ImageStore
    _gc: Scheduler
    _warnings: Any = None

    async def get(self, name: str) -> Image:
        return await self._store.get(name)

    async def list(self, filters: Sequence[str] = ()) -> builtins.list[Image]:
        return await self._store.list(filters)

    async def create(self, image: Image) -> Image:
        log.debug("create image name=%s target=%s", image.name, image.target.digest)
        return await self._store.create(image)

    async def update(self, image: Image, fieldpaths: Sequence[str] = ()) -> Image:
        return await self._store.update(image, fieldpaths)

    async def delete(
        self, name: str, *, target: Descriptor | None = None, sync: bool = False
    ) -> None:
        """Delete image ``name`` (only if it still points at ``target``, when given); with
        ``sync``, return after a garbage collection has removed what it held."""
        log.debug("delete image name=%s sync=%s", name, sync)
        await self._store.delete(name, target=target.digest if target is not None else "")
        if sync:
            await self._gc.schedule_and_wait()
