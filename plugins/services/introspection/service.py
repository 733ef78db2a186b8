"""gRPC front-end of introspection: converts core plugin records to protos, nothing more."""

from __future__ import annotations

from typing import Any

from google.protobuf import timestamp_pb2

from pycontainerd.api.containerd.services.introspection.v1 import (
    introspection_pb2 as pb,
)
from pycontainerd.api.containerd.services.introspection.v1 import (
    introspection_pb2_grpc as pb_grpc,
)
from pycontainerd.api.containerd.types import platform_pb2
from pycontainerd.api.google.rpc import status_pb2
from pycontainerd.core import errdefs
from pycontainerd.core.introspection import Local
from pycontainerd.core.plugin.context import Plugin, Status


def plugin_to_proto(p: Plugin) -> pb.Plugin:
    msg = pb.Plugin(
        type=p.registration.type,
        id=p.registration.id,
        requires=list(p.registration.requires),
        platforms=[
            platform_pb2.Platform(
                os=x.os, architecture=x.architecture, variant=x.variant, os_version=x.os_version
            )
            for x in p.meta.platforms
        ],
        exports=dict(p.meta.exports),
        capabilities=list(p.meta.capabilities),
    )
    if p.error is not None:
        code = (
            errdefs.code_number(errdefs.to_grpc_code(p.error))
            if p.status is Status.ERROR
            else errdefs.code_number(errdefs.Unknown.code)
        )
        msg.init_err.CopyFrom(status_pb2.Status(code=code, message=p.error_text()))
    return msg


class IntrospectionService(pb_grpc.IntrospectionServicer):
    def __init__(self, local: Local) -> None:
        self.local = local

    def register_grpc(self, server: Any) -> None:
        pb_grpc.add_IntrospectionServicer_to_server(self, server)

    async def Plugins(self, request: pb.PluginsRequest, context: Any) -> pb.PluginsResponse:  # noqa: N802
        plugins = self.local.list_plugins(list(request.filters))
        return pb.PluginsResponse(plugins=[plugin_to_proto(p) for p in plugins])

    async def Server(self, request: Any, context: Any) -> pb.ServerResponse:  # noqa: N802
        deps = []
        for w in self.local.deprecations():
            ts = timestamp_pb2.Timestamp()
            ts.FromDatetime(w.last_occurrence)
            deps.append(pb.DeprecationWarning(id=w.id, message=w.message, last_occurrence=ts))
        return pb.ServerResponse(
            uuid=self.local.uuid(),
            pid=self.local.pid(),
            pidns=self.local.pidns(),
            deprecations=deps,
        )

    async def PluginInfo(
        self, request: pb.PluginInfoRequest, context: Any
    ) -> pb.PluginInfoResponse:  # noqa: N802
        p = self.local.plugin(request.type, request.id)
        if request.HasField("options"):
            if p.error is not None:
                raise errdefs.FailedPrecondition(f"plugin {p.uri} failed to load: {p.error_text()}")
            raise errdefs.NotImplemented_(f"plugin {p.uri} has no extra info")
        return pb.PluginInfoResponse(plugin=plugin_to_proto(p))
