"""The CRI image service (containerd's ``internal/cri/server/images``): pull through the
transfer service, the image records the CRI keeps per image, local resolution of any
reference form, removal, and the image filesystem usage.

A pull of ``busybox`` records three images in ``k8s.io``, all pointing at the pulled target
and labelled ``io.cri-containerd.image=managed``: the tag ``docker.io/library/busybox:latest``,
the digest ref ``docker.io/library/busybox@sha256:<manifest>`` and the ID
``sha256:<config digest>``. The CRI image ID is the config digest; RemoveImage deletes every
record of the image.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from pycontainerd.core import durations, errdefs, platforms, reference
from pycontainerd.core.images import image as image_
from pycontainerd.core.metadata.images import Image as ImageRecord
from pycontainerd.core.plugin.context import Platform
from pycontainerd.plugins.cri import constants
from pycontainerd.plugins.cri.client import Client
from pycontainerd.plugins.cri.config import ImagesConfig
from pycontainerd.plugins.cri.images import refs
from pycontainerd.plugins.cri.images.snapshots import SnapshotStore
from pycontainerd.plugins.cri.images.store import Image, ImageIndex

log = logging.getLogger(__name__)

#: How often a pull's progress is checked against ``image_pull_progress_timeout``.
PROGRESS_CHECK_INTERVAL = 10.0
#: ImageFsInfo recomputes usage when the last sync is older than this (seconds).
FS_INFO_MAX_AGE = 1.0

#: ``credentials(host) -> (username, secret)``; ``headers(host) -> extra headers``.
Credentials = Callable[[str], tuple[str, str]]


@attrs.frozen(kw_only=True)
class ImagePlatform:
    """Where a runtime handler's images go: the snapshotter and the platform."""

    snapshotter: str
    platform: Platform


@attrs.define(eq=False)
class _ProgressWatch:
    """Cancels a pull when no new progress arrives for ``timeout`` seconds."""

    timeout: float
    last: float = attrs.Factory(time.monotonic)
    _seen: dict[tuple[str, str], int] = attrs.Factory(dict)

    def __call__(self, p: Any) -> None:
        key = (p.event, p.name)
        if key not in self._seen or p.progress > self._seen[key]:
            self._seen[key] = p.progress
            self.last = time.monotonic()

    async def watch(self, task: asyncio.Task[Any]) -> bool:
        """True when it cancelled ``task`` for lack of progress."""
        interval = min(PROGRESS_CHECK_INTERVAL, self.timeout / 2)
        while not task.done():
            await asyncio.wait({task}, timeout=interval)
            if not task.done() and time.monotonic() - self.last > self.timeout:
                task.cancel()
                return True
        return False


@attrs.define(eq=False, kw_only=True)
class CRIImageService:
    """``io.containerd.cri.v1.images``."""

    config: ImagesConfig
    client: Client
    #: runtime handler -> snapshotter and platform of its images
    runtime_platforms: dict[str, ImagePlatform] = attrs.Factory(dict)
    #: snapshotter -> the directory its snapshots live in (ImageFsInfo's mountpoint)
    image_fs_paths: dict[str, str] = attrs.Factory(dict)
    index: ImageIndex = attrs.field(init=False)
    snapshot_store: SnapshotStore = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.index = ImageIndex(self.client.get_image, self.client.content, platforms.default())
        self.snapshot_store = SnapshotStore(self._watched_snapshotters)

    def _watched_snapshotters(self) -> dict[str, Any]:
        return {
            name: self.client.snapshotters[name]
            for name in self.image_fs_paths
            if name in self.client.snapshotters
        }

    # --- resolution --------------------------------------------------------------------

    def local_resolve(self, ref_or_id: str) -> Image:
        """The image a reference names: a full ID, a tag, a digest ref, a short name
        (``busybox``) or a truncated ID. NotFound when none."""
        if refs.is_digest(ref_or_id):
            return self.index.get(ref_or_id)
        image_id = ""
        try:
            image_id = self.index.resolve(reference.normalize(ref_or_id))
        except errdefs.ContainerdError:
            pass
        return self.index.get(image_id or ref_or_id)

    def get_image(self, image_id: str) -> Image:
        return self.index.get(image_id)

    def runtime_snapshotter(self, runtime: Any) -> str:
        """The snapshotter of a runtime handler's config (``snapshotter``, else the images
        config's)."""
        return getattr(runtime, "snapshotter", "") or self.config.snapshotter

    def update_runtime_snapshotter(self, handler: str, snapshotter: str) -> None:
        """Register a runtime handler of the runtime config (unless ``runtime_platforms``
        already names it) so pulls for it are accepted and land in its snapshotter."""
        if handler in self.runtime_platforms:
            return
        self.runtime_platforms[handler] = ImagePlatform(
            snapshotter=snapshotter or self.config.snapshotter, platform=platforms.default_spec()
        )

    async def ensure_unpacked(self, image: Image, ref: str, snapshotter: str, handler: str) -> None:
        """Make sure ``image`` (named ``ref`` by the caller) is unpacked in ``snapshotter``,
        the snapshotter of runtime handler ``handler``: an image pulled for another
        handler's snapshotter is unpacked here on demand (in the caller's lease). When that
        fails, FailedPrecondition names the image, the handler and both snapshotters."""
        if not image.chain_id:
            raise errdefs.FailedPrecondition(f"image {ref!r} has no layers")
        sn = self.client.snapshotter(snapshotter)
        with self.client.scope():
            try:
                await sn.stat(image.chain_id)
                return
            except errdefs.NotFound:
                pass
        from pycontainerd.core.unpack.unpacker import unpack

        try:
            with self.client.scope():
                record = await self.client.get_image(image.id)
                result = await unpack(
                    self.client.content,
                    sn,
                    snapshotter,
                    self.client.require("diff"),
                    record.target,
                    platform=platforms.default(),
                )
        except errdefs.ContainerdError as e:
            found = await self._unpacked_in(image)
            raise errdefs.FailedPrecondition(
                f"image {ref!r} is unpacked in snapshotter {', '.join(found) or 'none'!s} but "
                f"runtime handler {handler or 'default'!r} uses snapshotter {snapshotter!r}, "
                f"and unpacking it there failed: {e}"
            ) from e
        log.info(
            "cri: unpacked image %s into snapshotter %s for runtime handler %s on demand "
            "(%d layers applied)",
            image.id,
            snapshotter,
            handler or "default",
            result.applied,
        )

    async def _unpacked_in(self, image: Image) -> list[str]:
        out = []
        for name, sn in sorted(self.client.snapshotters.items()):
            with self.client.scope():
                try:
                    await sn.stat(image.chain_id)
                except errdefs.ContainerdError:
                    continue
            out.append(name)
        return out

    # --- load and update ---------------------------------------------------------------

    async def check_images(self) -> None:
        """Index every image record of ``k8s.io`` (at start-up), making images others
        created there managed (ID record and label), as containerd does."""
        try:
            records = await self.client.list_images()
        except errdefs.ContainerdError as e:
            log.warning("cri: failed to list images: %s", e)
            return
        for record in records:
            try:
                await self.update_image(record.name)
            except errdefs.ContainerdError as e:
                log.warning("cri: failed to load image %s: %s", record.name, e)
                continue
            log.debug("cri: loaded image %s", record.name)

    async def update_image(self, ref: str) -> None:
        """Bring the index in line with record ``ref`` (created, changed or deleted by anyone);
        a record the CRI does not manage yet gets its ID record and the managed label."""
        try:
            record = await self.client.get_image(ref)
        except errdefs.NotFound:
            await self.index.update(ref)
            return
        labels = self._labels(ref)
        if any(record.labels.get(k) != v for k, v in labels.items()):
            with self.client.scope():
                config_desc = await image_.config(
                    self.client.content, record.target, platforms.default()
                )
            image_id = config_desc.digest
            await self._create_or_update_reference(image_id, record.target, labels)
            await self.index.update(image_id)
            await self._create_or_update_reference(ref, record.target, labels)
        await self.index.update(ref)

    def _labels(self, ref: str) -> dict[str, str]:
        labels = {constants.IMAGE_LABEL_KEY: constants.IMAGE_LABEL_VALUE}
        if ref in self.config.pinned_images.values():
            labels[constants.PINNED_IMAGE_LABEL_KEY] = constants.PINNED_IMAGE_LABEL_VALUE
        return labels

    async def _create_or_update_reference(
        self, name: str, target: Any, labels: Mapping[str, str]
    ) -> None:
        record = ImageRecord(name=name, target=target, labels=dict(labels))
        try:
            await self.client.create_image(record)
            return
        except errdefs.AlreadyExists:
            pass
        old = await self.client.get_image(name)
        fieldpaths = ["target"]
        if old.labels.get(constants.IMAGE_LABEL_KEY) != labels.get(constants.IMAGE_LABEL_KEY):
            fieldpaths.append("labels." + constants.IMAGE_LABEL_KEY)
        pinned = labels.get(constants.PINNED_IMAGE_LABEL_KEY)
        if pinned and old.labels.get(constants.PINNED_IMAGE_LABEL_KEY) != pinned:
            fieldpaths.append("labels." + constants.PINNED_IMAGE_LABEL_KEY)
        if old.target.digest == target.digest and len(fieldpaths) < 2:
            return
        await self.client.update_image(record, *fieldpaths)

    # --- pull --------------------------------------------------------------------------

    def _target_for(self, sandbox_config: Any, runtime_handler: str) -> ImagePlatform:
        default = ImagePlatform(
            snapshotter=self.config.snapshotter, platform=platforms.default_spec()
        )
        handler = runtime_handler
        if not handler and sandbox_config is not None:
            handler = dict(sandbox_config.annotations).get(constants.ANNOTATION_RUNTIME_HANDLER, "")
            if handler:
                log.warning(
                    "cri: the %s annotation is deprecated; pass the runtime handler in the "
                    "image spec",
                    constants.ANNOTATION_RUNTIME_HANDLER,
                )
        if not handler:
            return default
        found = self.runtime_platforms.get(handler)
        if found is None:
            return default
        return ImagePlatform(
            snapshotter=found.snapshotter or default.snapshotter, platform=found.platform
        )

    async def pull_image(
        self,
        name: str,
        *,
        credentials: Credentials | None = None,
        headers: Mapping[str, str] | None = None,
        sandbox_config: Any = None,
        runtime_handler: str = "",
    ) -> str:
        """Pull ``name`` and unpack it for the runtime handler; returns the image ID."""
        try:
            named = reference.parse_docker_ref(name)
        except errdefs.InvalidArgument as e:
            raise errdefs.InvalidArgument(
                f"failed to parse image reference {name!r}: {e}"
            ) from None
        ref = str(named)
        if runtime_handler and runtime_handler not in self.runtime_platforms:
            raise errdefs.InvalidArgument(f"unknown runtime handler {runtime_handler!r}")
        try:
            timeout = durations.parse(self.config.image_pull_progress_timeout)
        except errdefs.InvalidArgument as e:
            raise errdefs.InvalidArgument(f"image_pull_progress_timeout: {e}") from None
        target = self._target_for(sandbox_config, runtime_handler)
        labels = self._labels(ref)
        started = time.monotonic()
        log.debug("cri: pull %s into snapshotter %s", ref, target.snapshotter)
        try:
            await self._transfer(ref, target, labels, credentials, headers, timeout)
        finally:
            self.snapshot_store.invalidate()
        record = await self.client.get_image(ref)
        with self.client.scope():
            config_desc = await image_.config(
                self.client.content, record.target, platforms.only(target.platform)
            )
        image_id = config_desc.digest
        repo_digest, repo_tag = refs.repo_digest_and_tag(named, record.target.digest)
        for r in (image_id, repo_tag, repo_digest):
            if not r:
                continue
            try:
                await self._create_or_update_reference(r, record.target, labels)
            except errdefs.ContainerdError as e:
                raise errdefs.from_code(
                    e.code, f"failed to create image reference {r!r}: {e}"
                ) from e
            await self.index.update(r)
        log.info(
            "Pulled image %r with image id %r, repo tag %r, repo digest %r in %.3fs",
            name,
            image_id,
            repo_tag,
            repo_digest,
            time.monotonic() - started,
        )
        return image_id

    async def _transfer(
        self,
        ref: str,
        target: ImagePlatform,
        labels: Mapping[str, str],
        credentials: Credentials | None,
        headers: Mapping[str, str] | None,
        timeout: float,
    ) -> None:
        from pycontainerd.core.transfer import UnpackConfiguration
        from pycontainerd.core.transfer.imagestore import ImageStore
        from pycontainerd.core.transfer.registry import OCIRegistry

        # the snapshotter must exist before anything is fetched
        self.client.snapshotter(target.snapshotter)
        all_headers = {k: ", ".join(v) for k, v in self.config.registry.headers.items()}
        all_headers.update(headers or {})
        source = OCIRegistry(
            reference=ref,
            headers=all_headers,
            host_dir=self.config.registry.config_path,
            credentials=credentials,
        )
        dest = ImageStore(
            name=ref,
            labels=dict(labels),
            platforms=[target.platform],
            unpacks=[UnpackConfiguration(platform=target.platform, snapshotter=target.snapshotter)],
        )
        watch = _ProgressWatch(timeout=timeout) if timeout > 0 else None
        task = asyncio.ensure_future(self.client.transfer_(source, dest, progress=watch))
        watcher = asyncio.ensure_future(watch.watch(task)) if watch is not None else None
        try:
            await task
        except asyncio.CancelledError:
            if watcher is not None and watcher.done() and watcher.result():
                raise errdefs.Canceled(
                    f"failed to pull and unpack image {ref!r}: cancelled because of no "
                    f"progress in {durations.format(timeout)}"
                ) from None
            raise
        except errdefs.ContainerdError as e:
            raise errdefs.from_code(e.code, f"failed to pull and unpack image {ref!r}: {e}") from e
        finally:
            if not task.done():
                task.cancel()
            if watcher is not None and not watcher.done():
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)

    # --- remove ------------------------------------------------------------------------

    async def remove_image(self, ref_or_id: str) -> None:
        """Delete every record of the image ``ref_or_id`` names (the last one synchronously,
        so its content and snapshots are collected). Nothing to do when it is unknown."""
        try:
            image = self.local_resolve(ref_or_id)
        except errdefs.NotFound:
            return
        last = len(image.references) - 1
        for i, ref in enumerate(image.references):
            try:
                await self.client.delete_image(ref, sync=i == last)
            except errdefs.NotFound:
                pass
            except errdefs.ContainerdError as e:
                raise errdefs.from_code(
                    e.code, f"failed to delete image reference {ref!r} for {image.id!r}: {e}"
                ) from e
            await self.index.update(ref)
        self.snapshot_store.invalidate()

    # --- image filesystem --------------------------------------------------------------

    async def image_fs_usage(self) -> tuple[int, str, int, int]:
        """``(timestamp ns, mountpoint, used bytes, used inodes)`` of the default
        snapshotter's snapshots in ``k8s.io``."""
        await self.snapshot_store.sync(max_age=FS_INFO_MAX_AGE)
        snapshotter = self.config.snapshotter
        timestamp = time.time_ns()
        used = inodes = 0
        for sn in self.snapshot_store.list(snapshotter):
            timestamp = min(timestamp, sn.timestamp)
            used += sn.size
            inodes += sn.inodes
        return timestamp, self.image_fs_paths.get(snapshotter, ""), used, inodes

    def get_snapshot(self, key: str, snapshotter: str) -> Any:
        """Usage of one snapshot (a container's writable layer, for container stats)."""
        return self.snapshot_store.get(key, snapshotter)
