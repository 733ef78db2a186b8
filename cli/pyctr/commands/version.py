from __future__ import annotations

import argparse
import sys

from google.protobuf import empty_pb2

import pycontainerd
from pycontainerd.api.containerd.services.introspection.v1 import introspection_pb2_grpc
from pycontainerd.api.containerd.services.version.v1 import version_pb2_grpc
from pycontainerd.cli.pyctr.client import Client, call


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("version", help="print the client and server versions")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("Client:")
    print(f"  Version:  {pycontainerd.__version__}")
    print(f"  Revision: {pycontainerd.__revision__}")
    print()
    with Client(args.address, args.namespace) as c:
        v = call(
            c.stub(version_pb2_grpc.VersionStub).Version,
            empty_pb2.Empty(),
            timeout=args.timeout or None,
        )
        info = call(
            c.stub(introspection_pb2_grpc.IntrospectionStub).Server,
            empty_pb2.Empty(),
            timeout=args.timeout or None,
        )
    print("Server:")
    print(f"  Version:  {v.version}")
    print(f"  Revision: {v.revision}")
    print(f"  UUID: {info.uuid}")
    for d in info.deprecations:
        print(f"WARNING: DEPRECATION: {d.id}: {d.message}", file=sys.stderr)
    return 0
