"""Tab-aligned tables like Go's tabwriter as ctr uses it (padding 4)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO


def print_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    out: TextIO | None = None,
    padding: int = 4,
) -> None:
    out = out or sys.stdout
    all_rows = [list(header), *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(header))]
    for r in all_rows:
        cells = (c.ljust(w + padding) for c, w in zip(r, widths, strict=False))
        out.write("".join(cells).rstrip() + "\n")
