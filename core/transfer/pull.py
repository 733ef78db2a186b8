"""Pulling an image from a registry into the content store, and unpacking it.

:func:`pull` resolves the reference, then walks the image graph from the root: every blob is
fetched into the content store (at most ``limiter`` fetches at once, resuming an interrupted
ingest from its offset, the digest checked before commit), labelled with
``containerd.io/distribution.source.<host>=<repository>``, and every index or manifest gets
containerd's GC reference labels to the children that were kept
(``containerd.io/gc.ref.content.m.<i>``, ``.config``, ``.l.<i>``).

Unpacking runs beside the fetches: as soon as a manifest chosen for an unpack platform is
read, a task waits for its config and runs :func:`pycontainerd.core.unpack.unpack`, whose
layer "fetch" waits for the layer to be in the store, so each layer is applied as soon as it
has arrived and the layer below it is applied: the lower layers are unpacked while the upper
ones still download. (Committed snapshots are named by chain ID, layer blobs get
``containerd.io/uncompressed``, the config ``containerd.io/gc.ref.snapshot.<snapshotter>``.)

A pull in which nothing moves (no bytes fetched or applied) for ``progress_timeout`` seconds
fails with DeadlineExceeded naming the blobs it was stuck on.

Callers run this with a namespace and a lease in context (the transfer service does); the
image record is the caller's business (nothing is recorded here).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs, imageverifier, platforms, reference
from pycontainerd.core.content import helpers
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.content.types import Info
from pycontainerd.core.images import mediatypes
from pycontainerd.core.imageverifier import ImageVerifier
from pycontainerd.core.plugin.context import Platform
from pycontainerd.core.transfer.progress import ProgressTracker

log = logging.getLogger(__name__)


def _handlers() -> Any:
    """The remotes handlers, imported on the first pull (the registry client stays out of
    daemon start-up)."""
    from pycontainerd.core.remotes import handlers

    return handlers


LABEL_DISTRIBUTION_SOURCE = "containerd.io/distribution.source."
#: Largest index/manifest/config read into memory.
MAX_JSON_BLOB = 20 << 20


@attrs.frozen(kw_only=True)
class UnpackPlatform:
    """Where the layers of ``platform``'s manifest go: a (namespaced) snapshotter and the
    applier that unpacks a layer onto its mounts."""

    platform: Platform
    snapshotter_name: str
    snapshotter: Any
    applier: Any
    #: accepts the platforms this target unpacks (default: ``platforms.only(platform)``)
    matcher: platforms.MatchComparer | None = None

    def match(self) -> platforms.MatchComparer:
        return self.matcher if self.matcher is not None else platforms.only(self.platform)


@attrs.frozen(kw_only=True)
class PullOptions:
    #: the manifests of an index to follow (default: all)
    matcher: platforms.MatchComparer = platforms.ALL
    #: fetch every manifest of an index, the config and layers only of matching ones
    all_metadata: bool = False
    #: at most this many matching manifests per index (0: no limit)
    manifest_limit: int = 0
    unpacks: tuple[UnpackPlatform, ...] = attrs.field(default=(), converter=tuple)
    #: seconds without progress before the pull fails (0: never)
    progress_timeout: float = 0.0
    #: image verifiers by plugin ID, asked before anything is fetched
    verifiers: Mapping[str, ImageVerifier] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class PullResult:
    name: str
    target: Descriptor
    #: snapshotter -> chain ID of the unpacked top layer
    unpacked: dict[str, str] = attrs.field(factory=dict)


def _first_error(eg: BaseExceptionGroup[Any]) -> BaseException:
    for exc in eg.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return eg.exceptions[0]


def source_label(name: str) -> tuple[str, str]:
    """(``containerd.io/distribution.source.<host>``, repository path) for an image name."""
    ref = reference.parse_docker_ref(name)
    return LABEL_DISTRIBUTION_SOURCE + ref.hostname, ref.path


async def add_labels(content: Any, dgst: str, labels: dict[str, str]) -> None:
    if labels:
        await content.update(Info(digest=dgst, labels=labels), [f"labels.{k}" for k in labels])


@attrs.define(eq=False, kw_only=True)
class Puller:
    """One fetch-and-unpack of an image graph (see the module docstring)."""

    fetcher: Any
    content: Any
    name: str
    options: PullOptions = PullOptions()
    limiter: asyncio.Semaphore | None = None
    tracker: ProgressTracker | None = None
    unpacked: dict[str, str] = attrs.Factory(dict)
    _fetched: dict[str, asyncio.Future[None]] = attrs.Factory(dict)
    _handled: set[str] = attrs.Factory(set)
    _metadata_only: set[str] = attrs.Factory(set)
    _unpack_for: dict[str, list[UnpackPlatform]] = attrs.Factory(dict)
    _root: str = ""
    _tg: asyncio.TaskGroup | None = None
    _source: tuple[str, str] = ("", "")

    def __attrs_post_init__(self) -> None:
        if self.tracker is None:
            self.tracker = ProgressTracker(root=self.name)
        self._source = source_label(self.name)

    @property
    def _t(self) -> ProgressTracker:
        assert self.tracker is not None
        return self.tracker

    def _future(self, dgst: str) -> asyncio.Future[None]:
        fut = self._fetched.get(dgst)
        if fut is None:
            fut = self._fetched[dgst] = asyncio.get_running_loop().create_future()
        return fut

    async def run(self, root: Descriptor) -> PullResult:
        self._root = root.digest
        try:
            if self.options.progress_timeout > 0:
                async with asyncio.TaskGroup() as outer:
                    watchdog = outer.create_task(self._watchdog())
                    work = outer.create_task(self._work(root))
                    work.add_done_callback(lambda _t: watchdog.cancel())
            else:
                await self._work(root)
        except BaseExceptionGroup as eg:
            raise _first_error(eg) from None
        finally:
            for fut in self._fetched.values():
                if not fut.done():
                    fut.cancel()
        return PullResult(name=self.name, target=root, unpacked=dict(self.unpacked))

    async def _work(self, root: Descriptor) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(_handlers().dispatch(self._handle, [root]))
        except BaseExceptionGroup as eg:
            raise _first_error(eg) from None
        finally:
            self._tg = None

    async def _watchdog(self) -> None:
        timeout = self.options.progress_timeout
        t = self._t
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            idle = time.monotonic() - t.last_activity
            if idle < timeout:
                continue
            stalled = t.active()
            if stalled:
                what = ", ".join(
                    f"{_handlers().ref_key(d)} at {done} of {d.size} bytes" for d, done in stalled
                )
            else:
                what = "waiting for the registry"
            raise errdefs.DeadlineExceeded(
                f"pull of {self.name} stalled: no progress for {timeout:g}s on {what}"
            )

    # --- fetching ----------------------------------------------------------------------

    async def _fetch(self, desc: Descriptor) -> None:
        t = self._t
        t.add(desc)
        if self.limiter is not None:
            async with self.limiter:
                committed = await _handlers().fetch_to_store(
                    self.fetcher, self.content, desc, progress=t.update
                )
        else:
            committed = await _handlers().fetch_to_store(
                self.fetcher, self.content, desc, progress=t.update
            )
        if committed:
            t.complete(desc)
        else:
            t.mark_exists(desc)
        key, repo = self._source
        try:
            info = await self.content.info(desc.digest)
        except errdefs.NotFound:
            info = None
        have = (info.labels.get(key, "") if info is not None else "").split(",")
        if repo not in have:
            value = ",".join([r for r in have if r] + [repo])
            await add_labels(self.content, desc.digest, {key: value})

    async def _handle(self, desc: Descriptor) -> Sequence[Descriptor]:
        if desc.media_type == mediatypes.DOCKER_SCHEMA1_MANIFEST:
            raise errdefs.InvalidArgument(
                f"{desc.digest}: schema 1 image manifests are no longer supported"
            )
        fut = self._future(desc.digest)
        if desc.digest in self._handled:
            await asyncio.shield(fut)
            return []
        self._handled.add(desc.digest)
        try:
            await self._fetch(desc)
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved here: the dispatch raises it
            raise
        except BaseException:
            fut.cancel()
            raise
        fut.set_result(None)
        mt = desc.media_type
        if not (mediatypes.is_index(mt) or mediatypes.is_manifest(mt)):
            return []
        data = await helpers.read_blob(self.content, desc, max_size=MAX_JSON_BLOB)
        kids = _handlers().children(desc, data)
        if mediatypes.is_index(mt):
            kids = self._choose(desc, kids)
        elif desc.digest in self._metadata_only:
            kids = []
        else:
            targets = self._unpack_for.pop(desc.digest, None)
            if targets is None and desc.digest == self._root:
                targets = list(self.options.unpacks)
            for u in targets or ():
                assert self._tg is not None
                self._tg.create_task(self._unpack(desc, kids, u))
        self._t.add_children(desc, kids)
        await add_labels(self.content, desc.digest, _handlers().gc_labels(desc, kids))
        return kids

    def _choose(self, index: Descriptor, kids: list[Descriptor]) -> list[Descriptor]:
        o = self.options
        chosen = _handlers().filter_platforms(kids, o.matcher, limit=o.manifest_limit)
        if kids and not chosen:
            raise errdefs.NotFound(
                f"index {index.digest} of {self.name}: no manifest for the requested platforms"
            )
        with_platform = [
            (k, k.platform)
            for k in chosen
            if k.platform is not None
            and (mediatypes.is_manifest(k.media_type) or mediatypes.is_index(k.media_type))
        ]
        for u in o.unpacks:
            best = platforms.select(u.match(), with_platform)
            if best:
                self._unpack_for.setdefault(best[0].digest, []).append(u)
            else:
                log.warning(
                    "no manifest of %s for unpack platform %s",
                    self.name,
                    platforms.format(u.platform),
                )
        if o.all_metadata:
            picked = {k.digest for k in chosen}
            for k in kids:
                if k.digest not in picked and mediatypes.is_manifest(k.media_type):
                    self._metadata_only.add(k.digest)
            return kids
        return chosen

    # --- unpacking ---------------------------------------------------------------------

    async def _unpack(
        self, manifest: Descriptor, kids: list[Descriptor], u: UnpackPlatform
    ) -> None:
        from pycontainerd.core.images import image as image_
        from pycontainerd.core.unpack import UnpackProgress, unpack

        if not kids:
            raise errdefs.InvalidArgument(f"manifest {manifest.digest}: no config")
        config = kids[0]
        await asyncio.shield(self._future(config.digest))
        if manifest.digest == self._root and manifest.platform is None:
            plat = image_.config_platform(await image_.read_json(self.content, config))
            if not u.match().match(plat):
                log.info(
                    "%s is %s: not unpacked for %s",
                    self.name,
                    platforms.format(plat),
                    platforms.format(u.platform),
                )
                return
        t = self._t

        def progress(p: UnpackProgress) -> None:
            if p.layer is None:
                return
            if p.status == "extracting":
                t.extract_progress(p.layer, 0)
            elif p.status in ("applied", "exists"):
                t.extracted(p.layer)

        async def fetched(d: Descriptor) -> None:
            await asyncio.shield(self._future(d.digest))

        result = await unpack(
            self.content,
            u.snapshotter,
            u.snapshotter_name,
            u.applier,
            manifest,
            platform=platforms.ALL,
            fetch=fetched,
            fetch_concurrency=1 << 16,
            progress=progress,
        )
        if result.chain_id:
            self.unpacked[u.snapshotter_name] = result.chain_id


async def pull(
    source: Any,
    content: Any,
    *,
    options: PullOptions = PullOptions(),
    limiter: asyncio.Semaphore | None = None,
    tracker: ProgressTracker | None = None,
) -> PullResult:
    """Resolve ``source`` (an :class:`~pycontainerd.core.transfer.ImageFetcher`), have
    ``options.verifiers`` judge it, fetch and unpack it (see the module docstring)."""
    name, desc = await source.resolve()
    if desc.media_type == mediatypes.DOCKER_SCHEMA1_MANIFEST:
        raise errdefs.InvalidArgument("schema 1 image manifests are no longer supported")
    await imageverifier.check(options.verifiers, name, desc)
    fetcher = await source.fetcher(name)
    puller = Puller(
        fetcher=fetcher,
        content=content,
        name=name,
        options=options,
        limiter=limiter,
        tracker=tracker,
    )
    return await puller.run(desc)
