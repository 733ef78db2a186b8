"""A thin gRPC client: one channel, the namespace header on every call, errdefs errors."""

from __future__ import annotations

from typing import Any

import grpc

from pycontainerd.core import errdefs, namespaces


class _Metadata(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, md: list[tuple[str, str]]) -> None:
        self.md = md

    def _details(self, d: Any) -> Any:
        md = list(d.metadata or []) + self.md
        return d._replace(metadata=md) if hasattr(d, "_replace") else _Details(d, md)

    def intercept_unary_unary(self, cont, d, req):  # type: ignore[no-untyped-def]
        return cont(_Details(d, self.md), req)

    def intercept_unary_stream(self, cont, d, req):  # type: ignore[no-untyped-def]
        return cont(_Details(d, self.md), req)

    def intercept_stream_unary(self, cont, d, it):  # type: ignore[no-untyped-def]
        return cont(_Details(d, self.md), it)

    def intercept_stream_stream(self, cont, d, it):  # type: ignore[no-untyped-def]
        return cont(_Details(d, self.md), it)


class _Details(grpc.ClientCallDetails):
    def __init__(self, d: Any, extra: list[tuple[str, str]]) -> None:
        self.method = d.method
        self.timeout = d.timeout
        self.credentials = d.credentials
        self.wait_for_ready = getattr(d, "wait_for_ready", None)
        self.compression = getattr(d, "compression", None)
        self.metadata = list(d.metadata or []) + extra


class Client:
    def __init__(
        self,
        address: str,
        namespace: str = namespaces.DEFAULT,
        timeout: float | None = None,
        lease: str = "",
    ) -> None:
        target = address if address.startswith("unix:") else f"unix:{address}"
        self.address = address
        self.namespace = namespace
        self.timeout = timeout
        md = [(namespaces.GRPC_HEADER, namespace)]
        if lease:
            md.append(("containerd-lease", lease))
        self._raw = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", 16 << 20),
                ("grpc.max_send_message_length", 16 << 20),
            ],
        )
        self.channel = grpc.intercept_channel(self._raw, _Metadata(md))

    def stub(self, stub_cls: type) -> Any:
        return stub_cls(self.channel)

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def call(fn: Any, request: Any, timeout: float | None = None) -> Any:
    """Invoke a unary stub method, turning grpc errors into errdefs categories."""
    try:
        return fn(request, timeout=timeout)
    except grpc.RpcError as e:
        raise errdefs.from_grpc(e) from None
