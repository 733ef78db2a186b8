"""Event payloads as containerd puts them on the wire.

The metadata stores publish plain attrs values (:mod:`pycontainerd.core.metadata.events`) whose
class name is the name of containerd's proto message (``NamespaceCreate`` is
``containerd.events.NamespaceCreate``; image events live in ``containerd.services.images.v1``,
as upstream). :func:`to_proto` turns such a value into that message, field for field;
:func:`to_any` packs it into a ``google.protobuf.Any``.

Type URLs follow containerd's ``typeurl``: a protobuf message that was not registered under
another URL is named by its full proto name with no prefix (``containerd.events.ImageCreate``
is ``containerd.services.images.v1.ImageCreate``), which is what ``ctr events`` looks up to
decode and print an event.

:class:`ProtoPublisher` wraps an event exchange so that whatever a store publishes reaches the
exchange as such a packed Any.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import attrs
from google.protobuf import any_pb2
from google.protobuf.message import Message

from pycontainerd.core import errdefs

__all__ = ["ProtoPublisher", "message_class", "to_any", "to_proto", "type_url"]

# Which generated module holds the message of each payload class name.
_MODULES = {
    "pycontainerd.api.containerd.events.namespace_pb2": (
        "NamespaceCreate",
        "NamespaceUpdate",
        "NamespaceDelete",
    ),
    "pycontainerd.api.containerd.events.image_pb2": ("ImageCreate", "ImageUpdate", "ImageDelete"),
    "pycontainerd.api.containerd.events.container_pb2": (
        "ContainerCreate",
        "ContainerUpdate",
        "ContainerDelete",
    ),
    "pycontainerd.api.containerd.events.content_pb2": ("ContentCreate", "ContentDelete"),
    "pycontainerd.api.containerd.events.snapshot_pb2": (
        "SnapshotPrepare",
        "SnapshotCommit",
        "SnapshotRemove",
    ),
}


@functools.cache
def _registry() -> dict[str, type[Message]]:
    import importlib

    out: dict[str, type[Message]] = {}
    for module_name, names in _MODULES.items():
        module = importlib.import_module(module_name)
        for name in names:
            out[name] = getattr(module, name)
    return out


def message_class(payload: Any) -> type[Message]:
    """The generated proto class for an attrs event payload (matched by class name)."""
    name = type(payload).__name__
    cls = _registry().get(name)
    if cls is None:
        raise errdefs.InvalidArgument(f"no containerd event message for payload type {name}")
    return cls


def type_url(message: Message) -> str:
    """containerd's type URL of a proto message: its full name."""
    return str(message.DESCRIPTOR.full_name)


def _is_any(value: Any) -> bool:
    return isinstance(value, any_pb2.Any)


def _fill(msg: Message, value: Any) -> None:
    """Copy the attrs value ``value`` into ``msg`` by field name."""
    fields = msg.DESCRIPTOR.fields_by_name
    for a in attrs.fields(type(value)):
        v = getattr(value, a.name)
        fd = fields.get(a.name)
        if fd is None:
            raise errdefs.InvalidArgument(
                f"event {type(value).__name__}: field {a.name!r} is not in "
                f"{msg.DESCRIPTOR.full_name}"
            )
        if v is None:
            continue
        target = getattr(msg, a.name)
        mt = fd.message_type
        if mt is not None and mt.GetOptions().map_entry:
            target.update({str(k): str(x) for k, x in dict(v).items()})
        elif mt is not None and mt.full_name == "google.protobuf.Any":
            if _is_any(v):
                target.CopyFrom(v)
            else:
                url, data = v  # a (type_url, bytes) pair, as the stores keep Any values
                target.type_url = str(url)
                target.value = bytes(data)
        elif mt is not None:
            if isinstance(v, Message):
                target.CopyFrom(v)
            else:
                _fill(target, v)
        else:
            setattr(msg, a.name, v)


def to_proto(payload: Any) -> Message:
    """The proto message for an event payload; proto messages are returned as they are."""
    if isinstance(payload, Message):
        return payload
    if not attrs.has(type(payload)):
        raise errdefs.InvalidArgument(
            f"cannot convert event of type {type(payload).__name__} to a proto message"
        )
    msg = message_class(payload)()
    _fill(msg, payload)
    return msg


def to_any(payload: Any) -> any_pb2.Any:
    """An event payload packed as containerd packs events: ``Any{type_url=<full name>}``.
    An ``Any`` is returned as it is."""
    if _is_any(payload):
        return payload  # type: ignore[no-any-return]
    msg = to_proto(payload)
    return any_pb2.Any(type_url=type_url(msg), value=msg.SerializeToString(deterministic=True))


class _Publisher(Protocol):
    async def publish(self, topic: str, event: Any) -> None: ...


@attrs.define(eq=False)
class ProtoPublisher:
    """A publisher that hands the wrapped exchange packed proto events: the namespace comes
    from the context, as with the exchange itself."""

    _exchange: _Publisher

    @property
    def exchange(self) -> _Publisher:
        return self._exchange

    async def publish(self, topic: str, payload: Any) -> None:
        await self._exchange.publish(topic, to_any(payload))
