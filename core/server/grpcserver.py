"""The shared grpc.aio server on a unix socket, and the one interceptor that maps errors.

Servicers just raise errdefs categories; the interceptor turns them into statuses, and puts
the ``containerd-namespace`` and ``containerd-lease`` metadata into context variables.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import attrs
import grpc

from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.server.sockets import prepare_unix_socket, secure_unix_socket, strip_unix

log = logging.getLogger(__name__)

LEASE_HEADER = "containerd-lease"


@attrs.define(eq=False)
class CallStats:
    """Counters the metrics server exposes: (method, code) -> count, and latency sums."""

    counts: dict[tuple[str, str], int] = attrs.Factory(dict)
    seconds: dict[str, float] = attrs.Factory(dict)

    def record(self, method: str, code: grpc.StatusCode, elapsed: float) -> None:
        key = (method, code.name)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.seconds[method] = self.seconds.get(method, 0.0) + elapsed


def _lease_context() -> Any:
    try:
        from pycontainerd.core import leases
    except ImportError:  # the leases contract is optional for the interceptor
        return None
    return getattr(leases, "_current", None)


def _status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    code = errdefs.to_grpc_code(exc)
    msg = str(exc) or type(exc).__name__
    return code, msg


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Sets namespace/lease context; maps raised errors to gRPC codes; counts calls.

    The wrapped handler of each method is built once and cached: per call it only reads the
    two headers from the call's metadata."""

    def __init__(self, stats: CallStats | None = None) -> None:
        self.stats = stats or CallStats()
        self._handlers: dict[str, Any] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        wrapped = self._handlers.get(details.method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(details)
        if handler is None:
            return None
        wrapped = self._wrap(details.method, handler)
        self._handlers[details.method] = wrapped
        return wrapped

    def _wrap(self, method: str, handler: Any) -> Any:
        stats = self.stats

        @contextlib.contextmanager
        def scope(context: grpc.aio.ServicerContext) -> Any:
            ns = lease = None
            for k, v in context.invocation_metadata() or ():
                if k == namespaces.GRPC_HEADER:
                    ns = v
                elif k == LEASE_HEADER:
                    lease = v
            t_ns = namespaces.set_current(ns if isinstance(ns, str) else None)
            lease_var = _lease_context() if isinstance(lease, str) else None
            t_lease = lease_var.set(lease) if lease_var is not None else None
            try:
                yield
            finally:
                if lease_var is not None and t_lease is not None:
                    lease_var.reset(t_lease)
                namespaces.reset(t_ns)

        async def fail(context: grpc.aio.ServicerContext, exc: BaseException, t0: float) -> None:
            code, msg = _status_of(exc)
            stats.record(method, code, time.monotonic() - t0)
            if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
                log.error("%s failed: %s", method, msg, exc_info=exc)
            else:
                log.debug("%s: %s: %s", method, code.name, msg)
            await context.abort(code, msg)

        def wrap_single(inner: Callable[..., Any]) -> Callable[..., Any]:
            """For methods answering with one message (unary-unary, stream-unary)."""

            async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                t0 = time.monotonic()
                with scope(context):
                    try:
                        resp = await inner(request, context)
                    except grpc.aio.AbortError:
                        raise
                    except Exception as e:  # noqa: BLE001
                        await fail(context, e, t0)
                stats.record(method, grpc.StatusCode.OK, time.monotonic() - t0)
                return resp

            return call

        def wrap_stream(inner: Callable[..., Any]) -> Callable[..., Any]:
            """For methods answering with a stream (unary-stream, stream-stream)."""

            async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                t0 = time.monotonic()
                with scope(context):
                    try:
                        async for item in inner(request, context):
                            yield item
                    except grpc.aio.AbortError:
                        raise
                    except Exception as e:  # noqa: BLE001
                        await fail(context, e, t0)
                stats.record(method, grpc.StatusCode.OK, time.monotonic() - t0)

            return call

        ser = (handler.request_deserializer, handler.response_serializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(wrap_single(handler.unary_unary), *ser)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(wrap_single(handler.stream_unary), *ser)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(wrap_stream(handler.unary_stream), *ser)
        return grpc.stream_stream_rpc_method_handler(wrap_stream(handler.stream_stream), *ser)


@attrs.define(eq=False, kw_only=True)
class GRPCServer:
    """One grpc.aio server on a unix socket; every plugin with ``register_grpc`` joins it."""

    address: str
    uid: int = 0
    gid: int = 0
    max_recv_message_size: int = 16 << 20
    max_send_message_size: int = 16 << 20
    stats: CallStats = attrs.Factory(CallStats)
    _server: grpc.aio.Server | None = None
    registered: list[str] = attrs.Factory(list)

    async def start(self, services: Sequence[Any]) -> None:
        path = strip_unix(self.address)
        self._server = grpc.aio.server(
            interceptors=[ErrorInterceptor(self.stats)],
            options=[
                ("grpc.max_receive_message_length", self.max_recv_message_size),
                ("grpc.max_send_message_length", self.max_send_message_size),
                ("grpc.so_reuseport", 0),
            ],
        )
        for svc in services:
            register = getattr(svc, "register_grpc", None)
            if register is not None:
                register(self._server)
                self.registered.append(type(svc).__name__)
        prepare_unix_socket(path)
        port = self._server.add_insecure_port(f"unix:{path}")
        if port == 0:
            raise errdefs.Unavailable(f"failed to listen on {path}")
        secure_unix_socket(path, self.uid, self.gid)
        await self._server.start()
        log.info("serving grpc address=%s services=%d", path, len(self.registered))

    async def stop(self, grace: float = 5.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(strip_unix(self.address))
