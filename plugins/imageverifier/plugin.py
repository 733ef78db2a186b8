"""Registration of ``io.containerd.image-verifier.v1.bindir``: the programs in ``bin_dir``
approve or refuse every pull made through the transfer service."""

from __future__ import annotations

from typing import Any

import attrs

from pycontainerd.core import durations
from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types

#: Where containerd looks for verifier programs on Unix.
DEFAULT_BIN_DIR = "/opt/containerd/image-verifier/bin"


@attrs.define(kw_only=True)
class Config:
    #: directory whose entries are run, in name order, for each pull
    bin_dir: str = DEFAULT_BIN_DIR
    #: run at most this many of them (negative: all)
    max_verifiers: int = 10
    #: time one verifier may take before its process group is killed (Go duration)
    per_verifier_timeout: str = attrs.field(default="10s", validator=durations.validate)


async def _init(ic: InitContext) -> Any:
    from pycontainerd.plugins.imageverifier.bindir import BinDirVerifier

    config: Config = ic.config
    return BinDirVerifier(
        bin_dir=config.bin_dir,
        max_verifiers=config.max_verifiers,
        per_verifier_timeout=durations.parse(config.per_verifier_timeout),
    )


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [Registration(type=types.IMAGE_VERIFIER, id="bindir", config=Config, init=_init)]
