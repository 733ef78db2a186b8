from __future__ import annotations

import hashlib

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.content import digests

_HEX = hashlib.sha256(b"x").hexdigest()


def test_parse_splits_algorithm_and_hex() -> None:
    assert digests.parse(f"sha256:{_HEX}") == ("sha256", _HEX)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        _HEX,
        f"sha256{_HEX}",
        "sha256:",
        ":" + _HEX,
        f"sha256:{_HEX[:-1]}",
        f"sha256:{_HEX}0",
        f"sha256:{_HEX.upper()}",
        f"SHA256:{_HEX}",
        "md5:" + hashlib.md5(b"x").hexdigest(),
        f"sha512:{_HEX}",
        f"sha256:{_HEX[:-1]}g",
    ],
)
def test_malformed_digest_is_invalid_argument(bad: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        digests.validate(bad)
    assert not digests.is_valid(bad)


def test_from_bytes_uses_requested_algorithm() -> None:
    assert digests.from_bytes(b"x") == f"sha256:{_HEX}"
    assert digests.from_bytes(b"x", "sha512") == "sha512:" + hashlib.sha512(b"x").hexdigest()
    assert digests.is_valid(digests.from_bytes(b"x", "sha384"))
    with pytest.raises(errdefs.InvalidArgument):
        digests.from_bytes(b"x", "md5")
