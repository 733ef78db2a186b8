"""Reference forms the CRI reports and records: repo tags vs repo digests, ordering, and the
records a pull creates."""

from __future__ import annotations

from pycontainerd.core import reference
from pycontainerd.plugins.cri.images import refs

DIGEST = "sha256:" + "a" * 64
ID = "sha256:" + "b" * 64


def test_tags_digests_and_ids_are_told_apart():
    tags, digests = refs.repo_tags_and_digests(
        [
            "docker.io/library/busybox:latest",
            f"docker.io/library/busybox@{DIGEST}",
            ID,
            "b" * 64,
            "not a reference!",
        ]
    )
    assert tags == ["docker.io/library/busybox:latest"]
    assert digests == [f"docker.io/library/busybox@{DIGEST}"]


def test_a_reference_with_tag_and_digest_is_a_repo_digest():
    tags, digests = refs.repo_tags_and_digests([f"example.com/app:v1@{DIGEST}"])
    assert tags == [] and digests == [f"example.com/app:v1@{DIGEST}"]


def test_sort_puts_tags_before_digest_refs_before_ids():
    given = [
        ID,
        f"docker.io/library/busybox@{DIGEST}",
        "docker.io/library/busybox:latest",
        "docker.io/library/alpine:3",
        "docker.io/library/alpine:3",
    ]
    assert refs.sort_references(given) == [
        "docker.io/library/alpine:3",
        "docker.io/library/busybox:latest",
        f"docker.io/library/busybox@{DIGEST}",
        ID,
    ]


def test_pull_of_a_tag_records_the_tag_and_a_digest_ref():
    named = reference.parse_docker_ref("busybox")
    assert refs.repo_digest_and_tag(named, DIGEST) == (
        f"docker.io/library/busybox@{DIGEST}",
        "docker.io/library/busybox:latest",
    )


def test_pull_by_digest_records_no_tag():
    named = reference.parse_docker_ref(f"127.0.0.1:5000/app:v1@{DIGEST}")
    assert refs.repo_digest_and_tag(named, DIGEST) == (f"127.0.0.1:5000/app@{DIGEST}", "")


def test_is_digest():
    assert refs.is_digest(ID)
    assert not refs.is_digest("b" * 64)
    assert not refs.is_digest("sha256:abc")
    assert not refs.is_digest("busybox")
