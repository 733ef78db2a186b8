"""The CRI image index: references to IDs, lookups by full and truncated ID, moving and
dropping references, pinning."""

from __future__ import annotations

import pytest

from pycontainerd.core import errdefs
from pycontainerd.plugins.cri.images.store import Image, ImageIndex

ID_A = "sha256:" + "ab" * 32
ID_B = "sha256:" + "ac" * 32
TAG = "docker.io/library/busybox:latest"
DREF = "docker.io/library/busybox@sha256:" + "d" * 64


async def _no_records(name: str):
    raise errdefs.NotFound(name)


def index() -> ImageIndex:
    return ImageIndex(_no_records, None)


def img(id_: str, ref: str, *, pinned: bool = False) -> Image:
    return Image(id=id_, references=(ref,), size=10, pinned=pinned)


def test_references_of_one_image_merge_sorted():
    ix = index()
    for ref in (ID_A, DREF, TAG):
        ix.apply(ref, img(ID_A, ref))
    assert len(ix) == 1
    assert ix.get(ID_A).references == (TAG, DREF, ID_A)
    assert ix.resolve(TAG) == ID_A


@pytest.mark.parametrize("query", [ID_A, "sha256:abab", "ababab", "ab" * 32])
def test_get_by_full_or_truncated_id(query):
    ix = index()
    ix.apply(TAG, img(ID_A, TAG))
    ix.apply("x:1", img(ID_B, "x:1"))
    assert ix.get(query).id == ID_A


def test_ambiguous_prefix_is_invalid_argument_and_unknown_is_not_found():
    ix = index()
    ix.apply(TAG, img(ID_A, TAG))
    ix.apply("x:1", img(ID_B, "x:1"))
    with pytest.raises(errdefs.InvalidArgument, match="ambiguous"):
        ix.get("a")
    for query in ("sha256:ff", "busybox", "", "md5:abab"):
        with pytest.raises(errdefs.NotFound):
            ix.get(query)
    with pytest.raises(errdefs.NotFound):
        ix.resolve("docker.io/library/nope:latest")


def test_dropping_the_last_reference_drops_the_image():
    ix = index()
    ix.apply(TAG, img(ID_A, TAG))
    ix.apply(ID_A, img(ID_A, ID_A))
    ix.apply(TAG, None)
    assert ix.get(ID_A).references == (ID_A,)
    ix.apply(ID_A, None)
    assert len(ix) == 0
    with pytest.raises(errdefs.NotFound):
        ix.get("abab")
    ix.apply(ID_A, None)  # nothing left to drop


def test_a_tag_moved_to_another_image_leaves_the_old_one():
    ix = index()
    ix.apply(ID_A, img(ID_A, ID_A))
    ix.apply(TAG, img(ID_A, TAG))
    ix.apply(TAG, img(ID_B, TAG))
    assert ix.get(ID_A).references == (ID_A,)
    assert ix.get(ID_B).references == (TAG,)
    assert ix.resolve(TAG) == ID_B


def test_pinned_follows_the_pinned_references():
    ix = index()
    ix.apply(TAG, img(ID_A, TAG, pinned=True))
    ix.apply(ID_A, img(ID_A, ID_A))
    assert ix.get(ID_A).pinned
    ix.apply(TAG, img(ID_A, TAG, pinned=False))
    assert not ix.get(ID_A).pinned
    ix.apply(TAG, img(ID_A, TAG, pinned=True))
    ix.apply(TAG, None)
    assert not ix.get(ID_A).pinned


async def test_update_of_a_missing_record_drops_the_reference():
    ix = index()
    ix.apply(TAG, img(ID_A, TAG))
    await ix.update(TAG)
    assert ix.list() == []


def test_user_comes_from_the_config():
    assert Image(id=ID_A, spec={"config": {"User": "1000:100"}}).user == "1000:100"
    assert Image(id=ID_A, spec={}).user == ""
