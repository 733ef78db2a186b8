"""The events front-ends served for real: gRPC on the shared grpc server (with its
interceptor), ttrpc Forward on the ttrpc server, both over one exchange."""

from __future__ import annotations

import asyncio
import datetime
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from google.protobuf import any_pb2, empty_pb2, timestamp_pb2

from pycontainerd.api.containerd.events import task_pb2
from pycontainerd.api.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from pycontainerd.api.containerd.services.ttrpc.events.v1 import events_pb2 as tevents_pb2
from pycontainerd.api.containerd.types import event_pb2
from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.events.exchange import Exchange
from pycontainerd.core.plugin import InitContext, types
from pycontainerd.core.plugin.context import Meta, Plugin, PluginSet
from pycontainerd.core.server.grpcserver import GRPCServer
from pycontainerd.core.ttrpc import Client, Server
from pycontainerd.plugins.events import plugin as exchange_plugin
from pycontainerd.plugins.services.events import plugin
from pycontainerd.plugins.services.events.service import EventsService, envelope_to_proto

TTRPC_EVENTS = "containerd.services.events.ttrpc.v1.Events"


def _exit_event(container_id: str, status: int = 0) -> any_pb2.Any:
    msg = task_pb2.TaskExit(container_id=container_id, exit_status=status)
    return any_pb2.Any(type_url="containerd.events.TaskExit", value=msg.SerializeToString())


@pytest.fixture
def sockdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="events", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def exchange() -> Exchange:
    return Exchange()


@pytest.fixture
async def service(exchange: Exchange) -> EventsService:
    return EventsService(exchange)


@pytest.fixture
async def grpc_stub(
    sockdir: str, service: EventsService
) -> AsyncIterator[events_pb2_grpc.EventsStub]:
    srv = GRPCServer(address=os.path.join(sockdir, "g.sock"), uid=-1, gid=-1)
    await srv.start([service])
    channel = grpc.aio.insecure_channel(f"unix://{srv.address}")
    try:
        yield events_pb2_grpc.EventsStub(channel)
    finally:
        await channel.close()
        await srv.stop(0)


@pytest.fixture
async def ttrpc_server(sockdir: str, service: EventsService) -> AsyncIterator[Server]:
    srv = Server(address=os.path.join(sockdir, "t.sock.ttrpc"))
    await srv.start([service])
    yield srv
    await srv.stop(0)


def _ns(name: str) -> tuple[tuple[str, str]]:
    return ((namespaces.GRPC_HEADER, name),)


async def _first(call: grpc.aio.UnaryStreamCall) -> event_pb2.Envelope:
    async with asyncio.timeout(5):
        return await call.read()  # type: ignore[no-any-return]


async def _subscribed(exchange: Exchange, count: int) -> None:
    async with asyncio.timeout(5):
        while exchange.subscriber_count < count:
            await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------- registration


def test_registration_is_grpc_events_requiring_the_event_type() -> None:
    [reg] = plugin.pycontainerd_registrations()
    assert reg.uri == "io.containerd.grpc.v1.events"
    assert reg.requires == (types.EVENT,)
    reg.validate()


async def test_init_wraps_the_exchange_plugin_instance() -> None:
    [ex_reg] = exchange_plugin.pycontainerd_registrations()
    exchange = Exchange()
    plugins = PluginSet()
    plugins.add(Plugin(registration=ex_reg, config=None, meta=Meta(), instance=exchange))
    [reg] = plugin.pycontainerd_registrations()
    instance = await reg.init(
        InitContext(registration=reg, config=None, properties={}, plugins=plugins)
    )
    assert isinstance(instance, EventsService)
    assert callable(instance.register_grpc) and callable(instance.register_ttrpc)
    with namespaces.use("ns"):
        sub = exchange.subscribe()
        await instance.Publish(events_pb2.PublishRequest(topic="/a", event=_exit_event("c")), None)
    env = await anext(sub)
    assert env.topic == "/a"


# ---------------------------------------------------------------------------- gRPC


async def test_publish_uses_the_namespace_header_and_subscribe_returns_the_any_as_sent(
    grpc_stub: events_pb2_grpc.EventsStub, exchange: Exchange
) -> None:
    call = grpc_stub.Subscribe(events_pb2.SubscribeRequest())
    await _subscribed(exchange, 1)
    event = _exit_event("c1", 3)
    before = datetime.datetime.now(datetime.UTC)
    await grpc_stub.Publish(
        events_pb2.PublishRequest(topic="/tasks/exit", event=event), metadata=_ns("ns1")
    )
    env = await _first(call)
    assert (env.namespace, env.topic) == ("ns1", "/tasks/exit")
    assert env.event == event  # same type_url, same bytes
    stamp = env.timestamp.ToDatetime(tzinfo=datetime.UTC)
    assert before - datetime.timedelta(seconds=1) <= stamp <= datetime.datetime.now(datetime.UTC)
    call.cancel()


async def test_publish_without_a_namespace_is_failed_precondition(
    grpc_stub: events_pb2_grpc.EventsStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await grpc_stub.Publish(
            events_pb2.PublishRequest(topic="/tasks/exit", event=_exit_event("c"))
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "namespace is required" in (info.value.details() or "")


async def test_publish_with_a_bad_topic_is_invalid_argument(
    grpc_stub: events_pb2_grpc.EventsStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await grpc_stub.Publish(
            events_pb2.PublishRequest(topic="tasks/exit", event=_exit_event("c")),
            metadata=_ns("ns1"),
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_forward_keeps_the_envelope_namespace_and_timestamp(
    grpc_stub: events_pb2_grpc.EventsStub, exchange: Exchange
) -> None:
    call = grpc_stub.Subscribe(events_pb2.SubscribeRequest(filters=['namespace=="other"']))
    await _subscribed(exchange, 1)
    stamp = timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=123_000)
    for ns in ("ns1", "other"):
        env = event_pb2.Envelope(
            timestamp=stamp, namespace=ns, topic="/tasks/start", event=_exit_event("c")
        )
        await grpc_stub.Forward(events_pb2.ForwardRequest(envelope=env), metadata=_ns("ns1"))
    got = await _first(call)
    assert (got.namespace, got.topic, got.timestamp) == ("other", "/tasks/start", stamp)
    call.cancel()


async def test_forward_without_a_timestamp_is_invalid_argument(
    grpc_stub: events_pb2_grpc.EventsStub,
) -> None:
    env = event_pb2.Envelope(namespace="ns", topic="/tasks/start", event=_exit_event("c"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await grpc_stub.Forward(events_pb2.ForwardRequest(envelope=env))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_subscribe_filters_on_topic_and_event_fields(
    grpc_stub: events_pb2_grpc.EventsStub, exchange: Exchange
) -> None:
    call = grpc_stub.Subscribe(
        events_pb2.SubscribeRequest(filters=['topic=="/tasks/exit",event.container_id=="wanted"'])
    )
    await _subscribed(exchange, 1)
    for topic, cid in (
        ("/tasks/start", "wanted"),
        ("/tasks/exit", "other"),
        ("/tasks/exit", "wanted"),
    ):
        await grpc_stub.Publish(
            events_pb2.PublishRequest(topic=topic, event=_exit_event(cid)), metadata=_ns("n")
        )
    env = await _first(call)
    assert env.topic == "/tasks/exit"
    assert task_pb2.TaskExit.FromString(env.event.value).container_id == "wanted"
    call.cancel()


async def test_bad_subscribe_filter_is_invalid_argument(
    grpc_stub: events_pb2_grpc.EventsStub,
) -> None:
    call = grpc_stub.Subscribe(events_pb2.SubscribeRequest(filters=["topic=="]))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _first(call)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_cancelled_subscription_unsubscribes(
    grpc_stub: events_pb2_grpc.EventsStub, exchange: Exchange
) -> None:
    call = grpc_stub.Subscribe(events_pb2.SubscribeRequest())
    await _subscribed(exchange, 1)
    call.cancel()
    async with asyncio.timeout(5):
        while exchange.subscriber_count:
            await asyncio.sleep(0.01)


async def test_in_process_proto_events_are_packed_with_containerd_type_urls(
    exchange: Exchange,
) -> None:
    with namespaces.use("n"):
        sub = exchange.subscribe()
        await exchange.publish("/tasks/exit", task_pb2.TaskExit(container_id="x"))
    env = envelope_to_proto(await anext(sub))
    assert env is not None
    assert env.event.type_url == "containerd.events.TaskExit"
    assert task_pb2.TaskExit.FromString(env.event.value).container_id == "x"


# ---------------------------------------------------------------------------- ttrpc


async def test_ttrpc_forward_reaches_grpc_subscribers(
    ttrpc_server: Server, grpc_stub: events_pb2_grpc.EventsStub, exchange: Exchange
) -> None:
    assert ttrpc_server.services == {TTRPC_EVENTS: ["Forward"]}
    call = grpc_stub.Subscribe(events_pb2.SubscribeRequest())
    await _subscribed(exchange, 1)
    stamp = timestamp_pb2.Timestamp(seconds=1_600_000_000)
    env = event_pb2.Envelope(
        timestamp=stamp, namespace="shimns", topic="/tasks/oom", event=_exit_event("c9")
    )
    async with await Client.connect(ttrpc_server.address) as client:
        with namespaces.use("shimns"):
            reply = await client.call(
                TTRPC_EVENTS, "Forward", tevents_pb2.ForwardRequest(envelope=env), empty_pb2.Empty
            )
    assert reply == empty_pb2.Empty()
    assert await _first(call) == env
    call.cancel()


async def test_ttrpc_forward_of_an_invalid_envelope_is_invalid_argument(
    ttrpc_server: Server,
) -> None:
    env = event_pb2.Envelope(
        namespace="bad ns", topic="/tasks/oom", timestamp=timestamp_pb2.Timestamp()
    )
    async with await Client.connect(ttrpc_server.address) as client:
        with pytest.raises(errdefs.InvalidArgument, match="invalid namespace"):
            await client.call(
                TTRPC_EVENTS, "Forward", tevents_pb2.ForwardRequest(envelope=env), empty_pb2.Empty
            )
