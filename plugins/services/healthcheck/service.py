from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from pycontainerd.api.grpc.health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING


class HealthService(health_pb2_grpc.HealthServicer):
    """Reports SERVING for the server ("") while the daemon runs, as containerd does."""

    def __init__(self) -> None:
        self._stopping = asyncio.Event()

    def register_grpc(self, server: Any) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self, server)

    async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802
        return health_pb2.HealthCheckResponse(status=SERVING)

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:  # noqa: N802
        yield health_pb2.HealthCheckResponse(status=SERVING)
        await self._stopping.wait()
        yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.NOT_SERVING)

    def close(self) -> None:
        self._stopping.set()
