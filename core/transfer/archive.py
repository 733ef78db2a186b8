"""Archive streams as transfer sources and destinations (``ImageImportStream``,
``ImageExportStream``): an OCI/Docker archive carried over a stream of ``Data`` messages.

Import and export themselves are :mod:`pycontainerd.core.images.archive`'s; until that module
is available these types decode to NotImplemented_.
"""

from __future__ import annotations

from typing import Any


def from_any(a: Any, get_stream: Any) -> Any | None:
    """The transfer object an archive-stream ``Any`` stands for, or None for other types."""
    return None
