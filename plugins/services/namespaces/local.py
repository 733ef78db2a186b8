"""The local namespaces service: what the gRPC front-end and in-process clients (CRI) call.

The metadata store commits the change and publishes the ``/namespaces/*`` event."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence

import attrs

from pycontainerd.core.metadata.namespaces import NamespaceStore


def _labels(value: Mapping[str, str] | None) -> dict[str, str]:
    return dict(value or {})


@attrs.frozen(kw_only=True)
class Namespace:
    name: str
    labels: dict[str, str] = attrs.field(factory=dict, converter=_labels)


@attrs.define(eq=False)
class Local:
    _store: NamespaceStore

    async def get(self, name: str) -> Namespace:
        return Namespace(name=name, labels=await self._store.get(name))

    async def list(self) -> builtins.list[Namespace]:
        return [await self.get(name) for name in await self._store.list()]

    async def create(self, namespace: Namespace) -> Namespace:
        await self._store.create(namespace.name, namespace.labels)
        return namespace

    async def update(self, namespace: Namespace, fieldpaths: Sequence[str] = ()) -> Namespace:
        """Replace all labels, or with ``fieldpaths`` only the ``labels.<key>`` given (an empty
        or missing value removes the key)."""
        labels = await self._store.update(namespace.name, namespace.labels, fieldpaths)
        return Namespace(name=namespace.name, labels=labels)

    async def delete(self, name: str) -> None:
        """Delete an empty namespace; FailedPrecondition naming what is left otherwise."""
        await self._store.delete(name)
