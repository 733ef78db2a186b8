"""Validation shared by the metadata stores: identifiers and labels, as containerd's."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from pycontainerd.core import errdefs

_IDENTIFIER = re.compile(r"^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$")
MAX_IDENTIFIER_LENGTH = 76
#: Maximum bytes of a label's key and value together.
MAX_LABEL_SIZE = 4096
_KEY_IN_MESSAGE = 64


def validate_identifier(id_: str) -> None:
    """Raise InvalidArgument unless ``id_`` is a valid containerd identifier."""
    if not id_:
        raise errdefs.InvalidArgument("identifier must not be empty")
    if len(id_) > MAX_IDENTIFIER_LENGTH:
        raise errdefs.InvalidArgument(
            f"identifier {id_!r} greater than maximum length ({MAX_IDENTIFIER_LENGTH} characters)"
        )
    if not _IDENTIFIER.match(id_):
        raise errdefs.InvalidArgument(f"identifier {id_!r} must match {_IDENTIFIER.pattern}")


def validate_label(key: str, value: str) -> None:
    total = len(key.encode()) + len(value.encode())
    if total > MAX_LABEL_SIZE:
        raise errdefs.InvalidArgument(
            f"label key and value length ({total} bytes) greater than maximum size "
            f"({MAX_LABEL_SIZE} bytes), key: {key[:_KEY_IN_MESSAGE]}"
        )


def validate_labels(labels: Mapping[str, str] | None, what: str) -> None:
    """Validate every label; the error names ``what`` (e.g. ``"image.labels"``)."""
    for k, v in (labels or {}).items():
        try:
            validate_label(k, v)
        except errdefs.InvalidArgument as exc:
            raise errdefs.InvalidArgument(f"{what}: {exc}") from None


def check_map(fieldpath: list[str], m: Mapping[str, str]) -> tuple[str, bool]:
    """Filter adaptor helper for ``labels.<k>`` style field paths."""
    if not m:
        return "", False
    key = ".".join(fieldpath)
    if key in m:
        return m[key], True
    return "", False


def update_labels(
    current: Mapping[str, str], new: Mapping[str, str], paths: Sequence[str], what: str
) -> dict[str, str]:
    """containerd's label-only update mask: no paths or ``labels`` replace every label,
    ``labels.<k>`` sets ``k`` (or removes it when the new value is empty); any other path is
    InvalidArgument naming ``what``. The result is validated."""
    labels = dict(current) if paths else dict(new)
    for path in paths:
        if path.startswith("labels."):
            key = path[len("labels.") :]
            if new.get(key):
                labels[key] = new[key]
            else:
                labels.pop(key, None)
        elif path == "labels":
            labels = dict(new)
        else:
            raise errdefs.InvalidArgument(f"cannot update {path!r} field on {what}")
    validate_labels(labels, "info.labels")
    return labels
