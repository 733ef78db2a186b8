from __future__ import annotations

import pytest

from pycontainerd.core import errdefs, reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("given", "want"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("team/app", "docker.io/team/app:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/team/app:v2", "docker.io/team/app:v2"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("127.0.0.1:5000/a/b/c:v1", "127.0.0.1:5000/a/b/c:v1"),
        ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
        ("Host/app", "Host/app:latest"),
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
        # both tag and digest: the digest decides, the tag is dropped (as CRI)
        (f"busybox:1.36@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
        ("[::1]:5000/app", "[::1]:5000/app:latest"),
        ("a__b-c/e---f.g:T_a.g-1", "docker.io/a__b-c/e---f.g:T_a.g-1"),
        ("a.b/c", "a.b/c:latest"),
    ],
)
def test_normalize(given: str, want: str) -> None:
    assert reference.normalize(given) == want


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "Busybox",
        "docker.io/Library/busybox",
        "busybox:",
        "busybox@sha256:abc",
        "busybox@sha256:" + "AB" * 32,
        "busybox@md5:" + "ab" * 32,
        ":tag",
        "a/",
        "a//b",
        "-a",
        "a:" + "t" * 129,
        "ab" * 32,
        "x/" + "a" * 260,
        "busybox:la test",
    ],
)
def test_invalid_references_are_invalid_argument(bad: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        reference.parse_docker_ref(bad)


def test_parts_and_familiar_form() -> None:
    r = reference.parse_docker_ref("127.0.0.1:5000/team/app:v1")
    assert (r.domain, r.path, r.tag, r.digest) == ("127.0.0.1:5000", "team/app", "v1", "")
    assert r.name == "127.0.0.1:5000/team/app"
    assert r.hostname == "127.0.0.1:5000"
    assert r.object == "v1"
    assert r.familiar() == "127.0.0.1:5000/team/app:v1"
    hub = reference.parse_docker_ref("busybox")
    assert hub.familiar() == "busybox:latest"
    assert reference.parse_docker_ref("team/app").familiar() == "team/app:latest"
    # library with a nested path stays qualified by its namespace
    assert reference.parse_docker_ref("library/a/b").familiar() == "library/a/b:latest"


def test_strict_parse_does_not_normalise() -> None:
    r = reference.parse("busybox:1")
    assert (r.domain, r.path, r.tag) == ("", "busybox", "1")
    assert str(r) == "busybox:1"
    r = reference.parse(f"quay.io/x/y:t@{DIGEST}")
    assert r.object == f"t@{DIGEST}"
    assert str(r) == f"quay.io/x/y:t@{DIGEST}"


def test_uppercase_message_says_lowercase() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="lowercase"):
        reference.parse_normalized("docker.io/Team/app")


def test_with_tag_and_digest_validate() -> None:
    r = reference.parse_docker_ref("busybox")
    assert str(r.with_tag("v2")) == "docker.io/library/busybox:v2"
    assert str(r.with_digest(DIGEST)).endswith("@" + DIGEST)
    with pytest.raises(errdefs.InvalidArgument):
        r.with_tag("bad tag")
    with pytest.raises(errdefs.InvalidArgument):
        r.with_digest("nope")


def test_identifier() -> None:
    assert reference.is_identifier("ab" * 32)
    assert not reference.is_identifier("busybox")
