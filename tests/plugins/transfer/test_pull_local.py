"""Pulls through the local transfer service against a real docker-registry."""

from __future__ import annotations

import pytest

from pycontainerd.core import namespaces, platforms
from pycontainerd.core.transfer import Progress, UnpackConfiguration
from pycontainerd.core.transfer.imagestore import ImageStore
from pycontainerd.core.transfer.registry import OCIRegistry

pytestmark = [pytest.mark.integration, pytest.mark.root]


async def test_pull_by_tag_fetches_labels_unpacks_and_records(transfer_daemon, registry, busybox):
    registry.push(busybox)
    ref = registry.ref("library/busybox")
    events: list[Progress] = []
    with namespaces.use("default"):
        await transfer_daemon.transfer.transfer(
            OCIRegistry(reference=ref, default_scheme="http"),
            ImageStore(
                name=ref,
                platforms=[platforms.default_spec()],
                unpacks=[UnpackConfiguration(snapshotter="native")],
            ),
            progress=events.append,
        )
        md = transfer_daemon.metadata
        img = await md.images.get(ref)
        assert img.target.digest == busybox.digest
        info = await md.content_store.info(busybox.manifest.digest)
        assert info.labels["containerd.io/gc.ref.content.config"] == busybox.config.digest
        assert (
            info.labels[f"containerd.io/distribution.source.{registry.host}"] == "library/busybox"
        )
        cfg = await md.content_store.info(busybox.config.digest)
        chain = cfg.labels["containerd.io/gc.ref.snapshot.native"]
        await md.snapshotter("native").stat(chain)
    kinds = [e.event for e in events]
    assert "saved" in kinds and any(k.startswith("Completed pull") for k in kinds)
