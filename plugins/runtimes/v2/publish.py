"""``pycontainerd publish``: the legacy shim event path (``-publish-binary``).

A shim runs ``pycontainerd --address <grpc> publish --namespace NS --topic T`` with a protobuf
``google.protobuf.Any`` on stdin; this sends it to the daemon's
``containerd.services.events.v1.Events/Publish`` (containerd ``cmd/containerd/command/
publish.go``). Synchronous: it runs in its own short-lived process.
"""

from __future__ import annotations

import argparse
import sys
from typing import BinaryIO

from pycontainerd.core import errdefs

PUBLISH_TIMEOUT = 10.0


def read_event(stream: BinaryIO) -> object:
    """The ``Any`` on ``stream``; InvalidArgument when it is not one."""
    from google.protobuf import any_pb2

    data = stream.read()
    event = any_pb2.Any()
    try:
        event.ParseFromString(data)
    except Exception as e:  # protobuf decode error
        raise errdefs.InvalidArgument(f"failed to read event payload: {e}") from e
    if not event.type_url:
        raise errdefs.InvalidArgument("failed to read event payload: no type url")
    return event


def publish(address: str, namespace: str, topic: str, event: object) -> None:
    """Publish ``event`` (a protobuf Any) on ``topic`` in ``namespace`` to the daemon at
    ``address`` (a unix socket path, ``unix://`` allowed)."""
    import grpc

    from pycontainerd.api.containerd.services.events.v1 import events_pb2, events_pb2_grpc
    from pycontainerd.core import namespaces

    path = address[len("unix://") :] if address.startswith("unix://") else address
    with grpc.insecure_channel(f"unix:{path}") as channel:
        stub = events_pb2_grpc.EventsStub(channel)
        try:
            stub.Publish(
                events_pb2.PublishRequest(topic=topic, event=event),
                metadata=((namespaces.GRPC_HEADER, namespace),),
                timeout=PUBLISH_TIMEOUT,
            )
        except grpc.RpcError as e:
            raise errdefs.from_grpc(e) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``publish`` subcommand's flags (``--address`` is the daemon's global flag)."""
    parser.add_argument("--namespace", required=True, help="namespace to publish to")
    parser.add_argument("--topic", required=True, help="topic of the event")


def run(address: str, namespace: str, topic: str, stdin: BinaryIO | None = None) -> int:
    """The subcommand: read the Any from stdin and publish it; 0 on success, 1 (with a
    message on stderr) on failure."""
    from pycontainerd.core import namespaces

    try:
        namespaces.validate(namespace)
        event = read_event(stdin if stdin is not None else sys.stdin.buffer)
        publish(address, namespace, topic, event)
    except errdefs.ContainerdError as e:
        print(f"pycontainerd publish: {e}", file=sys.stderr)
        return 1
    return 0
