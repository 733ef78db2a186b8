from __future__ import annotations

from typing import Any

import pycontainerd
from pycontainerd.api.containerd.services.version.v1 import version_pb2, version_pb2_grpc


class VersionService(version_pb2_grpc.VersionServicer):
    def register_grpc(self, server: Any) -> None:
        version_pb2_grpc.add_VersionServicer_to_server(self, server)

    async def Version(self, request: Any, context: Any) -> version_pb2.VersionResponse:  # noqa: N802
        return version_pb2.VersionResponse(
            version=pycontainerd.__version__, revision=pycontainerd.__revision__
        )
