"""Request metadata (lower-cased keys, repeated keys allowed) and what a handler can learn
about the request it serves."""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Mapping, Sequence

import attrs

from pycontainerd.api.ttrpc import request_pb2

#: What callers may pass as metadata: a mapping of key to one value or several, or pairs.
MetadataLike = Mapping[str, "str | Sequence[str]"] | Iterable[tuple[str, str]]


def pairs(metadata: MetadataLike | None) -> list[tuple[str, str]]:
    """``(key, value)`` pairs with lower-cased keys, in the given order."""
    if not metadata:
        return []
    items: Iterable[tuple[str, str | Sequence[str]]]
    items = metadata.items() if isinstance(metadata, Mapping) else metadata
    out: list[tuple[str, str]] = []
    for key, value in items:
        values = [value] if isinstance(value, str) else list(value)
        out.extend((key.lower(), v) for v in values)
    return out


def to_proto(metadata: Iterable[tuple[str, str]]) -> list[request_pb2.KeyValue]:
    return [request_pb2.KeyValue(key=k, value=v) for k, v in metadata]


def from_proto(kvs: Iterable[request_pb2.KeyValue]) -> dict[str, list[str]]:
    md: dict[str, list[str]] = {}
    for kv in kvs:
        md.setdefault(kv.key.lower(), []).append(kv.value)
    return md


@attrs.frozen(kw_only=True)
class RequestInfo:
    """The request a ttrpc handler is serving. ``deadline`` is in event-loop time."""

    service: str
    method: str
    metadata: Mapping[str, Sequence[str]] = attrs.field(factory=dict)
    deadline: float | None = None

    @property
    def full_method(self) -> str:
        return f"/{self.service}/{self.method}"

    def get(self, key: str) -> str | None:
        """The first value of ``key``, or None."""
        values = self.metadata.get(key.lower())
        return values[0] if values else None


_current: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "ttrpc_request", default=None
)


def current() -> RequestInfo | None:
    """The ttrpc request being served in this task, or None outside a handler."""
    return _current.get()


def _set_current(info: RequestInfo) -> contextvars.Token[RequestInfo | None]:
    return _current.set(info)
