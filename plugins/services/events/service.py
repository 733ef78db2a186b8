"""The events front-ends: proto <-> core envelope conversion around the event exchange.

Events are kept as the packed ``google.protobuf.Any`` they arrived in, so Subscribe hands
back exactly the bytes a publisher sent; events published in-process as protobuf messages are
packed with containerd's type URL convention (the message's full name, no prefix).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import any_pb2, empty_pb2

from pycontainerd.api.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from pycontainerd.api.containerd.services.ttrpc.events.v1 import events_pb2 as ttrpc_events_pb2
from pycontainerd.api.containerd.types import event_pb2
from pycontainerd.core.events import Envelope, type_url_of

log = logging.getLogger(__name__)


def _copy_any(event: any_pb2.Any) -> any_pb2.Any:
    out = any_pb2.Any()
    out.CopyFrom(event)
    return out


def to_any(event: Any) -> any_pb2.Any | None:
    """An event as a proto Any: Any as is, other messages packed, ``type_url``/``value``
    objects copied; None for what cannot be encoded."""
    if isinstance(event, any_pb2.Any):
        return event
    if hasattr(event, "DESCRIPTOR") and hasattr(event, "SerializeToString"):
        return any_pb2.Any(type_url=type_url_of(event), value=event.SerializeToString())
    type_url, value = getattr(event, "type_url", None), getattr(event, "value", None)
    if isinstance(type_url, str) and isinstance(value, bytes | bytearray):
        return any_pb2.Any(type_url=type_url, value=bytes(value))
    return None


def envelope_from_proto(env: event_pb2.Envelope) -> Envelope:
    timestamp = None
    if env.HasField("timestamp"):
        timestamp = env.timestamp.ToDatetime(tzinfo=datetime.UTC)
    return Envelope(
        timestamp=timestamp,
        namespace=env.namespace,
        topic=env.topic,
        event=_copy_any(env.event) if env.HasField("event") else None,
    )


def envelope_to_proto(env: Envelope) -> event_pb2.Envelope | None:
    event = to_any(env.event)
    if event is None:
        return None
    out = event_pb2.Envelope(namespace=env.namespace, topic=env.topic, event=event)
    if env.timestamp is not None:
        out.timestamp.FromDatetime(env.timestamp)
    return out


class EventsService(events_pb2_grpc.EventsServicer):
    """gRPC ``containerd.services.events.v1.Events`` and ttrpc
    ``containerd.services.events.ttrpc.v1.Events`` over one exchange."""

    def __init__(self, exchange: Any) -> None:
        # Publisher + Forwarder + Subscriber (core.events.exchange.Exchange)
        self._exchange = exchange

    def register_grpc(self, server: Any) -> None:
        events_pb2_grpc.add_EventsServicer_to_server(self, server)

    def register_ttrpc(self, server: Any) -> None:
        server.register_service(
            ttrpc_events_pb2.DESCRIPTOR.services_by_name["Events"], _TTRPCEvents(self._exchange)
        )

    async def Publish(self, request: events_pb2.PublishRequest, context: Any) -> empty_pb2.Empty:  # noqa: N802
        event = _copy_any(request.event) if request.HasField("event") else None
        await self._exchange.publish(request.topic, event)
        return empty_pb2.Empty()

    async def Forward(self, request: events_pb2.ForwardRequest, context: Any) -> empty_pb2.Empty:  # noqa: N802
        await self._exchange.forward(envelope_from_proto(request.envelope))
        return empty_pb2.Empty()

    async def Subscribe(  # noqa: N802
        self, request: events_pb2.SubscribeRequest, context: Any
    ) -> AsyncIterator[event_pb2.Envelope]:
        sub = self._exchange.subscribe(*request.filters)
        try:
            async for env in sub:
                out = envelope_to_proto(env)
                if out is None:
                    log.warning(
                        "events: cannot encode event of type %s on %s, not sent to subscriber",
                        type(env.event).__name__,
                        env.topic,
                    )
                    continue
                yield out
        finally:
            await sub.aclose()


class _TTRPCEvents:
    """The ttrpc service shims forward their events to (``TTRPC_ADDRESS``)."""

    def __init__(self, exchange: Any) -> None:
        self._exchange = exchange

    async def Forward(self, request: ttrpc_events_pb2.ForwardRequest) -> empty_pb2.Empty:  # noqa: N802
        await self._exchange.forward(envelope_from_proto(request.envelope))
        return empty_pb2.Empty()
