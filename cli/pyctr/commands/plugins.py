from __future__ import annotations

import argparse

from pycontainerd.api.containerd.services.introspection.v1 import (
    introspection_pb2 as pb,
)
from pycontainerd.api.containerd.services.introspection.v1 import (
    introspection_pb2_grpc as pb_grpc,
)
from pycontainerd.cli.pyctr.client import Client, call
from pycontainerd.cli.pyctr.table import print_table
from pycontainerd.core import errdefs


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("plugins", aliases=["plugin"], help="provides information about plugins")
    psub = p.add_subparsers(dest="plugins_command", required=True)
    ls = psub.add_parser("ls", aliases=["list"], help="list plugins and their status")
    ls.add_argument("-q", "--quiet", action="store_true", help="print only the plugin IDs")
    ls.add_argument("-d", "--detailed", action="store_true", help="print detailed information")
    ls.add_argument("filters", nargs="*", help="filters, e.g. type==io.containerd.grpc.v1")
    ls.set_defaults(func=run_ls)


def _platforms(p: pb.Plugin) -> str:
    names = sorted(
        {"/".join(x for x in (q.os, q.architecture, q.variant) if x) for q in p.platforms}
    )
    return ",".join(names) or "-"


def _status(p: pb.Plugin) -> str:
    if not p.HasField("init_err"):
        return "ok"
    return "skip" if "skip plugin" in p.init_err.message else "error"


def run_ls(args: argparse.Namespace) -> int:
    with Client(args.address, args.namespace) as c:
        resp = call(
            c.stub(pb_grpc.IntrospectionStub).Plugins,
            pb.PluginsRequest(filters=args.filters),
            timeout=args.timeout or None,
        )
    if args.quiet:
        for p in resp.plugins:
            print(p.id)
        return 0
    if args.detailed:
        for p in resp.plugins:
            print(f"Type:          {p.type}")
            print(f"ID:            {p.id}")
            if p.requires:
                print("Requires:      ")
                for r in p.requires:
                    print(f"               {r}")
            if p.platforms:
                print(f"Platforms:     {_platforms(p)}")
            if p.exports:
                print("Exports:       ")
                for k, v in sorted(p.exports.items()):
                    print(f"               {k}  {v}")
            if p.capabilities:
                print(f"Capabilities:  {', '.join(p.capabilities)}")
            if p.HasField("init_err"):
                code = errdefs.code_from_number(p.init_err.code).name
                print("Error:         ")
                print(f"               Code:     {code}")
                print(f"               Message:  {p.init_err.message}")
            print()
        return 0
    print_table(
        ["TYPE", "ID", "PLATFORMS", "STATUS"],
        [[p.type, p.id, _platforms(p), _status(p)] for p in resp.plugins],
    )
    return 0
