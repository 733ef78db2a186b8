from __future__ import annotations

import attrs
import pytest

from pycontainerd.core import filters
from pycontainerd.core.content import Descriptor, Info, Status
from pycontainerd.core.content.adaptors import adapt_info, adapt_status
from pycontainerd.core.plugin.context import Platform


def test_descriptor_round_trips_oci_json() -> None:
    raw = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": "sha256:" + "a" * 64,
        "size": 7,
        "urls": ["https://example.com/x"],
        "annotations": {"k": "v"},
        "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
    }
    desc = Descriptor.from_dict(raw)
    assert desc.platform == Platform(os="linux", architecture="arm64", variant="v8")
    assert desc.urls == ("https://example.com/x",)
    assert desc.to_dict() == raw


def test_descriptor_json_omits_empty_optional_fields() -> None:
    assert Descriptor(digest="sha256:" + "b" * 64).to_dict() == {
        "mediaType": "",
        "digest": "sha256:" + "b" * 64,
        "size": 0,
    }


def test_values_are_frozen() -> None:
    info = Info(digest="sha256:" + "c" * 64, labels={"a": "b"})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        info.size = 3  # type: ignore[misc]
    assert attrs.evolve(info, size=3).size == 3


def test_info_filters_match_digest_and_dotted_labels() -> None:
    info = Info(digest="sha256:" + "d" * 64, labels={"io.example/key": "v"})
    assert filters.parse_all([f"digest=={info.digest}"]).match(adapt_info(info))
    assert filters.parse_all(['labels."io.example/key"==v']).match(adapt_info(info))
    assert not filters.parse_all(["labels.other"]).match(adapt_info(info))
    assert not filters.parse_all(["size==0"]).match(adapt_info(info))


def test_status_filters_match_ref() -> None:
    st = Status(ref="layer-1")
    assert filters.parse_all(["ref==layer-1"]).match(adapt_status(st))
    assert filters.parse_all(["ref~=^layer-"]).match(adapt_status(st))
    assert not filters.parse_all(["ref==layer-2"]).match(adapt_status(st))
