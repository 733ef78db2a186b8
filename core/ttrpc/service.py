"""How handlers are described to the ttrpc server.

A method is an async callable plus its streaming kind and request type:

* unary: ``async def m(request) -> response``
* server-streaming: ``def m(request) -> AsyncIterator[response]`` (an async generator)
* client-streaming: ``async def m(requests: AsyncIterator[request]) -> response``
* bidirectional: ``def m(requests: AsyncIterator[request]) -> AsyncIterator[response]``

Requests are decoded into ``request_type`` (raw ``bytes`` when it is None); a response may be a
protobuf message, ``bytes``, or None (an empty payload). Handlers raise errdefs categories.
The request's metadata is at :func:`pycontainerd.core.ttrpc.metadata.current`, and its
namespace (``containerd-namespace-ttrpc``) at :func:`pycontainerd.core.namespaces.get`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor

from pycontainerd.core import errdefs


@attrs.frozen(kw_only=True)
class Method:
    handler: Callable[..., Any]
    request_type: type[Any] | None = None
    client_streaming: bool = False
    server_streaming: bool = False

    def decode(self, payload: bytes) -> Any:
        if self.request_type is None:
            return payload
        try:
            return self.request_type.FromString(payload)
        except Exception as e:  # protobuf's DecodeError and friends
            raise errdefs.InvalidArgument(
                f"failed to decode {self.request_type.__name__} request: {e}"
            ) from e


def unary(handler: Callable[..., Any], request_type: type[Any] | None = None) -> Method:
    return Method(handler=handler, request_type=request_type)


def server_stream(handler: Callable[..., Any], request_type: type[Any] | None = None) -> Method:
    return Method(handler=handler, request_type=request_type, server_streaming=True)


def client_stream(handler: Callable[..., Any], request_type: type[Any] | None = None) -> Method:
    return Method(handler=handler, request_type=request_type, client_streaming=True)


def bidi_stream(handler: Callable[..., Any], request_type: type[Any] | None = None) -> Method:
    return Method(
        handler=handler, request_type=request_type, client_streaming=True, server_streaming=True
    )


def as_method(value: Method | Callable[..., Any]) -> Method:
    """A :class:`Method` as is; a bare async callable as a unary method on raw bytes."""
    if isinstance(value, Method):
        return value
    if callable(value):
        return unary(value)
    raise errdefs.InvalidArgument(f"ttrpc handler must be a Method or callable, got {value!r}")


def methods_from_descriptor(descriptor: ServiceDescriptor, impl: object) -> dict[str, Method]:
    """Methods for every RPC of a generated service that ``impl`` has an attribute for (named
    like the RPC). RPCs it lacks are left out, so callers get UNIMPLEMENTED for them."""
    methods: dict[str, Method] = {}
    for md in descriptor.methods:
        handler = getattr(impl, md.name, None)
        if handler is None:
            continue
        methods[md.name] = Method(
            handler=handler,
            request_type=message_factory.GetMessageClass(md.input_type),
            client_streaming=md.client_streaming,
            server_streaming=md.server_streaming,
        )
    return methods


def normalize(methods: Mapping[str, Method | Callable[..., Any]]) -> dict[str, Method]:
    return {name: as_method(m) for name, m in methods.items()}
