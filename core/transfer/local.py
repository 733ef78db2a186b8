"""The local transfer service (containerd's ``core/transfer/local``).

:meth:`LocalTransferService.transfer` looks at what the source and destination are:

- :class:`OCIRegistry` -> :class:`ImageStore`: pull (fetch, unpack, record the image);
- :class:`ImageStore` -> :class:`OCIRegistry`: push;
- :class:`ImageStore` -> :class:`ImageStore`: tag (record the source's target under new names);
- an importer (archive stream) -> :class:`ImageStore`: import; :class:`ImageStore` -> an
  exporter: export.

Pulls of the same reference, platforms and unpack targets in one namespace share one
fetch-and-unpack ("flight"); each caller then records its own image names and gets the
progress of the shared work. A flight works under its own lease (``containerd.io/gc.expire``
a day ahead): deleted when the pull succeeds, kept when it fails for a reason a retry may cure
(connection lost, stalled, cancelled), so the ingests survive for the next attempt to resume.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs, namespaces, platforms
from pycontainerd.core import leases as leases_
from pycontainerd.core.imageverifier import ImageVerifier
from pycontainerd.core.transfer import Progress, ProgressFunc, UnpackConfiguration
from pycontainerd.core.transfer.imagestore import ImageStore
from pycontainerd.core.transfer.progress import ProgressTracker
from pycontainerd.core.transfer.pull import PullOptions, PullResult, UnpackPlatform
from pycontainerd.core.transfer.registry import OCIRegistry

log = logging.getLogger(__name__)

#: Lease lifetime of a pull (kept this long after a failed pull, for a resume).
PULL_LEASE_TTL = datetime.timedelta(hours=24)
#: Errors after which a pull's ingests are kept for a retry.
_RESUMABLE = (errdefs.Unavailable, errdefs.DeadlineExceeded, errdefs.Canceled, OSError)


@attrs.frozen(kw_only=True)
class TransferConfig:
    max_concurrent_downloads: int = 3
    max_concurrent_uploaded_layers: int = 3
    #: ``hosts.toml`` directory used when a registry source names none
    config_path: str = ""
    #: seconds without progress before a pull fails (0: never)
    progress_timeout: float = 300.0
    #: the platform/snapshotter/differ combinations this service unpacks into; the first
    #: whose platform matches is the default for a request without a snapshotter
    unpack_platforms: tuple[UnpackPlatform, ...] = attrs.field(default=(), converter=tuple)
    default_snapshotter: str = "overlayfs"
    #: image verifiers (plugin ID -> verifier) that must allow a pull before it fetches
    verifiers: Mapping[str, ImageVerifier] = attrs.field(factory=dict)


@attrs.define(eq=False)
class _Flight:
    key: tuple[Any, ...]
    lease: str
    task: asyncio.Task[PullResult] | None = None
    listeners: list[ProgressFunc] = attrs.Factory(list)
    waiters: int = 0

    def emit(self, p: Progress) -> None:
        for fn in list(self.listeners):
            try:
                fn(p)
            except Exception:  # noqa: BLE001 - one broken listener does not stop the others
                log.warning("progress listener failed", exc_info=True)


def _emit(progress: ProgressFunc | None, p: Progress) -> None:
    if progress is not None:
        try:
            progress(p)
        except Exception:  # noqa: BLE001
            log.warning("progress callback failed", exc_info=True)


@attrs.define(eq=False, kw_only=True)
class LocalTransferService:
    """``content``: the namespaced content store; ``images``: the image store; ``leases``: a
    lease manager (None: no leases, for tests)."""

    content: Any
    images: Any
    leases: Any = None
    config: TransferConfig = TransferConfig()
    _limiter_d: asyncio.Semaphore | None = None
    _limiter_u: asyncio.Semaphore | None = None
    _flights: dict[tuple[Any, ...], _Flight] = attrs.Factory(dict)

    def __attrs_post_init__(self) -> None:
        if self.config.max_concurrent_downloads > 0:
            self._limiter_d = asyncio.Semaphore(self.config.max_concurrent_downloads)
        if self.config.max_concurrent_uploaded_layers > 0:
            self._limiter_u = asyncio.Semaphore(self.config.max_concurrent_uploaded_layers)

    async def transfer(
        self, source: Any, destination: Any, *, progress: ProgressFunc | None = None
    ) -> None:
        from pycontainerd.core.transfer import ImageExporter, ImageImporter

        if isinstance(source, OCIRegistry) and isinstance(destination, ImageStore):
            await self.pull(source, destination, progress=progress)
        elif isinstance(source, ImageStore) and isinstance(destination, OCIRegistry):
            await self.push(source, destination, progress=progress)
        elif isinstance(source, ImageStore) and isinstance(destination, ImageStore):
            await self.tag(source, destination, progress=progress)
        elif isinstance(source, ImageImporter) and isinstance(destination, ImageStore):
            await self.import_(source, destination, progress=progress)
        elif isinstance(source, ImageStore) and isinstance(destination, ImageExporter):
            await self.export(source, destination, progress=progress)
        else:
            raise errdefs.NotImplemented_(f"unable to transfer from {source} to {destination}")

    # --- pull --------------------------------------------------------------------------

    def unpack_targets(self, requested: Sequence[UnpackConfiguration]) -> list[UnpackPlatform]:
        """The configured unpack platforms that answer ``requested`` (containerd's
        getSupportedPlatform): same snapshotter and a matching platform; without a
        snapshotter, the default snapshotter's entry, else the first matching one."""
        out: list[UnpackPlatform] = []
        for uc in requested:
            want = uc.platform or platforms.default_spec()
            found: UnpackPlatform | None = None
            for up in self.config.unpack_platforms:
                if not platforms.only(up.platform).match(want):
                    continue
                if uc.snapshotter == up.snapshotter_name:
                    found = up
                    break
                if not uc.snapshotter:
                    if up.snapshotter_name == self.config.default_snapshotter:
                        found = up
                        break
                    found = found or up
            if found is None:
                log.warning(
                    "unpack configuration not supported, skipping: platform=%s snapshotter=%s",
                    platforms.format(want),
                    uc.snapshotter,
                )
                continue
            out.append(attrs.evolve(found, platform=want, matcher=platforms.only(want)))
        return out

    async def pull(
        self, source: OCIRegistry, dest: ImageStore, *, progress: ProgressFunc | None = None
    ) -> list[Any]:
        ns = namespaces.required()
        if not source.host_dir and self.config.config_path:
            source.default_host_dir = self.config.config_path
        unpacks = self.unpack_targets(dest.unpacks)
        options = PullOptions(
            matcher=dest.matcher(),
            all_metadata=dest.all_metadata,
            manifest_limit=dest.manifest_limit,
            unpacks=tuple(unpacks),
            progress_timeout=self.config.progress_timeout,
            verifiers=self.config.verifiers,
        )
        key = (
            ns,
            source.reference,
            source.host_dir or source.default_host_dir,
            source.default_scheme,
            tuple(platforms.format(p) for p in dest.platforms),
            dest.all_metadata,
            dest.manifest_limit,
            tuple((u.snapshotter_name, platforms.format(u.platform)) for u in unpacks),
        )
        flight = self._flights.get(key)
        if flight is None or (
            flight.task is not None and flight.task.done() and flight.task.exception() is not None
        ):
            lease = "pull-" + hashlib.sha256(repr(key).encode()).hexdigest()[:24]
            flight = _Flight(key=key, lease=lease)
            self._flights[key] = flight
            flight.listeners.append(lambda p: _emit(progress, p))
            flight.task = asyncio.get_running_loop().create_task(
                self._fly(flight, source, options, ns), name=f"pull {source.reference}"
            )
        else:
            log.info("joining the pull of %s in progress", source.reference)
            flight.listeners.append(lambda p: _emit(progress, p))
            _emit(progress, Progress(event=f"Waiting for the pull of {source} in progress"))
        listener = flight.listeners[-1]
        flight.waiters += 1
        ok = False
        try:
            assert flight.task is not None
            result = await asyncio.shield(flight.task)
            with leases_.use(leases_.get() or flight.lease):
                imgs = await dest.store(result.target, self.images)
            for img in imgs:
                _emit(progress, Progress(event="saved", name=img.name, desc=img.target))
            _emit(progress, Progress(event=f"Completed pull from {source}"))
            ok = True
            return imgs
        finally:
            flight.waiters -= 1
            if listener in flight.listeners:
                flight.listeners.remove(listener)
            if flight.waiters == 0:
                if flight.task is not None and not flight.task.done():
                    flight.task.cancel()
                    await asyncio.gather(flight.task, return_exceptions=True)
                if self._flights.get(key) is flight:
                    del self._flights[key]
                await self._end_lease(flight, ok)
            await source.close()

    async def _fly(
        self, flight: _Flight, source: OCIRegistry, options: PullOptions, ns: str
    ) -> PullResult:
        from pycontainerd.core.transfer.pull import pull

        with namespaces.use(ns), leases_.use(await self._lease(flight.lease)):
            flight.emit(Progress(event=f"Resolving from {source}"))
            tracker = ProgressTracker(root=source.reference, emit=flight.emit)
            tracker.start()
            try:
                result = await pull(
                    _Announcing(source, flight),
                    self.content,
                    options=options,
                    limiter=self._limiter_d,
                    tracker=tracker,
                )
            finally:
                await tracker.stop()
            return result

    async def _lease(self, lease_id: str) -> str | None:
        if self.leases is None:
            return None
        expire = datetime.datetime.now(datetime.UTC) + PULL_LEASE_TTL
        labels = {leases_.LABEL_GC_EXPIRE: expire.strftime("%Y-%m-%dT%H:%M:%SZ")}
        try:
            await self.leases.create(lease_id, labels)
        except errdefs.AlreadyExists:
            log.info("resuming with the ingests of an earlier pull (lease %s)", lease_id)
        return lease_id

    async def _end_lease(self, flight: _Flight, ok: bool) -> None:
        if self.leases is None:
            return
        exc: BaseException | None = None
        task = flight.task
        if task is not None and task.done() and not task.cancelled():
            exc = task.exception()
        if not ok and (task is None or task.cancelled() or isinstance(exc, _RESUMABLE)):
            log.info("pull failed; keeping lease %s so a retry resumes", flight.lease)
            return
        try:
            await self.leases.delete(flight.lease)
        except errdefs.NotFound:
            pass

    # --- push / tag --------------------------------------------------------------------

    async def push(
        self, source: ImageStore, dest: OCIRegistry, *, progress: ProgressFunc | None = None
    ) -> None:
        from pycontainerd.core.transfer.push import push

        if not dest.host_dir and self.config.config_path:
            dest.default_host_dir = self.config.config_path
        img = await source.get(self.images)
        matcher = platforms.any_of(*source.platforms) if source.platforms else platforms.ALL
        _emit(progress, Progress(event=f"Pushing to {dest}"))
        _emit(progress, Progress(event="pushing content", name=img.name, desc=img.target))
        tracker = ProgressTracker(root=img.name, emit=progress, state="uploading")
        tracker.start()
        try:
            pusher = await dest.pusher(img.target)
            await push(
                pusher,
                self.content,
                img.target,
                ref=dest.reference,
                matcher=matcher,
                limiter=self._limiter_u,
                tracker=tracker,
            )
        finally:
            await tracker.stop()
            await dest.close()
        _emit(progress, Progress(event="pushed content", name=img.name, desc=img.target))
        _emit(progress, Progress(event=f"Completed push to {dest}", desc=img.target))

    async def tag(
        self, source: ImageStore, dest: ImageStore, *, progress: ProgressFunc | None = None
    ) -> None:
        img = await source.get(self.images)
        for saved in await dest.store(img.target, self.images):
            _emit(progress, Progress(event="saved", name=saved.name, desc=saved.target))

    # --- archives ----------------------------------------------------------------------

    async def import_(
        self, source: Any, dest: ImageStore, *, progress: ProgressFunc | None = None
    ) -> list[Any]:
        """Import an archive (containerd's importStream): store its blobs, label the graph
        under its index for ``dest``'s platforms, unpack where ``dest`` asks, then record the
        index under ``dest``'s name and every index entry under the names its annotations
        give through ``dest``'s prefix references."""
        from pycontainerd.core.content.descriptor import Descriptor
        from pycontainerd.core.images import archive
        from pycontainerd.core.images import image as image_
        from pycontainerd.core.transfer.imagestore import REF_SOURCE_ANNOTATION

        _emit(progress, Progress(event="Importing"))
        own = None
        if leases_.get() is None and self.leases is not None:
            own = await self._lease(_random_lease())
        imgs: list[Any] = []
        try:
            with leases_.use(leases_.get() or own):
                index = await source.import_into(self.content)
                idx = await image_.read_json(self.content, index)
                entries = [Descriptor.from_dict(raw) for raw in idx.get("manifests") or []]
                await archive.label_children(self.content, index, dest.matcher())
                for u in self.unpack_targets(dest.unpacks):
                    for m in entries:
                        await self._unpack_imported(m, u, progress)
                marked = [
                    attrs.evolve(
                        m, annotations={**m.annotations, REF_SOURCE_ANNOTATION: "annotation"}
                    )
                    for m in entries
                ]
                for desc in [index, *marked]:
                    try:
                        saved = await dest.store(desc, self.images)
                    except errdefs.NotFound:
                        log.info("no image name for %s", desc.digest)
                        continue
                    for img in saved:
                        _emit(progress, Progress(event="saved", name=img.name, desc=img.target))
                    imgs.extend(saved)
        finally:
            if own is not None:
                await self.leases.delete(own)
        _emit(progress, Progress(event="Completed import"))
        return imgs

    async def _unpack_imported(
        self, m: Any, u: UnpackPlatform, progress: ProgressFunc | None
    ) -> None:
        from pycontainerd.core.images import image as image_
        from pycontainerd.core.unpack import UnpackProgress, unpack

        if m.platform is not None and not u.match().match(m.platform):
            return
        try:
            await image_.manifest(self.content, m, u.match())
        except errdefs.NotFound:
            log.info("%s has no manifest for %s", m.digest, platforms.format(u.platform))
            return

        def report(p: UnpackProgress) -> None:
            if p.layer is None:
                return
            name = f"layer-{p.layer.digest}"
            if p.status == "extracting":
                _emit(progress, Progress(event="extracting", name=name, total=p.layer.size))
            elif p.status in ("applied", "exists"):
                _emit(
                    progress,
                    Progress(
                        event="extracted",
                        name=name,
                        progress=p.layer.size,
                        total=p.layer.size,
                    ),
                )

        await unpack(
            self.content,
            u.snapshotter,
            u.snapshotter_name,
            u.applier,
            m,
            platform=u.match(),
            progress=report,
        )

    async def export(
        self, source: ImageStore, dest: Any, *, progress: ProgressFunc | None = None
    ) -> None:
        _emit(progress, Progress(event="Exporting"))
        img = await source.get(self.images)
        await dest.export(self.content, [img])
        _emit(progress, Progress(event="Completed export"))


class _Announcing:
    """The registry source, telling the flight's listeners when the pull goes ahead: once
    resolved and judged by the image verifiers (the pull asks for the fetcher then), as
    containerd announces it."""

    def __init__(self, source: OCIRegistry, flight: _Flight) -> None:
        self._source = source
        self._flight = flight
        self._resolved: Any = None

    async def resolve(self) -> Any:
        self._resolved = await self._source.resolve()
        return self._resolved

    async def fetcher(self, ref: str) -> Any:
        self._flight.emit(Progress(event=f"Pulling from {self._source}"))
        if self._resolved is not None:
            name, desc = self._resolved
            self._flight.emit(Progress(event="fetching image content", name=name, desc=desc))
        return await self._source.fetcher(ref)


def _random_lease() -> str:
    import secrets

    return f"transfer-{secrets.token_hex(8)}"
