"""Registry credentials from a CRI ``AuthConfig`` (containerd's ``ParseAuth``)."""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from typing import Any

from pycontainerd.core import errdefs


def server_host(server_address: str) -> str:
    """The ``host[:port]`` of an auth config's ``server_address`` (a URL, or a bare host, which
    containerd's url.Parse would reject or read as a path)."""
    text = server_address if "://" in server_address else "dummy://" + server_address
    try:
        return urllib.parse.urlsplit(text).netloc
    except ValueError as e:
        raise errdefs.InvalidArgument(f"parse server address {server_address!r}: {e}") from None


def applies_to(auth: Any, host: str) -> bool:
    """Whether ``auth`` may be sent to ``host`` (no ``server_address``: any host)."""
    address = getattr(auth, "server_address", "")
    return not address or server_host(address) == host


def parse_auth(auth: Any, host: str) -> tuple[str, str]:
    """``(username, secret)`` for ``host`` from a ``runtime.v1.AuthConfig`` (or None): the
    username and password; an identity token (empty username); or the decoded ``auth``
    (``base64(user:password)``). Nothing when the config names another server."""
    if auth is None or not applies_to(auth, host):
        return "", ""
    if auth.username:
        return auth.username, auth.password
    if auth.identity_token:
        return "", auth.identity_token
    if auth.auth:
        try:
            decoded = base64.b64decode(auth.auth, validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError) as e:
            raise errdefs.InvalidArgument(f"invalid auth: {e}") from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise errdefs.InvalidArgument('invalid decoded auth: no ":" between user and password')
        return user, password.strip("\x00")
    return "", ""


def registry_token_header(auth: Any, host: str) -> dict[str, str]:
    """An ``Authorization: Bearer`` header for a ``registry_token`` (containerd ignores the
    field; kubelet's credential providers may hand one out)."""
    if auth is None or not getattr(auth, "registry_token", "") or not applies_to(auth, host):
        return {}
    return {"Authorization": f"Bearer {auth.registry_token}"}
