"""Registry HTTP errors -> errdefs categories, keeping the registry's own message.

Distribution answers errors with ``{"errors": [{"code": "...", "message": "...", "detail":
...}]}``; the code and message go into the error text.
"""

from __future__ import annotations

import json
from typing import Any

from pycontainerd.core import errdefs

#: How much of an error body is read.
MAX_ERROR_BODY = 64 << 10


def registry_message(body: bytes | str) -> str:
    """``CODE: message[; CODE: message]`` from a distribution error body, or ""."""
    try:
        doc = json.loads(body)
    except (ValueError, TypeError):
        return ""
    if not isinstance(doc, dict):
        return ""
    errors = doc.get("errors")
    parts = []
    if isinstance(errors, list):
        for e in errors:
            if not isinstance(e, dict):
                continue
            code = str(e.get("code") or "").strip()
            message = str(e.get("message") or "").strip()
            text = ": ".join(x for x in (code, message) if x)
            if text:
                parts.append(text)
    elif isinstance(doc.get("details") or doc.get("error"), str):
        parts.append(str(doc.get("details") or doc.get("error")))
    return "; ".join(parts)


def category(status: int) -> type[errdefs.ContainerdError]:
    if status == 401:
        return errdefs.Unauthenticated
    if status == 403:
        return errdefs.PermissionDenied
    if status == 404:
        return errdefs.NotFound
    if status == 405:
        return errdefs.NotImplemented_
    if status in (409, 412):
        return errdefs.FailedPrecondition
    if status == 416:
        return errdefs.OutOfRange
    if status == 429 or status >= 500:
        return errdefs.Unavailable
    if status in (400, 413, 414, 422):
        return errdefs.InvalidArgument
    return errdefs.Unknown


def from_status(
    method: str, url: str, status: int, reason: str, body: bytes | str = b""
) -> errdefs.ContainerdError:
    """The categorised error for an unexpected status, naming the request."""
    msg = f"unexpected status from {method} request to {sanitize_url(url)}: {status} {reason}"
    detail = registry_message(body)
    if detail:
        msg = f"{msg}: {detail}"
    return category(status)(msg.rstrip())


async def from_response(resp: Any, method: str | None = None) -> errdefs.ContainerdError:
    """Read (a bounded part of) an aiohttp response's body and build its error. Releases
    the response."""
    try:
        body = b"" if resp.method == "HEAD" else await resp.content.read(MAX_ERROR_BODY)
    except Exception:  # a broken body does not hide the status
        body = b""
    finally:
        resp.release()
    return from_status(method or resp.method, str(resp.url), resp.status, resp.reason or "", body)


def sanitize_url(url: str) -> str:
    """Drop query parameters that may carry secrets (upload state, signed redirect URLs)."""
    base, sep, _query = url.partition("?")
    return base + ("?…" if sep else "")
