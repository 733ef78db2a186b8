"""The events contract: the envelope every event travels in, topic rules, and the
publisher / forwarder / subscriber interfaces (containerd ``core/events``).

An event is kept generic: any protobuf message, an undecoded ``google.protobuf.Any`` (or any
object with ``type_url`` and ``value``), or a plain object. Turning it into a proto ``Any`` on
the wire is the gRPC/ttrpc front-end's job.

Subscribers filter with :mod:`pycontainerd.core.filters` over the fields ``topic``,
``namespace`` and ``event.<field>...``. ``event`` fields are resolved best-effort: an event
object's own ``field(fieldpath)`` method when it has one; else protobuf fields by name (maps
such as ``labels`` join the remaining path with ``.``; a scalar is present when it is not the
zero value); else attributes and mapping keys of a plain object. A packed ``Any`` is decoded
when its message type is known to protobuf's default symbol database.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from pycontainerd.core import errdefs

__all__ = [
    "Envelope",
    "EventStream",
    "Forwarder",
    "Publisher",
    "Subscriber",
    "event_field",
    "type_url_of",
    "validate_envelope",
    "validate_topic",
]

# containerd's identifier rule (pkg/identifiers), used for topic components and namespaces.
_IDENTIFIER = re.compile(r"^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$")
_IDENTIFIER_MAX = 76


def _check_identifier(s: str) -> str | None:
    """Why ``s`` is not a valid identifier, or None."""
    if not s:
        return "identifier must not be empty"
    if len(s) > _IDENTIFIER_MAX:
        return f"identifier {s!r} greater than maximum length ({_IDENTIFIER_MAX} characters)"
    if not _IDENTIFIER.match(s):
        return f"identifier {s!r} must match {_IDENTIFIER.pattern}"
    return None


def validate_topic(topic: str) -> None:
    """Raise InvalidArgument unless ``topic`` is ``/`` followed by ``/``-separated identifiers
    (``/tasks/exit``, ``/snapshot/prepare``)."""
    reason: str | None = None
    if not topic:
        reason = "must not be empty"
    elif topic[0] != "/":
        reason = "must start with '/'"
    elif len(topic) == 1:
        reason = "must have at least one component"
    else:
        for component in topic[1:].split("/"):
            why = _check_identifier(component)
            if why is not None:
                reason = f"failed validation on component {component!r}: {why}"
                break
    if reason is not None:
        raise errdefs.InvalidArgument(f"envelope topic {topic!r}: {reason}")


def validate_envelope(envelope: Envelope) -> None:
    """What a forwarded envelope must satisfy: valid namespace, valid topic, a timestamp."""
    why = _check_identifier(envelope.namespace)
    if why is not None:
        raise errdefs.InvalidArgument(f"event envelope has invalid namespace: {why}")
    validate_topic(envelope.topic)
    if envelope.timestamp is None:
        raise errdefs.InvalidArgument("timestamp must be set on forwarded event")
    if envelope.event is None:
        raise errdefs.InvalidArgument(f"event envelope {envelope.topic!r} has no event")


def type_url_of(event: Any) -> str:
    """The type URL of an event: its own ``type_url``, or a protobuf message's full name
    (as containerd's typeurl names events: ``containerd.events.TaskExit``)."""
    url = getattr(event, "type_url", None)
    if isinstance(url, str):
        return url
    descriptor = getattr(event, "DESCRIPTOR", None)
    if descriptor is not None and hasattr(descriptor, "full_name"):
        return str(descriptor.full_name)
    return f"{type(event).__module__}.{type(event).__qualname__}"


@attrs.frozen(kw_only=True)
class Envelope:
    """One event on the exchange. ``timestamp`` is timezone-aware UTC."""

    timestamp: datetime.datetime | None
    namespace: str
    topic: str
    event: Any
    # Decoded form of a packed Any, filled on first event.<field> lookup.
    _decoded: dict[str, Any] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    @property
    def type_url(self) -> str:
        return type_url_of(self.event)

    def field(self, fieldpath: list[str]) -> tuple[str, bool]:
        """Filter adaptor: ``namespace``, ``topic``, ``event.<path>`` (timestamp: never)."""
        if not fieldpath:
            return "", False
        head = fieldpath[0]
        if head == "namespace":
            return self.namespace, bool(self.namespace)
        if head == "topic":
            return self.topic, bool(self.topic)
        if head == "event":
            if "event" not in self._decoded:
                self._decoded["event"] = _decode_any(self.event)
            return event_field(self._decoded["event"], fieldpath[1:])
        return "", False


# --------------------------------------------------------------------------- event fields


def _is_proto(obj: Any) -> bool:
    return hasattr(obj, "DESCRIPTOR") and hasattr(obj, "ListFields")


def _decode_any(event: Any) -> Any:
    """Unpack a packed Any whose type protobuf knows; otherwise return the event as is."""
    type_url = getattr(event, "type_url", None)
    value = getattr(event, "value", None)
    if not isinstance(type_url, str) or not isinstance(value, bytes | bytearray):
        return event
    name = type_url.rsplit("/", 1)[-1]
    try:
        from google.protobuf import symbol_database

        cls = symbol_database.Default().GetSymbol(name)
        msg = cls()
        msg.ParseFromString(bytes(value))
    except Exception:  # unknown type or bad bytes: best effort, fields read as absent
        return event
    return msg


def _scalar(value: Any) -> tuple[str, bool]:
    if isinstance(value, str):
        return value, bool(value)
    if isinstance(value, bool):
        return ("true", True) if value else ("false", False)
    if isinstance(value, int | float):
        return str(value), value != 0
    return "", False


def event_field(event: Any, fieldpath: Sequence[str]) -> tuple[str, bool]:
    """Best-effort ``(value, present)`` of a field path inside an event object."""
    if not fieldpath:
        return "", False
    own = getattr(event, "field", None)
    if callable(own) and not _is_proto(event):
        result = own(list(fieldpath))
        return result  # type: ignore[no-any-return]
    head, rest = fieldpath[0], fieldpath[1:]
    if _is_proto(event):
        fd = event.DESCRIPTOR.fields_by_name.get(head)
        if fd is None:
            return "", False
        value = getattr(event, head)
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            return _map_lookup(rest, value)
        repeated = getattr(fd, "is_repeated", None)
        if repeated is None:
            repeated = fd.label == fd.LABEL_REPEATED
        if repeated:
            return "", False
        if fd.message_type is not None:
            if not event.HasField(head):
                return "", False
            return event_field(value, rest)
        if rest:
            return "", False
        if fd.enum_type is not None:
            ev = fd.enum_type.values_by_number.get(value)
            return (ev.name if ev else str(value)), value != 0
        return _scalar(value)
    if isinstance(event, Mapping):
        if head not in event:
            return "", False
        value = event[head]
    else:
        if head.startswith("_") or not hasattr(event, head):
            return "", False
        value = getattr(event, head)
    if isinstance(value, Mapping):
        return _map_lookup(rest, value)
    if rest:
        return event_field(value, rest)
    return _scalar(value)


def _map_lookup(rest: Sequence[str], mapping: Mapping[Any, Any]) -> tuple[str, bool]:
    if not rest:
        return "", False
    key = ".".join(rest)
    if key not in mapping:
        return "", False
    value = mapping[key]
    return (value, True) if isinstance(value, str) else (str(value), True)


# --------------------------------------------------------------------------- interfaces


@runtime_checkable
class EventStream(Protocol):
    """What a subscription yields: envelopes until closed. ``aclose`` unsubscribes."""

    def __aiter__(self) -> AsyncIterator[Envelope]: ...

    async def __anext__(self) -> Envelope: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Publisher(Protocol):
    async def publish(self, topic: str, event: Any) -> None:
        """Wrap ``event`` in an envelope (namespace from the request, time now) and send it."""
        ...


@runtime_checkable
class Forwarder(Protocol):
    async def forward(self, envelope: Envelope) -> None:
        """Send an already-built envelope (e.g. from a shim) after validating it."""
        ...


@runtime_checkable
class Subscriber(Protocol):
    def subscribe(self, *filters: str) -> EventStream:
        """Events matching any of ``filters`` (all when none), from the moment of the call.
        A bad filter raises InvalidArgument here, not on iteration."""
        ...
