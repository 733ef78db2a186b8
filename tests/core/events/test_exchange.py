from __future__ import annotations

import asyncio
import datetime
import gc

import attrs
import pytest

from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.events import Envelope, Forwarder, Publisher, Subscriber
from pycontainerd.core.events.exchange import Exchange, Subscription


@attrs.frozen
class Ev:
    id: str
    labels: dict[str, str] = attrs.Factory(dict)


async def drain(sub: Subscription, n: int, timeout: float = 1.0) -> list[Envelope]:
    out: list[Envelope] = []
    async with asyncio.timeout(timeout):
        for _ in range(n):
            out.append(await anext(sub))
    return out


async def nothing_pending(sub: Subscription) -> bool:
    try:
        async with asyncio.timeout(0.05):
            await anext(sub)
    except TimeoutError:
        return True
    return False


def envelope(ns: str = "k8s.io", topic: str = "/tasks/exit", id: str = "x") -> Envelope:
    return Envelope(
        timestamp=datetime.datetime.now(datetime.UTC), namespace=ns, topic=topic, event=Ev(id)
    )


def test_exchange_implements_the_event_interfaces() -> None:
    ex = Exchange()
    assert isinstance(ex, Publisher)
    assert isinstance(ex, Forwarder)
    assert isinstance(ex, Subscriber)


async def test_publish_stamps_namespace_topic_and_utc_time_in_order() -> None:
    ex = Exchange()
    sub = ex.subscribe()
    before = datetime.datetime.now(datetime.UTC)
    with namespaces.use("default"):
        for i in range(5):
            await ex.publish("/tasks/create", Ev(str(i)))
    got = await drain(sub, 5)
    assert [e.event.id for e in got] == ["0", "1", "2", "3", "4"]
    assert {e.namespace for e in got} == {"default"}
    assert {e.topic for e in got} == {"/tasks/create"}
    assert all(e.timestamp is not None and e.timestamp >= before for e in got)
    assert got[0].timestamp.tzinfo is datetime.UTC


async def test_publish_without_namespace_fails_precondition() -> None:
    ex = Exchange()
    with pytest.raises(errdefs.FailedPrecondition, match="failed publishing event"):
        await ex.publish("/tasks/exit", Ev("1"))


async def test_publish_rejects_bad_topic_and_missing_event() -> None:
    ex = Exchange()
    with namespaces.use("default"):
        with pytest.raises(errdefs.InvalidArgument, match="must start with '/'"):
            await ex.publish("tasks/exit", Ev("1"))
        with pytest.raises(errdefs.InvalidArgument, match="no event"):
            await ex.publish("/tasks/exit", None)


async def test_subscription_receives_events_published_before_first_iteration() -> None:
    ex = Exchange()
    sub = ex.subscribe()
    await ex.forward(envelope(id="early"))
    [got] = await drain(sub, 1)
    assert got.event.id == "early"


async def test_filters_by_topic_and_namespace_or_across_filters() -> None:
    ex = Exchange()
    exits = ex.subscribe('topic=="/tasks/exit"')
    k8s_or_images = ex.subscribe("namespace==k8s.io", 'topic~="^/images/"')
    labelled = ex.subscribe("event.labels.app==web")
    await ex.forward(envelope("default", "/tasks/exit", "a"))
    await ex.forward(envelope("k8s.io", "/tasks/start", "b"))
    await ex.forward(envelope("default", "/images/create", "c"))
    await ex.forward(
        Envelope(
            timestamp=datetime.datetime.now(datetime.UTC),
            namespace="default",
            topic="/containers/create",
            event=Ev("d", {"app": "web"}),
        )
    )
    assert [e.event.id for e in await drain(exits, 1)] == ["a"]
    assert [e.event.id for e in await drain(k8s_or_images, 2)] == ["b", "c"]
    assert [e.event.id for e in await drain(labelled, 1)] == ["d"]
    for sub in (exits, k8s_or_images, labelled):
        assert await nothing_pending(sub)


async def test_subscribe_with_bad_filter_raises_invalid_argument_immediately() -> None:
    ex = Exchange()
    with pytest.raises(errdefs.InvalidArgument, match="failed parsing subscription filters"):
        ex.subscribe("topic==")
    assert ex.subscriber_count == 0


async def test_forward_keeps_the_envelope_as_given() -> None:
    ex = Exchange()
    sub = ex.subscribe()
    env = envelope("other-ns", "/tasks/oom", "z")
    await ex.forward(env)
    [got] = await drain(sub, 1)
    assert got is env


@pytest.mark.parametrize(
    "bad",
    [
        {"namespace": ""},
        {"namespace": "has space"},
        {"topic": "/"},
        {"topic": "no-slash"},
        {"timestamp": None},
    ],
)
async def test_forward_rejects_invalid_envelopes_and_delivers_nothing(bad: dict) -> None:
    ex = Exchange()
    sub = ex.subscribe()
    with pytest.raises(errdefs.InvalidArgument):
        await ex.forward(attrs.evolve(envelope(), **bad))
    assert await nothing_pending(sub)


async def test_concurrent_publishers_every_subscriber_sees_same_total_order() -> None:
    ex = Exchange(queue_size=10_000)
    subs = [ex.subscribe() for _ in range(3)]

    async def publisher(p: int) -> None:
        with namespaces.use(f"ns{p}"):
            for i in range(200):
                await ex.publish("/tasks/start", Ev(f"{p}-{i}"))
                if i % 7 == 0:
                    await asyncio.sleep(0)

    await asyncio.gather(*(publisher(p) for p in range(5)))
    seqs = [[e.event.id for e in await drain(s, 1000)] for s in subs]
    assert seqs[0] == seqs[1] == seqs[2]
    for p in range(5):  # each publisher's own events stay in order
        mine = [x for x in seqs[0] if x.startswith(f"{p}-")]
        assert mine == [f"{p}-{i}" for i in range(200)]


async def test_slow_subscriber_is_dropped_without_blocking_and_sees_error_after_backlog() -> None:
    ex = Exchange(queue_size=3)
    slow = ex.subscribe()
    fast = ex.subscribe()
    received: list[str] = []

    async def consume() -> None:
        async for env in fast:
            received.append(env.event.id)

    consumer = asyncio.create_task(consume())
    async with asyncio.timeout(1):  # the publisher never waits for the slow one
        for i in range(10):
            await ex.forward(envelope(id=str(i)))
            await asyncio.sleep(0)
    assert ex.subscriber_count == 1
    assert not slow.active
    # the backlog that fitted is delivered, then the error
    assert [e.event.id for e in await drain(slow, 3)] == ["0", "1", "2"]
    with pytest.raises(errdefs.ResourceExhausted, match="fell 3 events behind"):
        await anext(slow)
    with pytest.raises(StopAsyncIteration):
        await anext(slow)
    await asyncio.sleep(0)
    assert received == [str(i) for i in range(10)]
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer


async def test_aclose_unsubscribes_and_wakes_a_blocked_consumer() -> None:
    ex = Exchange()
    sub = ex.subscribe()
    waiter = asyncio.create_task(anext(sub))
    await asyncio.sleep(0)
    assert not waiter.done()
    await sub.aclose()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiter, 1)
    assert ex.subscriber_count == 0
    await ex.forward(envelope())  # nobody to deliver to, no error


async def test_async_with_unsubscribes_on_exit() -> None:
    ex = Exchange()
    async with ex.subscribe() as sub:
        assert ex.subscriber_count == 1
        await ex.forward(envelope(id="1"))
        assert (await anext(sub)).event.id == "1"
    assert ex.subscriber_count == 0


async def test_cancelled_consumer_leaves_subscription_usable_until_closed() -> None:
    ex = Exchange()
    sub = ex.subscribe()
    task = asyncio.create_task(anext(sub))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await ex.forward(envelope(id="after"))
    [got] = await drain(sub, 1)
    assert got.event.id == "after"
    await sub.aclose()
    assert ex.subscriber_count == 0


async def test_forgotten_subscription_is_unregistered_when_collected() -> None:
    ex = Exchange()
    ex.subscribe()
    gc.collect()
    assert ex.subscriber_count == 0


async def test_close_ends_subscriptions_after_their_backlog_and_discards_later_events() -> None:
    ex = Exchange()
    sub = ex.subscribe()
    await ex.forward(envelope(id="last"))
    ex.close()
    assert [e.event.id for e in await drain(sub, 1)] == ["last"]
    with pytest.raises(StopAsyncIteration):
        await anext(sub)
    await ex.forward(envelope(id="late"))  # discarded, not an error
    late = ex.subscribe()
    with pytest.raises(StopAsyncIteration):
        await anext(late)


def test_queue_size_must_be_positive() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="queue size"):
        Exchange(queue_size=0)
