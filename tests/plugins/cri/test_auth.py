"""Credentials from a CRI AuthConfig, per registry host."""

from __future__ import annotations

import base64

import pytest
from cri import pb

from pycontainerd.core import errdefs
from pycontainerd.plugins.cri.images import auth


def test_no_auth_is_anonymous():
    assert auth.parse_auth(None, "r.example") == ("", "")
    assert auth.parse_auth(pb.AuthConfig(), "r.example") == ("", "")


def test_username_password_identity_token_and_auth_field():
    assert auth.parse_auth(pb.AuthConfig(username="u", password="p"), "h") == ("u", "p")
    assert auth.parse_auth(pb.AuthConfig(identity_token="tok"), "h") == ("", "tok")
    encoded = base64.b64encode(b"user:pa:ss\x00").decode()
    assert auth.parse_auth(pb.AuthConfig(auth=encoded), "h") == ("user", "pa:ss")


def test_server_address_limits_the_host():
    cfg = pb.AuthConfig(username="u", password="p", server_address="https://127.0.0.1:5000")
    assert auth.parse_auth(cfg, "127.0.0.1:5000") == ("u", "p")
    assert auth.parse_auth(cfg, "other.example") == ("", "")
    bare = pb.AuthConfig(username="u", password="p", server_address="127.0.0.1:5000")
    assert auth.parse_auth(bare, "127.0.0.1:5000") == ("u", "p")


def test_malformed_auth_field_is_invalid_argument():
    with pytest.raises(errdefs.InvalidArgument):
        auth.parse_auth(pb.AuthConfig(auth="%%%"), "h")
    with pytest.raises(errdefs.InvalidArgument, match="no"):
        auth.parse_auth(pb.AuthConfig(auth=base64.b64encode(b"nocolon").decode()), "h")


def test_registry_token_becomes_a_bearer_header_for_its_host_only():
    cfg = pb.AuthConfig(registry_token="abc", server_address="r.example")
    assert auth.registry_token_header(cfg, "r.example") == {"Authorization": "Bearer abc"}
    assert auth.registry_token_header(cfg, "other") == {}
    assert auth.registry_token_header(pb.AuthConfig(), "r.example") == {}
