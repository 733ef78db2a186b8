"""The CRI's in-process client (containerd's ``containerd.New(..., WithInMemoryServices(ic))``):
the daemon's local ``io.containerd.service.v1.*`` services and stores, every call pinned to
namespace ``k8s.io``. The CRI talks to containerd objects only through it, never through the
metadata database or the gRPC socket.

Services the daemon does not provide stay None; :meth:`Client.require` names the missing one.
Add what the sandbox and container code needs (containers, tasks, sandbox store, ...) as
methods here, each wrapped in :meth:`Client.scope`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.metadata.images import Image
from pycontainerd.core.plugin import InitContext, types
from pycontainerd.plugins.cri import constants

log = logging.getLogger(__name__)

#: IDs of the local services (``io.containerd.service.v1.<id>``) the client picks up.
IMAGES_SERVICE = "images-service"
CONTENT_SERVICE = "content-service"
SNAPSHOTS_SERVICE = "snapshots-service"
CONTAINERS_SERVICE = "containers-service"
TASKS_SERVICE = "tasks-service"
NAMESPACES_SERVICE = "namespaces-service"
DIFF_SERVICE = "diff-service"
INTROSPECTION_SERVICE = "introspection-service"


@attrs.define(eq=False)
class _RecordImages:
    """The metadata image store behind the images-service interface, for daemons built
    without ``images-service`` (no synchronous garbage collection then)."""

    _store: Any

    async def get(self, name: str) -> Image:
        return await self._store.get(name)  # type: ignore[no-any-return]

    async def list(self, filters: Sequence[str] = ()) -> list[Image]:
        return await self._store.list(filters)  # type: ignore[no-any-return]

    async def create(self, image: Image) -> Image:
        return await self._store.create(image)  # type: ignore[no-any-return]

    async def update(self, image: Image, fieldpaths: Sequence[str] = ()) -> Image:
        return await self._store.update(image, fieldpaths)  # type: ignore[no-any-return]

    async def delete(
        self, name: str, *, target: Descriptor | None = None, sync: bool = False
    ) -> None:
        await self._store.delete(name, target=target.digest if target is not None else "")


def _service(ic: InitContext, id_: str) -> Any:
    if types.SERVICE not in ic.registration.requires:
        return None
    try:
        return ic.get_by_id(types.SERVICE, id_)
    except errdefs.ContainerdError:
        return None


def _single(ic: InitContext, type_: str) -> Any:
    if type_ not in ic.registration.requires:
        return None
    try:
        return ic.get_single(type_)
    except errdefs.ContainerdError:
        return None


@attrs.define(eq=False, kw_only=True)
class Client:
    """Local services, pinned to :attr:`namespace`."""

    namespace: str = constants.K8S_NAMESPACE
    images: Any = None
    content: Any = None
    #: snapshotter name -> namespaced snapshotter (the snapshots-service's map)
    snapshotters: Mapping[str, Any] = attrs.Factory(dict)
    transfer: Any = None
    leases: Any = None
    containers: Any = None
    tasks: Any = None
    namespaces: Any = None
    diff: Any = None
    introspection: Any = None
    sandbox_store: Any = None
    events: Any = None

    @classmethod
    def from_init_context(cls, ic: InitContext, **overrides: Any) -> Client:
        """Collect what ``ic``'s registration declared: the local services by ID, the
        transfer service, lease manager, sandbox store and event exchange by type. Falls back
        to the metadata stores for images, content and snapshots when their services are
        missing."""
        md = _single(ic, types.METADATA)
        images = _service(ic, IMAGES_SERVICE)
        if images is None and md is not None:
            log.info("no %s: the cri client uses the metadata image store", IMAGES_SERVICE)
            images = _RecordImages(md.images)
        content = _service(ic, CONTENT_SERVICE)
        if content is None and md is not None:
            content = md.content_store
        snapshotters = _service(ic, SNAPSHOTS_SERVICE)
        if snapshotters is None and md is not None:
            snapshotters = dict(md.snapshotters)
        values: dict[str, Any] = {
            "images": images,
            "content": content,
            "snapshotters": snapshotters or {},
            "transfer": _single(ic, types.TRANSFER),
            "leases": _single(ic, types.LEASE),
            "containers": _service(ic, CONTAINERS_SERVICE),
            "tasks": _service(ic, TASKS_SERVICE),
            "namespaces": _service(ic, NAMESPACES_SERVICE),
            "diff": _service(ic, DIFF_SERVICE),
            "introspection": _service(ic, INTROSPECTION_SERVICE),
            "sandbox_store": _single(ic, types.SANDBOX_STORE),
            "events": _single(ic, types.EVENT),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def merged(self, other: Client) -> Client:
        """This client with the services it lacks taken from ``other``."""
        fields = {
            a.name: getattr(self, a.name) or getattr(other, a.name)
            for a in attrs.fields(Client)
            if a.name != "namespace"
        }
        return Client(namespace=self.namespace, **fields)

    @contextlib.contextmanager
    def scope(self) -> Iterator[str]:
        """Run a block in the client's namespace."""
        with namespaces.use(self.namespace) as ns:
            yield ns

    def require(self, name: str) -> Any:
        """The service attribute ``name``; FailedPrecondition when the daemon lacks it."""
        value = getattr(self, name)
        if value is None:
            raise errdefs.FailedPrecondition(f"cri: the {name} service is not available")
        return value

    # --- images ------------------------------------------------------------------------

    async def get_image(self, name: str) -> Image:
        with self.scope():
            return await self.require("images").get(name)  # type: ignore[no-any-return]

    async def list_images(self, filters: Sequence[str] = ()) -> list[Image]:
        with self.scope():
            return await self.require("images").list(filters)  # type: ignore[no-any-return]

    async def create_image(self, image: Image) -> Image:
        with self.scope():
            return await self.require("images").create(image)  # type: ignore[no-any-return]

    async def update_image(self, image: Image, *fieldpaths: str) -> Image:
        with self.scope():
            return await self.require("images").update(image, fieldpaths)  # type: ignore[no-any-return]

    async def delete_image(self, name: str, *, sync: bool = False) -> None:
        with self.scope():
            await self.require("images").delete(name, sync=sync)

    # --- content and snapshots ---------------------------------------------------------

    async def content_info(self, digest: str) -> Any:
        with self.scope():
            return await self.require("content").info(digest)

    def snapshotter(self, name: str) -> Any:
        """The namespaced snapshotter ``name``; NotFound naming the known ones."""
        try:
            return self.snapshotters[name]
        except KeyError:
            known = ", ".join(sorted(self.snapshotters)) or "none"
            raise errdefs.NotFound(f"snapshotter {name!r} not found (available: {known})") from None

    async def snapshot_stat(self, snapshotter: str, key: str) -> Any:
        with self.scope():
            return await self.snapshotter(snapshotter).stat(key)

    # --- transfer ----------------------------------------------------------------------

    async def transfer_(self, source: Any, destination: Any, *, progress: Any = None) -> None:
        with self.scope():
            await self.require("transfer").transfer(source, destination, progress=progress)
