"""WWW-Authenticate parsing, scope merging and registry error mapping (pure logic)."""

from __future__ import annotations

import json

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.remotes.docker import errors
from pycontainerd.core.remotes.docker.auth import (
    Challenge,
    merge_scopes,
    parse_www_authenticate,
    repository_scope,
)


@pytest.mark.parametrize(
    ("values", "want"),
    [
        (
            [
                'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                'scope="repository:library/busybox:pull"'
            ],
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://auth.docker.io/token",
                        "service": "registry.docker.io",
                        "scope": "repository:library/busybox:pull",
                    },
                )
            ],
        ),
        (['Basic realm="pycontainerd-test"'], [Challenge("basic", {"realm": "pycontainerd-test"})]),
        # two challenges in one value, unquoted and escaped values, odd spacing and case
        (
            [
                'Basic realm="a\\"b" , BEARER Realm=https://x/t, '
                'service = svc, error="invalid_token"'
            ],
            [
                Challenge("basic", {"realm": 'a"b'}),
                Challenge(
                    "bearer", {"realm": "https://x/t", "service": "svc", "error": "invalid_token"}
                ),
            ],
        ),
        # several header values
        (
            ['Basic realm="r"', 'Bearer realm="t"'],
            [Challenge("basic", {"realm": "r"}), Challenge("bearer", {"realm": "t"})],
        ),
        (["Negotiate"], [Challenge("negotiate", {})]),
        ([""], []),
    ],
)
def test_parse_www_authenticate(values: list[str], want: list[Challenge]) -> None:
    assert parse_www_authenticate(values) == want


def test_scope_with_commas_and_colons_stays_whole() -> None:
    (c,) = parse_www_authenticate(
        ['Bearer realm="r",scope="repository:a/b:pull,push repository:c:pull"']
    )
    assert c.params["scope"] == "repository:a/b:pull,push repository:c:pull"


def test_merge_scopes_merges_actions_per_resource_and_sorts() -> None:
    assert merge_scopes(
        ["repository:a:pull"], ["repository:a:push repository:b:pull", "registry:catalog:*"]
    ) == ("registry:catalog:*", "repository:a:pull,push", "repository:b:pull")
    assert merge_scopes([], []) == ()
    assert repository_scope("x/y") == "repository:x/y:pull"
    assert repository_scope("x/y", push=True) == "repository:x/y:pull,push"


@pytest.mark.parametrize(
    ("status", "category"),
    [
        (401, errdefs.Unauthenticated),
        (403, errdefs.PermissionDenied),
        (404, errdefs.NotFound),
        (405, errdefs.NotImplemented_),
        (416, errdefs.OutOfRange),
        (429, errdefs.Unavailable),
        (500, errdefs.Unavailable),
        (503, errdefs.Unavailable),
        (400, errdefs.InvalidArgument),
        (418, errdefs.Unknown),
    ],
)
def test_status_categories(status: int, category: type[errdefs.ContainerdError]) -> None:
    body = json.dumps({"errors": [{"code": "SOME_CODE", "message": "what went wrong"}]})
    err = errors.from_status("GET", "http://r/v2/x/manifests/t?_state=secret", status, "R", body)
    assert type(err) is category
    assert "SOME_CODE: what went wrong" in str(err)
    assert "secret" not in str(err)


def test_registry_message_tolerates_other_bodies() -> None:
    assert errors.registry_message(b"<html>oops</html>") == ""
    assert errors.registry_message(b"[]") == ""
    two = {"errors": [{"code": "A", "message": "one"}, {"code": "B", "message": "two"}]}
    assert errors.registry_message(json.dumps(two)) == "A: one; B: two"
    assert errors.registry_message(json.dumps({"details": "token expired"})) == "token expired"
