"""The diff contract: protocols a differ satisfies, config values, layer media types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from pycontainerd.core.diff import (
    MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_LAYER,
    MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_LAYER_ZSTD,
    Applier,
    ApplyConfig,
    Comparer,
    DiffConfig,
    Differ,
    layer_compression,
)


class _OnlyApply:
    async def apply(self, desc: Any, mounts: Sequence[Any], config: Any = None) -> Any:
        return desc


class _Both(_OnlyApply):
    async def compare(self, lower: Sequence[Any], upper: Sequence[Any], config: Any = None) -> Any:
        return None


def test_protocols_distinguish_appliers_comparers_and_differs() -> None:
    assert isinstance(_OnlyApply(), Applier)
    assert not isinstance(_OnlyApply(), Comparer)
    assert not isinstance(_OnlyApply(), Differ)
    assert isinstance(_Both(), Differ)


def test_configs_are_frozen_values_with_copied_labels() -> None:
    labels = {"a": "b"}
    cfg = DiffConfig(media_type=MEDIA_TYPE_LAYER_GZIP, labels=labels)
    labels["c"] = "d"
    assert cfg.labels == {"a": "b"}
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cfg.media_type = "x"  # type: ignore[misc]
    assert ApplyConfig().sync_fs is False and ApplyConfig().progress is None


@pytest.mark.parametrize(
    ("media_type", "compression"),
    [
        (MEDIA_TYPE_LAYER, "uncompressed"),
        (MEDIA_TYPE_LAYER_GZIP, "gzip"),
        (MEDIA_TYPE_LAYER_ZSTD, "zstd"),
        (MEDIA_TYPE_DOCKER_LAYER_GZIP, "gzip"),
        ("application/vnd.oci.image.layer.v1.tar+gzip+encrypted", None),
        ("application/vnd.oci.image.config.v1+json", None),
    ],
)
def test_layer_compression_of_media_types(media_type: str, compression: str | None) -> None:
    assert layer_compression(media_type) == compression
