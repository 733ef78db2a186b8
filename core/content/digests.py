"""Digest strings (``"<algorithm>:<hex>"``): validation, parsing and hashing helpers.

Digests travel as plain strings, as in containerd's API (``sha256:<64 hex>``). Anything
malformed that crosses an API boundary is refused with InvalidArgument.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from pycontainerd.core import errdefs

#: The algorithm used when none is given (go-digest's ``digest.Canonical``).
CANONICAL = "sha256"

#: Supported algorithms and the length of their lowercase hex encoding.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha384": 96, "sha512": 128}

_ALGORITHM = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*$")
_HEX = re.compile(r"^[a-f0-9]+$")


def parse(dgst: str) -> tuple[str, str]:
    """Split ``dgst`` into (algorithm, hex); InvalidArgument when it is not a valid digest."""
    if not isinstance(dgst, str) or not dgst:
        raise errdefs.InvalidArgument("invalid digest: empty")
    alg, sep, encoded = dgst.partition(":")
    if not sep or not alg or not encoded:
        raise errdefs.InvalidArgument(f"invalid digest {dgst!r}: missing algorithm or encoded part")
    if not _ALGORITHM.match(alg):
        raise errdefs.InvalidArgument(f"invalid digest {dgst!r}: malformed algorithm")
    size = ALGORITHMS.get(alg)
    if size is None:
        raise errdefs.InvalidArgument(f"invalid digest {dgst!r}: unsupported algorithm {alg!r}")
    if len(encoded) != size or not _HEX.match(encoded):
        raise errdefs.InvalidArgument(
            f"invalid digest {dgst!r}: {alg} needs {size} lowercase hex characters"
        )
    return alg, encoded


def validate(dgst: str) -> str:
    """Return ``dgst`` unchanged if valid; InvalidArgument otherwise."""
    parse(dgst)
    return dgst


def is_valid(dgst: str) -> bool:
    try:
        parse(dgst)
    except errdefs.InvalidArgument:
        return False
    return True


def algorithm(dgst: str) -> str:
    return parse(dgst)[0]


def encoded(dgst: str) -> str:
    return parse(dgst)[1]


def new_hash(alg: str = CANONICAL) -> Any:
    """A fresh hashlib object for ``alg`` (InvalidArgument for unsupported algorithms)."""
    if alg not in ALGORITHMS:
        raise errdefs.InvalidArgument(f"unsupported digest algorithm {alg!r}")
    return hashlib.new(alg)


def from_hash(alg: str, h: Any) -> str:
    """The digest string of a hashlib object's current state."""
    return f"{alg}:{h.hexdigest()}"


def from_bytes(data: bytes | bytearray | memoryview, alg: str = CANONICAL) -> str:
    """The digest of ``data`` (for small, in-memory blobs; hash large data in a thread)."""
    h = new_hash(alg)
    h.update(data)
    return from_hash(alg, h)
