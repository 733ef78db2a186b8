"""Image graph helpers: children of indexes and manifests, platform filtering, GC labels,
ingest refs, bounded dispatch."""

from __future__ import annotations

import asyncio
import json

import pytest

from pycontainerd.core import errdefs, platforms
from pycontainerd.core.content import Descriptor
from pycontainerd.core.images import mediatypes as mt
from pycontainerd.core.platforms import Platform
from pycontainerd.core.remotes import handlers


def d(n: int, media_type: str = mt.OCI_MANIFEST, platform: str | None = None) -> Descriptor:
    return Descriptor(
        media_type=media_type,
        digest=f"sha256:{n:064x}",
        size=n,
        platform=platforms.parse(platform) if platform else None,
    )


def test_children_of_an_index_keep_platforms() -> None:
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            d(1, platform="linux/amd64").to_dict(),
            d(2, mt.DOCKER_MANIFEST, platform="linux/arm/v7").to_dict(),
        ],
    }
    kids = handlers.children(d(9, mt.OCI_INDEX), json.dumps(index).encode())
    assert [k.digest for k in kids] == [d(1).digest, d(2).digest]
    assert kids[1].platform == Platform(os="linux", architecture="arm", variant="v7")
    # a Docker manifest list has the same shape
    lst = dict(index, mediaType=mt.DOCKER_MANIFEST_LIST)
    assert len(handlers.children(d(9, mt.DOCKER_MANIFEST_LIST), json.dumps(lst).encode())) == 2


def test_children_of_a_manifest_are_config_then_layers() -> None:
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": d(3, mt.DOCKER_CONFIG).to_dict(),
        "layers": [d(4, mt.DOCKER_LAYER_GZIP).to_dict(), d(5, mt.DOCKER_LAYER_GZIP).to_dict()],
    }
    kids = handlers.children(d(9, mt.DOCKER_MANIFEST), json.dumps(manifest).encode())
    assert [k.media_type for k in kids] == [mt.DOCKER_CONFIG] + [mt.DOCKER_LAYER_GZIP] * 2
    assert handlers.gc_labels(d(9, mt.DOCKER_MANIFEST), kids) == {
        "containerd.io/gc.ref.content.config": d(3).digest,
        "containerd.io/gc.ref.content.l.0": d(4).digest,
        "containerd.io/gc.ref.content.l.1": d(5).digest,
    }
    assert handlers.children(d(3, mt.OCI_CONFIG), b"{}") == []
    assert handlers.children(d(4, mt.OCI_LAYER_GZIP), b"\x1f\x8b") == []


@pytest.mark.parametrize(
    ("media_type", "data"),
    [
        (mt.OCI_MANIFEST, b"not json"),
        (mt.OCI_MANIFEST, b"[]"),
        (mt.OCI_MANIFEST, b'{"layers": []}'),
        (mt.OCI_INDEX, json.dumps({"mediaType": mt.OCI_MANIFEST, "manifests": []}).encode()),
        (mt.OCI_INDEX, b'{"manifests": [{"size": "big"}]}'),
    ],
)
def test_children_refuses_malformed_documents(media_type: str, data: bytes) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        handlers.children(d(9, media_type), data)


def test_gc_labels_of_an_index() -> None:
    kids = [d(1), d(2)]
    assert handlers.gc_labels(d(9, mt.OCI_INDEX), kids) == {
        "containerd.io/gc.ref.content.m.0": d(1).digest,
        "containerd.io/gc.ref.content.m.1": d(2).digest,
    }


def test_filter_platforms_best_first_limit_and_unplatformed() -> None:
    kids = [
        d(1, platform="linux/arm/v6"),
        d(2, platform="linux/s390x"),
        d(3, platform="linux/arm/v7"),
        d(4, platform="linux/arm64"),
        d(5),  # e.g. an attestation manifest without a platform
    ]
    arm64 = platforms.only(platforms.parse("linux/arm64"))
    got = handlers.filter_platforms(kids, arm64)
    assert [k.size for k in got] == [4, 3, 1, 5]
    assert [k.size for k in handlers.filter_platforms(kids, arm64, limit=1)] == [4]
    assert [k.size for k in handlers.filter_platforms(kids, platforms.ALL)] == [1, 2, 3, 4, 5]
    none = platforms.only(platforms.parse("windows/amd64"))
    assert [k.size for k in handlers.filter_platforms(kids, none)] == [5]


def test_ref_keys_by_kind() -> None:
    assert handlers.ref_key(d(1, mt.OCI_INDEX)).startswith("index-sha256:")
    assert handlers.ref_key(d(1, mt.DOCKER_MANIFEST)).startswith("manifest-")
    assert handlers.ref_key(d(1, mt.OCI_CONFIG)).startswith("config-")
    assert handlers.ref_key(d(1, mt.OCI_LAYER_ZSTD)).startswith("layer-")
    assert handlers.ref_key(d(1, "application/x-other")).startswith("unknown-")


async def test_dispatch_walks_children_within_the_limit() -> None:
    graph = {1: [2, 3, 4], 2: [5, 6], 3: [7], 4: [], 5: [], 6: [], 7: []}
    running = 0
    peak = 0
    seen: list[int] = []

    async def handler(desc: Descriptor) -> list[Descriptor]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        seen.append(desc.size)
        return [d(n) for n in graph[desc.size]]

    await handlers.dispatch(handler, [d(1)], limit=2)
    assert sorted(seen) == [1, 2, 3, 4, 5, 6, 7]
    assert seen[0] == 1
    assert peak == 2


async def test_dispatch_raises_the_first_error_unwrapped() -> None:
    async def handler(desc: Descriptor) -> list[Descriptor]:
        if desc.size == 2:
            raise errdefs.NotFound("blob 2 missing")
        await asyncio.sleep(0.05 if desc.size == 3 else 0)
        return [d(2), d(3)] if desc.size == 1 else []

    with pytest.raises(errdefs.NotFound, match="blob 2 missing"):
        await handlers.dispatch(handler, [d(1)], limit=4)
