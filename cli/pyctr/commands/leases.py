"""``pyctr leases``: ls, create, rm (through the Leases service)."""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any

from pycontainerd.cli.pyctr.commands.images import run_async
from pycontainerd.cli.pyctr.table import print_table
from pycontainerd.core import durations, errdefs, leases


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("leases", aliases=["lease"], help="manage leases")
    lsub = p.add_subparsers(dest="leases_command", required=True)
    ls = lsub.add_parser("ls", aliases=["list"], help="list leases")
    ls.add_argument("-q", "--quiet", action="store_true", help="print only the ids")
    ls.add_argument("filters", nargs="*")
    ls.set_defaults(func=run_ls)
    create = lsub.add_parser("create", help="create a lease")
    create.add_argument("-i", "--id", default="", help="lease id (default: random)")
    create.add_argument("-x", "--expires", default="24h", help="expiry duration (0: never)")
    create.add_argument("labels", nargs="*", help="key=value labels")
    create.set_defaults(func=run_create)
    rm = lsub.add_parser("rm", aliases=["delete", "remove"], help="delete leases")
    rm.add_argument("--sync", action="store_true", help="wait for garbage collection")
    rm.add_argument("ids", nargs="+")
    rm.set_defaults(func=run_rm)


def run_ls(args: argparse.Namespace) -> int:
    from pycontainerd.cli.pyctr import remote

    async def go(channel: Any) -> int:
        ls = await remote.RemoteLeases(channel).list(args.filters)
        if args.quiet:
            for lease in ls:
                print(lease.id)
            return 0
        rows = []
        for lease in ls:
            created = lease.created_at.strftime("%Y-%m-%dT%H:%M:%SZ") if lease.created_at else "-"
            labels = ",".join(f"{k}={v}" for k, v in sorted(lease.labels.items())) or "-"
            rows.append([lease.id, created, labels])
        print_table(["ID", "CREATED AT", "LABELS"], rows, padding=1)
        return 0

    return run_async(args, go)


def run_create(args: argparse.Namespace) -> int:
    from pycontainerd.cli.pyctr import remote
    from pycontainerd.core.images.importer import random_lease_id

    labels = dict(kv.partition("=")[::2] for kv in args.labels)
    expires = durations.parse(args.expires) if args.expires else None
    if expires:
        when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=expires)
        labels[leases.LABEL_GC_EXPIRE] = when.strftime("%Y-%m-%dT%H:%M:%SZ")

    async def go(channel: Any) -> int:
        lease = await remote.RemoteLeases(channel).create(args.id or random_lease_id(), labels)
        print(lease.id)
        return 0

    return run_async(args, go)


def run_rm(args: argparse.Namespace) -> int:
    from pycontainerd.cli.pyctr import remote

    async def go(channel: Any) -> int:
        mgr = remote.RemoteLeases(channel)
        rc = 0
        for lid in args.ids:
            try:
                await mgr.delete(lid, sync=args.sync)
            except errdefs.ContainerdError as e:
                print(f"pyctr: unable to delete lease {lid}: {e}", file=sys.stderr)
                rc = 1
                continue
            print(lid)
        return rc

    return run_async(args, go)
