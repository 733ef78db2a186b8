"""Entry point of ``containerd-shim-pyrunc-v2`` (filled in by the runtime work)."""

from __future__ import annotations

import sys


def main() -> int:
    print("containerd-shim-pyrunc-v2: not built yet", file=sys.stderr)
    return 1
