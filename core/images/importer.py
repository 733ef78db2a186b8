"""Import an image archive and unpack it, as ``ctr images import`` does with containerd's
client: everything under a temporary lease (labelled ``containerd.io/gc.expire`` = now + 24h,
deleted at the end), so that nothing the import wrote is collected before the images and GC
labels that keep it exist, and whatever nothing keeps is collected afterwards.

:class:`Importer` works over the core contracts only, so the same code runs in process (the
metadata stores and a local applier) and client-side over gRPC (``pyctr``'s remote stores,
which forward the lease as ``containerd-lease``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO

import attrs

from pycontainerd.core import leases as leases_
from pycontainerd.core import platforms as platforms_
from pycontainerd.core import snapshots as snapshots_
from pycontainerd.core.diff import Applier
from pycontainerd.core.images import archive
from pycontainerd.core.metadata.images import Image
from pycontainerd.core.unpack import UnpackProgress, UnpackResult, unpack

log = logging.getLogger(__name__)

#: How long a client lease protects its resources if the client dies before deleting it.
LEASE_EXPIRY = datetime.timedelta(hours=24)


def random_lease_id() -> str:
    return f"{time.time_ns()}-{base64.urlsafe_b64encode(os.urandom(6)).decode()}"


@contextlib.asynccontextmanager
async def temporary_lease(
    manager: Any, *, expire: datetime.timedelta = LEASE_EXPIRY
) -> AsyncIterator[str]:
    """Create a lease (``containerd.io/gc.expire`` = now + ``expire``), make it current, and
    delete it on exit. An already current lease is used as is."""
    current = leases_.get()
    if current:
        yield current
        return
    when = datetime.datetime.now(datetime.UTC) + expire
    lease = await manager.create(
        random_lease_id(),
        {leases_.LABEL_GC_EXPIRE: when.strftime("%Y-%m-%dT%H:%M:%SZ")},
    )
    try:
        with leases_.use(lease.id):
            yield lease.id
    finally:
        try:
            await manager.delete(lease.id)
        except Exception as exc:  # noqa: BLE001 - it expires anyway
            log.warning("failed to delete lease %s: %s", lease.id, exc)


@attrs.frozen(kw_only=True)
class Imported:
    image: Image
    #: None when not unpacked (``unpack=False``, or no manifest for the unpack platform)
    unpacked: UnpackResult | None = None


@attrs.define(eq=False, kw_only=True)
class Importer:
    """The services an import needs: ``content`` (content Store), ``images`` (image store),
    ``leases`` (lease Manager), ``snapshotter(name)`` -> Snapshotter, ``applier``."""

    content: Any
    images: Any
    leases: Any
    snapshotter: Callable[[str], snapshots_.Snapshotter]
    applier: Applier

    async def import_archive(
        self,
        stream: BinaryIO,
        options: archive.ImportOptions | None = None,
        *,
        unpack_into: str | None = "overlayfs",
        progress: archive.Progress | None = None,
        unpack_progress: Callable[[Image, UnpackProgress], None] | None = None,
        on_image: Callable[[Image], None] | None = None,
    ) -> list[Imported]:
        """Import ``stream`` and unpack each image for this host's platform (or the import
        platform) into snapshotter ``unpack_into`` (None: no unpack)."""
        opts = options or archive.ImportOptions()
        out: list[Imported] = []
        async with temporary_lease(self.leases):
            imgs = await archive.import_images(
                self.content, self.images, stream, opts, progress=progress
            )
            matcher = opts.platform or platforms_.default()
            for img in imgs:
                if on_image is not None:
                    on_image(img)
                result = None
                if unpack_into:
                    sn = self.snapshotter(unpack_into)
                    cb = None
                    if unpack_progress is not None:
                        cb = _bind(unpack_progress, img)
                    result = await unpack(
                        self.content,
                        sn,
                        unpack_into,
                        self.applier,
                        img.target,
                        platform=matcher,
                        progress=cb,
                    )
                out.append(Imported(image=img, unpacked=result))
        return out


def _bind(
    fn: Callable[[Image, UnpackProgress], None], img: Image
) -> Callable[[UnpackProgress], None]:
    return lambda p: fn(img, p)
