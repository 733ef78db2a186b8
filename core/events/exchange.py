"""The in-process event exchange: publishers and forwarders broadcast envelopes to every
subscriber whose filters match (containerd ``core/events/exchange``).

Delivery model:

* ``publish``/``forward`` never wait for subscribers: the envelope is put, synchronously and
  in one step, into the bounded queue of every matching subscriber. So each subscriber sees
  events in publish order, and all subscribers see the same relative order.
* A subscriber whose queue is full when an event arrives is **dropped**: it is unsubscribed at
  once, keeps the events already queued, and after reading them its next iteration raises
  ``errdefs.ResourceExhausted``. Dropping (rather than discarding single events or blocking
  the publisher) means a consumer never silently misses an event and a stuck consumer cannot
  stall the daemon; a gRPC ``Subscribe`` stream ends with RESOURCE_EXHAUSTED and the client
  re-subscribes, as it would after any broken stream.
* A subscription is registered when :meth:`Exchange.subscribe` returns (events published
  after that point are delivered even before the first iteration) and unregistered by
  ``aclose()``, by leaving ``async with``, by the exchange's :meth:`Exchange.close`, or when the
  subscription object is garbage-collected (the exchange holds subscriptions weakly). No
  background tasks are involved.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import weakref
from types import TracebackType
from typing import Any

import attrs

from pycontainerd.core import errdefs, filters, namespaces
from pycontainerd.core.events import (
    Envelope,
    type_url_of,
    validate_envelope,
    validate_topic,
)

log = logging.getLogger(__name__)

#: Default per-subscriber queue bound.
DEFAULT_QUEUE_SIZE = 1024


class _Wake:
    """Queued to wake a consumer blocked on an empty queue when the subscription ends."""


_WAKE = _Wake()


class Subscription:
    """An async iterator of the envelopes matching one subscriber's filters."""

    __slots__ = ("__weakref__", "_exchange", "_filter", "_queue", "_error", "_ended", "_closed")

    def __init__(self, exchange: Exchange, filter: filters.Filter, queue_size: int) -> None:
        self._exchange: Exchange | None = exchange
        self._filter = filter
        self._queue: asyncio.Queue[Envelope | _Wake] = asyncio.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._ended = False  # no more events will come; drain, then stop (or raise _error)
        self._closed = False  # the consumer closed it; stop now

    @property
    def active(self) -> bool:
        """Still receiving events."""
        return not self._ended

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Envelope:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._ended and self._queue.empty():
                if self._error is not None:
                    err, self._error = self._error, None
                    self._closed = True
                    raise err
                raise StopAsyncIteration
            item = await self._queue.get()
            if not isinstance(item, _Wake):
                return item

    async def aclose(self) -> None:
        """Unsubscribe; buffered events are discarded."""
        self._closed = True
        self._end()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- exchange side

    def _offer(self, envelope: Envelope) -> None:
        if self._ended or not self._filter.match(envelope):
            return
        try:
            self._queue.put_nowait(envelope)
        except asyncio.QueueFull:
            size = self._queue.maxsize
            log.warning(
                "dropping slow event subscriber: queue of %d events full (topic=%s namespace=%s)",
                size,
                envelope.topic,
                envelope.namespace,
            )
            self._error = errdefs.ResourceExhausted(
                f"event subscription dropped: subscriber fell {size} events behind"
            )
            self._end()

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self._exchange is not None:
            self._exchange._remove(self)
            self._exchange = None
        try:
            self._queue.put_nowait(_WAKE)  # a blocked consumer has an empty queue: room
        except asyncio.QueueFull:
            pass  # the consumer is not blocked; it drains and then sees the end


@attrs.define(eq=False)
class Exchange:
    """Broadcasts events; implements Publisher, Forwarder and Subscriber."""

    _queue_size: int = attrs.field(default=DEFAULT_QUEUE_SIZE, kw_only=True)
    _subscribers: weakref.WeakSet[Subscription] = attrs.field(init=False, factory=weakref.WeakSet)
    _closed: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        if self._queue_size < 1:
            raise errdefs.InvalidArgument(
                f"event exchange: queue size must be positive, got {self._queue_size}"
            )

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def publish(self, topic: str, event: Any) -> None:
        """Send ``event`` on ``topic`` in the current request's namespace, stamped now."""
        try:
            namespace = namespaces.required()
        except errdefs.ContainerdError as e:
            raise type(e)(f"failed publishing event: {e}") from e
        validate_topic(topic)
        if event is None:
            raise errdefs.InvalidArgument(f"failed publishing event on {topic!r}: no event")
        envelope = Envelope(
            timestamp=datetime.datetime.now(datetime.UTC),
            namespace=namespace,
            topic=topic,
            event=event,
        )
        self._broadcast(envelope)

    async def forward(self, envelope: Envelope) -> None:
        """Send an envelope built elsewhere (a shim, another namespace) as it is."""
        validate_envelope(envelope)
        self._broadcast(envelope)

    def subscribe(self, *filter_strings: str) -> Subscription:
        """Subscribe to envelopes matching any of the filters (all, when none are given)."""
        try:
            flt = filters.parse_all(filter_strings)
        except errdefs.InvalidArgument as e:
            raise errdefs.InvalidArgument(f"failed parsing subscription filters: {e}") from e
        sub = Subscription(self, flt, self._queue_size)
        if self._closed:
            sub._end()
        else:
            self._subscribers.add(sub)
        return sub

    def close(self) -> None:
        """End every subscription (each drains what it has, then stops). Later subscriptions
        end at once and later events are discarded (shutdown order must not make publishers
        fail)."""
        self._closed = True
        for sub in list(self._subscribers):
            sub._end()

    # -- internals

    def _broadcast(self, envelope: Envelope) -> None:
        if self._closed:  # shutting down: nobody is listening any more
            log.debug("event exchange closed: discarding %s", envelope.topic)
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "event topic=%s namespace=%s type=%s",
                envelope.topic,
                envelope.namespace,
                type_url_of(envelope.event),
            )
        for sub in list(self._subscribers):
            sub._offer(envelope)

    def _remove(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
