"""``pyctr namespaces``: ls, create, rm (through the Namespaces service)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pycontainerd.cli.pyctr.commands.images import run_async
from pycontainerd.cli.pyctr.table import print_table
from pycontainerd.core import errdefs


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("namespaces", aliases=["namespace", "ns"], help="manage namespaces")
    nsub = p.add_subparsers(dest="namespaces_command", required=True)
    ls = nsub.add_parser("ls", aliases=["list"], help="list namespaces")
    ls.add_argument("-q", "--quiet", action="store_true", help="print only the names")
    ls.set_defaults(func=run_ls)
    create = nsub.add_parser("create", aliases=["c"], help="create a namespace")
    create.add_argument("name")
    create.add_argument("labels", nargs="*", help="key=value labels")
    create.set_defaults(func=run_create)
    rm = nsub.add_parser("rm", aliases=["remove"], help="remove namespaces")
    rm.add_argument("names", nargs="+")
    rm.set_defaults(func=run_rm)


def _stub(channel: Any) -> tuple[Any, Any]:
    from pycontainerd.api.containerd.services.namespaces.v1 import namespace_pb2 as pb
    from pycontainerd.api.containerd.services.namespaces.v1 import namespace_pb2_grpc as pb_grpc

    return pb, pb_grpc.NamespacesStub(channel)


async def _call(fn: Any, req: Any) -> Any:
    import grpc

    try:
        return await fn(req)
    except grpc.RpcError as e:
        raise errdefs.from_grpc(e) from None


def run_ls(args: argparse.Namespace) -> int:
    async def go(channel: Any) -> int:
        pb, stub = _stub(channel)
        resp = await _call(stub.List, pb.ListNamespacesRequest())
        if args.quiet:
            for n in resp.namespaces:
                print(n.name)
            return 0
        rows = [
            [n.name, ",".join(f"{k}={v}" for k, v in sorted(n.labels.items()))]
            for n in resp.namespaces
        ]
        print_table(["NAME", "LABELS"], rows, padding=1)
        return 0

    return run_async(args, go)


def run_create(args: argparse.Namespace) -> int:
    labels = dict(kv.partition("=")[::2] for kv in args.labels)

    async def go(channel: Any) -> int:
        pb, stub = _stub(channel)
        await _call(
            stub.Create,
            pb.CreateNamespaceRequest(namespace=pb.Namespace(name=args.name, labels=labels)),
        )
        return 0

    return run_async(args, go)


def run_rm(args: argparse.Namespace) -> int:
    async def go(channel: Any) -> int:
        pb, stub = _stub(channel)
        rc = 0
        for name in args.names:
            try:
                await _call(stub.Delete, pb.DeleteNamespaceRequest(name=name))
            except errdefs.ContainerdError as e:
                print(f"pyctr: unable to delete {name}: {e}", file=sys.stderr)
                rc = 1
                continue
            print(name)
        return rc

    return run_async(args, go)
