"""Filter adaptors for content values: ``fieldpath -> (value, present)`` for
``pycontainerd.core.filters`` (``Filter.match``). Info fields: ``digest``, ``labels.<key>``
(size is not filterable, as in containerd). Status fields: ``ref``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pycontainerd.core import filters
from pycontainerd.core.content.types import Info, Status

Adaptor = Callable[[Sequence[str]], tuple[str, bool]]


def adapt_info(info: Info) -> Adaptor:
    def adaptor(fieldpath: Sequence[str]) -> tuple[str, bool]:
        if not fieldpath:
            return "", False
        if fieldpath[0] == "digest":
            return info.digest, True
        if fieldpath[0] == "labels":
            return filters.adapt_labels(fieldpath[1:], info.labels)
        return "", False

    return adaptor


def adapt_status(status: Status) -> Adaptor:
    def adaptor(fieldpath: Sequence[str]) -> tuple[str, bool]:
        if fieldpath and fieldpath[0] == "ref":
            return status.ref, True
        return "", False

    return adaptor
