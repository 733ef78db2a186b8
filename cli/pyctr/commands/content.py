"""``pyctr content``: ls, get (through the Content service)."""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any

from pycontainerd.cli.pyctr.commands.images import run_async
from pycontainerd.cli.pyctr.progress import human_duration, human_size
from pycontainerd.cli.pyctr.table import print_table


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("content", help="manage content")
    csub = p.add_subparsers(dest="content_command", required=True)
    ls = csub.add_parser("ls", aliases=["list"], help="list all blobs in the store")
    ls.add_argument("-q", "--quiet", action="store_true", help="print only the blob digest")
    ls.add_argument("filters", nargs="*")
    ls.set_defaults(func=run_ls)
    get = csub.add_parser("get", help="get the data for an object")
    get.add_argument("digest")
    get.set_defaults(func=run_get)


def run_ls(args: argparse.Namespace) -> int:
    from pycontainerd.cli.pyctr import remote

    async def go(channel: Any) -> int:
        infos = [i async for i in remote.RemoteContentStore(channel).walk(args.filters)]
        if args.quiet:
            for i in infos:
                print(i.digest)
            return 0
        now = datetime.datetime.now(datetime.UTC)
        rows = []
        for i in infos:
            labels = ",".join(f"{k}={v}" for k, v in sorted(i.labels.items())) or "-"
            age = human_duration((now - i.created_at).total_seconds())
            rows.append([i.digest, human_size(i.size), age, labels])
        print_table(["DIGEST", "SIZE", "AGE", "LABELS"], rows, padding=1)
        return 0

    return run_async(args, go)


def run_get(args: argparse.Namespace) -> int:
    from pycontainerd.cli.pyctr import remote
    from pycontainerd.core.content import Descriptor, digests, helpers

    digests.validate(args.digest)

    async def go(channel: Any) -> int:
        store = remote.RemoteContentStore(channel)
        out = sys.stdout.buffer
        async for chunk in helpers.read_chunks(store, Descriptor(digest=args.digest)):
            out.write(chunk)
        out.flush()
        return 0

    return run_async(args, go)
