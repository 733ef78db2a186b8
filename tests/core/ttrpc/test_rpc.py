"""Client <-> server over real unix sockets, and the server's frame checks sent raw."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, wrappers_pb2

from pycontainerd.api.containerd.services.content.v1 import content_pb2
from pycontainerd.api.ttrpc import request_pb2
from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.ttrpc import Client, Server, frame, metadata
from pycontainerd.core.ttrpc import service as svc
from pycontainerd.core.ttrpc.frame import (
    FLAG_NO_DATA,
    FLAG_REMOTE_CLOSED,
    FLAG_REMOTE_OPEN,
    MAX_MESSAGE_LENGTH,
    MessageType,
)

SVC = "test.v1.Echo"
S = wrappers_pb2.StringValue
I64 = wrappers_pb2.Int64Value


class Echo:
    """A service with every kind of method; records what handlers saw."""

    def __init__(self) -> None:
        self.seen: list[metadata.RequestInfo | None] = []
        self.namespaces: list[str | None] = []
        self.cancelled = asyncio.Event()
        self.started = asyncio.Event()

    async def echo(self, req: S) -> S:
        self.seen.append(metadata.current())
        self.namespaces.append(namespaces.get())
        return S(value=req.value)

    async def sleep(self, req: I64) -> I64:
        await asyncio.sleep(req.value / 1000)
        return I64(value=req.value)

    async def block(self, req: S) -> S:
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.cancelled.set()
        raise AssertionError("unreachable")

    async def fail(self, req: S) -> S:
        raise errdefs.NotFound(f"thing {req.value!r} not found")

    async def crash(self, req: S) -> S:
        raise RuntimeError("boom")

    async def empty(self, req: S) -> None:
        return None

    async def big(self, req: S) -> bytes:
        return b"x" * (MAX_MESSAGE_LENGTH + 1)

    async def count(self, req: I64) -> AsyncIterator[I64]:
        for i in range(req.value):
            yield I64(value=i)

    async def count_then_fail(self, req: I64) -> AsyncIterator[I64]:
        for i in range(req.value):
            yield I64(value=i)
        raise errdefs.FailedPrecondition("ran out")

    async def sum(self, reqs: AsyncIterator[I64]) -> I64:
        total = 0
        async for r in reqs:
            total += r.value
        return I64(value=total)

    async def upper(self, reqs: AsyncIterator[S]) -> AsyncIterator[S]:
        async for r in reqs:
            yield S(value=r.value.upper())

    def methods(self) -> dict[str, svc.Method]:
        return {
            "Echo": svc.unary(self.echo, S),
            "Sleep": svc.unary(self.sleep, I64),
            "Block": svc.unary(self.block, S),
            "Fail": svc.unary(self.fail, S),
            "Crash": svc.unary(self.crash, S),
            "Empty": svc.unary(self.empty, S),
            "Big": svc.unary(self.big, S),
            "Count": svc.server_stream(self.count, I64),
            "CountThenFail": svc.server_stream(self.count_then_fail, I64),
            "Sum": svc.client_stream(self.sum, I64),
            "Upper": svc.bidi_stream(self.upper, S),
        }


@pytest.fixture
def sockdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="ttrpc", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def echo() -> Echo:
    return Echo()


@pytest.fixture
async def server(sockdir: str, echo: Echo) -> AsyncIterator[Server]:
    srv = Server(address=os.path.join(sockdir, "t.sock"))
    srv.register(SVC, echo.methods())
    await srv.start()
    yield srv
    await srv.stop(0)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[Client]:
    c = await Client.connect("unix://" + server.address)
    yield c
    await c.close()


class Raw:
    """A bare connection for sending hand-made frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: str) -> Raw:
        return cls(*await asyncio.open_unix_connection(path))

    async def send(self, sid: int, type_: int, flags: int, payload: bytes = b"") -> None:
        self.writer.write(frame.encode_header(len(payload), sid, type_, flags) + payload)
        await self.writer.drain()

    async def request(
        self, sid: int, method: str, payload: bytes = b"", flags: int = 0, **kw: object
    ) -> None:
        req = request_pb2.Request(service=SVC, method=method, payload=payload, **kw)  # type: ignore[arg-type]
        await self.send(sid, MessageType.REQUEST, flags, req.SerializeToString())

    async def recv(self, timeout: float = 5.0) -> tuple[frame.FrameHeader, bytes]:
        async with asyncio.timeout(timeout):
            return await frame.read_frame(self.reader)

    async def recv_status(self) -> tuple[int, request_pb2.Response]:
        h, p = await self.recv()
        assert h.type == MessageType.RESPONSE and h.flags == 0
        return h.stream_id, request_pb2.Response.FromString(p)

    async def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def raw(server: Server) -> AsyncIterator[Raw]:
    r = await Raw.open(server.address)
    yield r
    await r.close()


# ---------------------------------------------------------------------------- unary


async def test_unary_call_round_trips_a_message(client: Client) -> None:
    resp = await client.call(SVC, "Echo", S(value="hi"), S)
    assert resp == S(value="hi")


async def test_empty_response_decodes_as_the_empty_message(client: Client) -> None:
    assert await client.call(SVC, "Empty", S(value="x"), empty_pb2.Empty) == empty_pb2.Empty()


async def test_metadata_keys_are_lower_cased_and_repeatable(client: Client, echo: Echo) -> None:
    await client.call(
        SVC, "Echo", S(), S, metadata=[("X-Trace", "a"), ("x-trace", "b"), ("Other", "c")]
    )
    info = echo.seen[-1]
    assert info is not None
    assert info.metadata == {"x-trace": ["a", "b"], "other": ["c"]}
    assert info.get("X-TRACE") == "a"
    assert info.full_method == f"/{SVC}/Echo"
    assert info.deadline is None


async def test_namespace_header_sets_the_handlers_namespace(client: Client, echo: Echo) -> None:
    await client.call(SVC, "Echo", S(), S, metadata={namespaces.TTRPC_HEADER: "ns1"})
    assert echo.namespaces[-1] == "ns1"
    await client.call(SVC, "Echo", S(), S)
    assert echo.namespaces[-1] is None


async def test_client_sends_the_current_namespace(client: Client, echo: Echo) -> None:
    with namespaces.use("k8s.io"):
        await client.call(SVC, "Echo", S(), S)
    assert echo.namespaces[-1] == "k8s.io"
    info = echo.seen[-1]
    assert info is not None and info.metadata[namespaces.TTRPC_HEADER] == ["k8s.io"]


async def test_errdefs_errors_travel_as_status_codes_and_come_back(client: Client) -> None:
    with pytest.raises(errdefs.NotFound) as info:
        await client.call(SVC, "Fail", S(value="k1"), S)
    assert str(info.value) == "thing 'k1' not found"
    with pytest.raises(errdefs.Unknown) as unknown:
        await client.call(SVC, "Crash", S(), S)
    assert str(unknown.value) == "boom"


async def test_status_uses_grpc_code_numbers_on_the_wire(raw: Raw) -> None:
    await raw.request(1, "Fail", S(value="k").SerializeToString())
    sid, resp = await raw.recv_status()
    assert sid == 1
    assert resp.status.code == 5  # NOT_FOUND
    assert resp.status.message == "thing 'k' not found"
    assert resp.payload == b""


async def test_unknown_service_and_method_are_unimplemented(client: Client) -> None:
    with pytest.raises(errdefs.NotImplemented_, match="^service nope.v1.Svc$"):
        await client.call("nope.v1.Svc", "Echo", S(), S)
    with pytest.raises(errdefs.NotImplemented_, match="^method Nope$"):
        await client.call(SVC, "Nope", S(), S)
    # the connection is still good
    assert (await client.call(SVC, "Echo", S(value="ok"), S)).value == "ok"


async def test_concurrent_calls_are_multiplexed_on_one_connection(client: Client) -> None:
    delays = [200, 150, 100, 50, 0] * 4
    t0 = time.monotonic()
    results = await asyncio.gather(*(client.call(SVC, "Sleep", I64(value=d), I64) for d in delays))
    elapsed = time.monotonic() - t0
    assert [r.value for r in results] == delays
    assert elapsed < 1.0  # serially it would take 2 s


async def test_client_stream_ids_are_odd_and_increase_by_two(client: Client) -> None:
    s1 = await client.stream(SVC, "Count", I64, request=I64(value=0))
    s2 = await client.stream(SVC, "Count", I64, request=I64(value=0))
    assert s2.stream_id == s1.stream_id + 2 and s1.stream_id % 2 == 1
    assert [m async for m in s1] == [] and [m async for m in s2] == []


# ---------------------------------------------------------------------------- deadlines


async def test_client_timeout_raises_deadline_exceeded_and_the_server_cancels_the_handler(
    client: Client, echo: Echo
) -> None:
    with pytest.raises(errdefs.DeadlineExceeded):
        await client.call(SVC, "Block", S(), S, timeout=0.2)
    async with asyncio.timeout(2):
        await echo.cancelled.wait()


async def test_timeout_nano_is_sent_from_the_client_timeout(client: Client, echo: Echo) -> None:
    loop = asyncio.get_running_loop()
    before = loop.time()
    await client.call(SVC, "Echo", S(), S, timeout=30)
    info = echo.seen[-1]
    assert info is not None and info.deadline is not None
    assert before + 29 < info.deadline <= loop.time() + 30


async def test_server_answers_deadline_exceeded_when_timeout_nano_passes(
    raw: Raw, echo: Echo
) -> None:
    await raw.request(1, "Block", timeout_nano=100_000_000)
    t0 = time.monotonic()
    sid, resp = await raw.recv_status()
    assert sid == 1
    assert resp.status.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert 0.05 < time.monotonic() - t0 < 2
    assert echo.cancelled.is_set()


# ---------------------------------------------------------------------------- streaming


async def test_server_streaming_yields_messages_then_ends(client: Client) -> None:
    st = await client.stream(SVC, "Count", I64, request=I64(value=3))
    assert [m.value async for m in st] == [0, 1, 2]
    assert await st.recv() is None


async def test_server_streaming_error_after_messages_is_raised(client: Client) -> None:
    st = await client.stream(SVC, "CountThenFail", I64, request=I64(value=2))
    got = []
    with pytest.raises(errdefs.FailedPrecondition, match="ran out"):
        async for m in st:
            got.append(m.value)
    assert got == [0, 1]


async def test_client_streaming_sums_what_was_sent(client: Client) -> None:
    st = await client.stream(SVC, "Sum", I64, client_streaming=True, server_streaming=False)
    for v in (1, 2, 39):
        await st.send(I64(value=v))
    assert await st.close_and_recv() == I64(value=42)


async def test_client_streaming_first_message_may_ride_in_the_request(client: Client) -> None:
    st = await client.stream(
        SVC, "Sum", I64, request=I64(value=40), client_streaming=True, server_streaming=False
    )
    await st.send(I64(value=2))
    assert (await st.close_and_recv()).value == 42  # type: ignore[union-attr]


async def test_bidi_stream_answers_each_message_before_the_close(client: Client) -> None:
    st = await client.stream(SVC, "Upper", S, client_streaming=True, server_streaming=True)
    for word in ("a", "bc", ""):
        await st.send(S(value=word))
        assert await st.recv() == S(value=word.upper())
    await st.close_send()
    assert await st.recv() is None


async def test_server_streaming_wire_sequence(raw: Raw) -> None:
    await raw.request(1, "Count", I64(value=2).SerializeToString(), flags=FLAG_REMOTE_CLOSED)
    frames = [await raw.recv() for _ in range(3)]
    assert [(h.type, h.flags) for h, _ in frames] == [
        (MessageType.DATA, 0),
        (MessageType.DATA, 0),
        (MessageType.DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA),
    ]
    assert I64.FromString(frames[1][1]).value == 1
    assert frames[2][1] == b""


async def test_client_streaming_wire_sequence_ends_with_a_response(raw: Raw) -> None:
    await raw.request(1, "Sum", flags=FLAG_REMOTE_OPEN)
    await raw.send(1, MessageType.DATA, 0, I64(value=5).SerializeToString())
    await raw.send(1, MessageType.DATA, 0, b"")  # zero-length payload: the empty message (0)
    await raw.send(1, MessageType.DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA)
    sid, resp = await raw.recv_status()
    assert sid == 1 and resp.status.code == 0
    assert I64.FromString(resp.payload).value == 5


async def test_data_close_frame_must_not_carry_data(raw: Raw) -> None:
    await raw.request(1, "Sum", flags=FLAG_REMOTE_OPEN)
    await raw.send(1, MessageType.DATA, FLAG_REMOTE_CLOSED, I64(value=5).SerializeToString())
    sid, resp = await raw.recv_status()
    assert sid == 1 and resp.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert resp.status.message == "data close message cannot include data"


# ---------------------------------------------------------------------------- frame checks


async def test_even_stream_id_is_invalid_argument_on_that_id(raw: Raw) -> None:
    await raw.request(2, "Echo")
    sid, resp = await raw.recv_status()
    assert sid == 2
    assert resp.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert resp.status.message == "StreamID must be odd for client initiated streams"


async def test_reused_or_decreasing_stream_id_is_invalid_argument(raw: Raw) -> None:
    await raw.request(5, "Echo", S(value="a").SerializeToString())
    sid, resp = await raw.recv_status()
    assert (sid, resp.status.code) == (5, 0)
    for bad in (5, 3):
        await raw.request(bad, "Echo")
        sid, resp = await raw.recv_status()
        assert sid == bad
        assert resp.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert resp.status.message == "StreamID cannot be re-used and must increment"
    await raw.request(7, "Echo", S(value="b").SerializeToString())
    sid, resp = await raw.recv_status()
    assert (sid, S.FromString(resp.payload).value) == (7, "b")


async def test_data_on_an_unknown_stream_is_invalid_argument(raw: Raw) -> None:
    await raw.send(9, MessageType.DATA, 0, b"x")
    sid, resp = await raw.recv_status()
    assert sid == 9
    assert resp.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert resp.status.message == "StreamID is no longer active"


async def test_oversized_message_gets_resource_exhausted_and_the_connection_survives(
    raw: Raw,
) -> None:
    big = MAX_MESSAGE_LENGTH + 1
    await raw.send(1, MessageType.REQUEST, 0, b"\x00" * big)
    sid, resp = await raw.recv_status()
    assert sid == 1
    assert resp.status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert (
        resp.status.message
        == f"message length {big} exceed maximum message size of {MAX_MESSAGE_LENGTH}"
    )
    await raw.request(3, "Echo", S(value="still here").SerializeToString())
    sid, resp = await raw.recv_status()
    assert (sid, S.FromString(resp.payload).value) == (3, "still here")


async def test_client_refuses_to_send_an_oversized_request(client: Client) -> None:
    with pytest.raises(frame.OversizedMessageError):
        await client.call(SVC, "Echo", S(value="x" * MAX_MESSAGE_LENGTH), S)
    assert (await client.call(SVC, "Echo", S(value="ok"), S)).value == "ok"


async def test_oversized_response_becomes_resource_exhausted(client: Client) -> None:
    with pytest.raises(errdefs.ResourceExhausted, match="exceed maximum message size"):
        await client.call(SVC, "Big", S(), None)


# ---------------------------------------------------------------------------- connections


async def test_connection_loss_fails_pending_calls_with_unavailable(
    server: Server, echo: Echo
) -> None:
    c = await Client.connect(server.address)
    call = asyncio.ensure_future(c.call(SVC, "Block", S(), S))
    async with asyncio.timeout(2):
        await echo.started.wait()
    await server.stop(0)
    with pytest.raises(errdefs.Unavailable):
        async with asyncio.timeout(2):
            await call
    assert c.closed
    with pytest.raises(errdefs.Unavailable):
        await c.call(SVC, "Echo", S(), S)
    await c.close()


async def test_close_fails_pending_calls_with_unavailable(client: Client, echo: Echo) -> None:
    call = asyncio.ensure_future(client.call(SVC, "Block", S(), S))
    await echo.started.wait()
    await client.close()
    with pytest.raises(errdefs.Unavailable):
        await call
    async with asyncio.timeout(2):
        await echo.cancelled.wait()  # the server noticed the peer went away


async def test_stop_waits_for_active_calls_within_the_grace(server: Server, client: Client) -> None:
    call = asyncio.ensure_future(client.call(SVC, "Sleep", I64(value=200), I64))
    await asyncio.sleep(0.05)
    await server.stop(5)
    assert (await call).value == 200
    assert not os.path.exists(server.address)


async def test_socket_mode_is_0660_and_a_stale_socket_is_replaced(sockdir: str) -> None:
    path = os.path.join(sockdir, "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # leaves the file behind, nobody listening
    srv = Server(address=path, uid=os.getuid(), gid=os.getgid())
    srv.register(SVC, Echo().methods())
    await srv.start()
    try:
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        async with await Client.connect(path) as c:
            assert (await c.call(SVC, "Echo", S(value="x"), S)).value == "x"
    finally:
        await srv.stop(0)


async def test_start_registers_every_service_with_register_ttrpc(sockdir: str) -> None:
    class Svc:
        def register_ttrpc(self, server: Server) -> None:
            server.register("a.v1.A", {"Echo": svc.unary(Echo().echo, S)})

    srv = Server(address=os.path.join(sockdir, "s.sock"))
    await srv.start([Svc(), object()])
    try:
        assert srv.services == {"a.v1.A": ["Echo"]}
        async with await Client.connect(srv.address) as c:
            assert (await c.call("a.v1.A", "Echo", S(value="y"), S)).value == "y"
    finally:
        await srv.stop(0)


async def test_duplicate_service_registration_is_refused() -> None:
    srv = Server()
    srv.register(SVC, {})
    with pytest.raises(errdefs.AlreadyExists):
        srv.register(SVC, {})


async def test_start_without_an_address_is_an_error() -> None:
    with pytest.raises(errdefs.InvalidArgument):
        await Server().start([])


async def test_serve_socket_serves_an_already_listening_socket(sockdir: str, echo: Echo) -> None:
    path = os.path.join(sockdir, "fd3.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()
    srv = Server()
    srv.register(SVC, echo.methods())
    await srv.serve_socket(listener)
    try:
        async with await Client.connect(path) as c:
            assert (await c.call(SVC, "Echo", S(value="fd"), S)).value == "fd"
    finally:
        await srv.stop(0)


async def test_register_service_uses_the_descriptor_for_types_and_kinds(sockdir: str) -> None:
    class Content:
        async def Info(self, req: content_pb2.InfoRequest) -> content_pb2.InfoResponse:  # noqa: N802
            return content_pb2.InfoResponse(info=content_pb2.Info(digest=req.digest, size=3))

        async def Read(self, req: content_pb2.ReadContentRequest) -> AsyncIterator[Any]:  # noqa: N802
            for off in range(req.offset, req.offset + 2):
                yield content_pb2.ReadContentResponse(offset=off, data=b"d")

    desc = content_pb2.DESCRIPTOR.services_by_name["Content"]
    srv = Server(address=os.path.join(sockdir, "c.sock"))
    srv.register_service(desc, Content())
    await srv.start()
    try:
        assert srv.services == {"containerd.services.content.v1.Content": ["Info", "Read"]}
        async with await Client.connect(srv.address) as c:
            name = desc.full_name
            info = await c.call(
                name, "Info", content_pb2.InfoRequest(digest="sha256:ab"), content_pb2.InfoResponse
            )
            assert (info.info.digest, info.info.size) == ("sha256:ab", 3)
            st = await c.stream(
                name,
                "Read",
                content_pb2.ReadContentResponse,
                request=content_pb2.ReadContentRequest(offset=7),
            )
            assert [m.offset async for m in st] == [7, 8]
            with pytest.raises(errdefs.NotImplemented_):
                await c.call(name, "Delete", content_pb2.DeleteContentRequest(), empty_pb2.Empty)
    finally:
        await srv.stop(0)


_CONNECT_AS_NOBODY = """
import os, socket, struct, sys
os.setgroups([]); os.setgid(65534); os.setuid(65534)
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
req = bytes.fromhex(sys.argv[2])
s.settimeout(5)
try:
    s.sendall(struct.pack(">IIBB", len(req), 1, 1, 0) + req)
    print(len(s.recv(100)))
except (BrokenPipeError, ConnectionResetError):
    print(0)
"""


@pytest.mark.root
async def test_peer_with_another_uid_is_refused_when_same_user_is_required(sockdir: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("switching to another uid needs root")
    os.chmod(sockdir, 0o755)
    req = request_pb2.Request(service=SVC, method="Echo").SerializeToString().hex()

    async def attempt(require: bool) -> str:
        path = os.path.join(sockdir, f"peer{int(require)}.sock")
        srv = Server(address=path, require_same_user=require)
        srv.register(SVC, Echo().methods())
        await srv.start()
        os.chmod(path, 0o666)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _CONNECT_AS_NOBODY, path, req, stdout=subprocess.PIPE
            )
            out, _ = await proc.communicate()
            assert proc.returncode == 0
            return out.decode().strip()
        finally:
            await srv.stop(0)

    assert await attempt(True) == "0"  # closed without an answer
    assert int(await attempt(False)) > 10  # a Response frame
