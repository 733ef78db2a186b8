"""Unpacking an image into a snapshotter.

For the platform's manifest, the config's ``rootfs.diff_ids`` give the chain IDs. Each layer
whose chain ID is not yet a snapshot is extracted in order:

1. ``prepare`` an active snapshot ``extract-<unique> <chainID>`` (containerd's key format)
   on the previous chain ID, labelled ``containerd.io/snapshot.ref`` = chain ID (and the
   layer's ``containerd.io/snapshot/`` annotations); AlreadyExists on the target means someone
   else committed it meanwhile, which is fine;
2. apply the layer blob onto its mounts (the applier: a differ or :class:`LocalApplier`);
3. check the applied diff ID against the config's;
4. ``commit`` it as the chain ID, then label the layer blob ``containerd.io/uncompressed``.

Any failure (including cancellation) removes the extraction snapshot, so nothing half-applied
is ever committed. Finally the config blob gets ``containerd.io/gc.ref.snapshot.<snapshotter>``
= the top chain ID, which keeps the snapshots alive as long as the image is.

A crash mid-unpack leaves only an ``extract-*`` active snapshot, held by the caller's lease;
it never shows as a chain ID, the next unpack uses a fresh key, and garbage collection removes
it once the lease is deleted or expires.

Layer blobs can be fetched ahead of the apply (``fetch``, at most ``fetch_concurrency`` at a
time) while applies stay strictly sequential.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core import platforms as platforms_
from pycontainerd.core import snapshots as snapshots_
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.content.types import Info
from pycontainerd.core.diff import Applier
from pycontainerd.core.images import image as image_

log = logging.getLogger(__name__)


def unpack_key(chain_id: str) -> str:
    """A fresh extraction key: ``extract-<nanoseconds>-<random> <chainID>``."""
    unique = base64.urlsafe_b64encode(os.urandom(3)).decode()
    return f"{snapshots_.UNPACK_KEY_PREFIX}-{time.time_ns() % 1_000_000_000}-{unique} {chain_id}"


def is_unpack_key(key: str) -> bool:
    return key.startswith(snapshots_.UNPACK_KEY_PREFIX + "-")


@attrs.frozen(kw_only=True)
class UnpackProgress:
    """One step of an unpack: ``status`` is ``exists`` (chain ID already there),
    ``extracting``, ``applied`` (``size`` = uncompressed bytes) or ``done`` (the image)."""

    layer: Descriptor | None
    chain_id: str
    status: str
    size: int = 0


@attrs.frozen(kw_only=True)
class UnpackResult:
    config: Descriptor
    chain_id: str
    #: layers extracted now
    applied: int
    #: layers whose chain ID existed already
    skipped: int


Fetch = Callable[[Descriptor], Awaitable[Any]]


async def unpack(
    content: Any,
    snapshotter: snapshots_.Snapshotter,
    snapshotter_name: str,
    applier: Applier,
    target: Descriptor,
    *,
    platform: platforms_.MatchComparer | None = None,
    fetch: Fetch | None = None,
    fetch_concurrency: int = 3,
    progress: Callable[[UnpackProgress], None] | None = None,
) -> UnpackResult:
    """Unpack the image ``target`` for ``platform`` (default: this host) into
    ``snapshotter`` (named ``snapshotter_name`` in the GC label). ``content`` is a content
    store (Provider and Manager)."""
    m = await image_.manifest(content, target, platform)
    diff_ids = await image_.rootfs(content, m.config)
    layers = [d for d in m.layers]
    if len(layers) != len(diff_ids):
        raise errdefs.FailedPrecondition(
            f"mismatched image rootfs and manifest layers: {len(diff_ids)} diff ids, "
            f"{len(layers)} layers"
        )
    chain = image_.chain_ids(diff_ids)

    # Which layers are missing: find the highest chain ID that exists.
    first_missing = 0
    for i in range(len(chain) - 1, -1, -1):
        if await _exists(snapshotter, chain[i]):
            first_missing = i + 1
            break
    skipped = first_missing
    if progress is not None:
        for i in range(first_missing):
            progress(UnpackProgress(layer=layers[i], chain_id=chain[i], status="exists"))

    fetches: list[asyncio.Task[Any]] = []
    if fetch is not None and first_missing < len(layers):
        sem = asyncio.Semaphore(max(1, fetch_concurrency))

        async def fetch_one(d: Descriptor) -> None:
            async with sem:
                await fetch(d)

        fetches = [asyncio.ensure_future(fetch_one(d)) for d in layers[first_missing:]]

    applied = 0
    try:
        for i in range(first_missing, len(layers)):
            if fetches:
                await fetches[i - first_missing]
            parent = chain[i - 1] if i > 0 else ""
            if await _extract(
                snapshotter,
                applier,
                content,
                layers[i],
                diff_ids[i],
                chain[i],
                parent,
                progress,
            ):
                applied += 1
            else:
                skipped += 1
    finally:
        for t in fetches:
            t.cancel()
        if fetches:
            await asyncio.gather(*fetches, return_exceptions=True)

    top = chain[-1] if chain else ""
    label = image_.snapshot_gc_label(snapshotter_name)
    await content.update(Info(digest=m.config.digest, labels={label: top}), [f"labels.{label}"])
    if progress is not None:
        progress(UnpackProgress(layer=None, chain_id=top, status="done"))
    log.debug(
        "unpacked %s into %s as %s (%d applied, %d present)",
        target.digest,
        snapshotter_name,
        top,
        applied,
        skipped,
    )
    return UnpackResult(config=m.config, chain_id=top, applied=applied, skipped=skipped)


async def _exists(sn: snapshots_.Snapshotter, key: str) -> bool:
    try:
        await sn.stat(key)
        return True
    except errdefs.NotFound:
        return False


async def _extract(
    sn: snapshots_.Snapshotter,
    applier: Applier,
    content: Any,
    layer: Descriptor,
    diff_id: str,
    chain_id: str,
    parent: str,
    progress: Callable[[UnpackProgress], None] | None,
) -> bool:
    """Extract one layer as ``chain_id``; False when it turned out to exist already."""
    labels = dict(snapshots_.filter_inherited_labels(layer.annotations))
    labels[snapshots_.LABEL_SNAPSHOT_REF] = chain_id
    key = ""
    mounts: Sequence[Any] = ()
    for attempt in range(3):
        key = unpack_key(chain_id)
        try:
            mounts = await sn.prepare(key, parent, labels)
            break
        except errdefs.AlreadyExists:
            if await _exists(sn, chain_id):
                return False
            log.debug("extraction snapshot %s exists, chain id %s not found", key, chain_id)
            if attempt == 2:
                raise
    if progress is not None:
        progress(UnpackProgress(layer=layer, chain_id=chain_id, status="extracting"))
    committed = False
    try:
        diff = await applier.apply(layer, mounts)
        if diff.digest != diff_id:
            raise errdefs.FailedPrecondition(
                f"wrong diff id calculated on extraction of layer {layer.digest}: "
                f"expected {diff_id}, got {diff.digest}"
            )
        try:
            await sn.commit(chain_id, key, labels)
            committed = True
        except errdefs.AlreadyExists:
            return False
    except errdefs.ContainerdError as exc:
        raise type(exc)(f"failed to extract layer {diff_id}: {exc}") from exc
    finally:
        if not committed:
            await asyncio.shield(_remove_quietly(sn, key))
    await content.update(
        Info(digest=layer.digest, labels={image_.LABEL_UNCOMPRESSED: diff.digest}),
        [f"labels.{image_.LABEL_UNCOMPRESSED}"],
    )
    if progress is not None:
        progress(UnpackProgress(layer=layer, chain_id=chain_id, status="applied", size=diff.size))
    return True


async def _remove_quietly(sn: snapshots_.Snapshotter, key: str) -> None:
    try:
        await sn.remove(key)
    except errdefs.NotFound:
        pass
    except Exception as exc:  # noqa: BLE001 - garbage collection removes it later
        log.error("failed to clean up extraction snapshot %r: %s", key, exc)
