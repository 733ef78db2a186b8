"""ttrpc, containerd's lightweight RPC over unix sockets (protocol 1.2: unary and streaming).

Wire format in :mod:`.frame`; the server in :mod:`.server` (``Server``), the client in
:mod:`.client` (``Client``); method descriptions in :mod:`.service`; request metadata and the
handler's view of its request in :mod:`.metadata`; statuses in :mod:`.status`.

    server = Server(address="/run/pycontainerd/pycontainerd.sock.ttrpc")
    server.register_service(events_pb2.DESCRIPTOR.services_by_name["Events"], impl)
    await server.start()

    client = await Client.connect("unix:///run/pycontainerd/pycontainerd.sock.ttrpc")
    await client.call("containerd.services.events.ttrpc.v1.Events", "Forward", req, Empty)
"""

from __future__ import annotations

from pycontainerd.core.ttrpc.client import Client, ClientStream
from pycontainerd.core.ttrpc.frame import MAX_MESSAGE_LENGTH, OversizedMessageError
from pycontainerd.core.ttrpc.metadata import RequestInfo, current
from pycontainerd.core.ttrpc.server import Server
from pycontainerd.core.ttrpc.service import (
    Method,
    bidi_stream,
    client_stream,
    server_stream,
    unary,
)

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "Client",
    "ClientStream",
    "Method",
    "OversizedMessageError",
    "RequestInfo",
    "Server",
    "bidi_stream",
    "client_stream",
    "current",
    "server_stream",
    "unary",
]
