"""Filter adaptors for content values: ``fieldpath -> (value, present)`` as used by
``pycontainerd.core.filters``. Info fields: ``digest``, ``labels.<key>`` (size is not
filterable, as in containerd). Status fields: ``ref``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from pycontainerd.core.content.types import Info, Status

Adaptor = Callable[[Sequence[str]], tuple[str, bool]]


def _check_map(fieldpath: Sequence[str], m: Mapping[str, str]) -> tuple[str, bool]:
    if not m:
        return "", False
    key = ".".join(fieldpath)
    if key in m:
        return m[key], True
    return "", False


def adapt_info(info: Info) -> Adaptor:
    def adaptor(fieldpath: Sequence[str]) -> tuple[str, bool]:
        if not fieldpath:
            return "", False
        if fieldpath[0] == "digest":
            return info.digest, True
        if fieldpath[0] == "labels":
            return _check_map(fieldpath[1:], info.labels)
        return "", False

    return adaptor


def adapt_status(status: Status) -> Adaptor:
    def adaptor(fieldpath: Sequence[str]) -> tuple[str, bool]:
        if fieldpath and fieldpath[0] == "ref":
            return status.ref, True
        return "", False

    return adaptor
