"""The request cache behind streaming URLs: single-use random tokens with a short life.

As kubelet's streaming server: a token is 8 characters of URL-safe base64 from crypto-random
bytes, lives one minute, is consumed by its first use, and at most 1000 are in flight (expired
ones are dropped first; past that, ResourceExhausted).
"""

from __future__ import annotations

import base64
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import attrs

from pycontainerd.core import errdefs

TOKEN_LEN = 8
DEFAULT_TTL = 60.0
DEFAULT_MAX_IN_FLIGHT = 1000


@attrs.define(eq=False)
class RequestCache:
    ttl: float = DEFAULT_TTL
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    clock: Callable[[], float] = time.monotonic
    # token -> (expiry, request); insertion order is expiry order
    _entries: OrderedDict[str, tuple[float, Any]] = attrs.field(factory=OrderedDict, init=False)

    def __len__(self) -> int:
        return len(self._entries)

    def insert(self, request: Any) -> str:
        """Store ``request``; its token. ResourceExhausted when too many are in flight."""
        self._gc()
        if len(self._entries) >= self.max_in_flight:
            raise errdefs.ResourceExhausted("maximum number of in-flight requests exceeded")
        token = self._unique_token()
        self._entries[token] = (self.clock() + self.ttl, request)
        return token

    def consume(self, token: str) -> Any | None:
        """The request for ``token``, removing it; None if unknown, used or expired."""
        entry = self._entries.pop(token, None)
        if entry is None:
            return None
        expiry, request = entry
        if self.clock() > expiry:
            return None
        return request

    def _unique_token(self) -> str:
        nbytes = -(-TOKEN_LEN * 6 // 8)  # enough random bytes for TOKEN_LEN base64 characters
        for _ in range(10):
            token = base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).decode()[:TOKEN_LEN]
            if token not in self._entries:
                return token
        raise errdefs.Internal("failed to generate unique token")

    def _gc(self) -> None:
        now = self.clock()
        while self._entries:
            token, (expiry, _) = next(iter(self._entries.items()))
            if now <= expiry:
                return
            del self._entries[token]
