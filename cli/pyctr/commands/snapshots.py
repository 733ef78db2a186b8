"""``pyctr snapshots``: ls, mounts, prepare, commit, rm (through the Snapshots service)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from pycontainerd.cli.pyctr.commands.images import run_async
from pycontainerd.cli.pyctr.table import print_table


def _default() -> str:
    return os.environ.get("CONTAINERD_SNAPSHOTTER") or "overlayfs"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("snapshots", aliases=["snapshot"], help="manage snapshots")
    p.add_argument("--snapshotter", default=_default(), help="snapshotter name")
    ssub = p.add_subparsers(dest="snapshots_command", required=True)
    ls = ssub.add_parser("ls", aliases=["list"], help="list snapshots")
    ls.add_argument("filters", nargs="*")
    ls.set_defaults(func=run_ls)
    mounts = ssub.add_parser("mounts", aliases=["m", "mount"], help="mount commands for a key")
    mounts.add_argument("target")
    mounts.add_argument("key")
    mounts.set_defaults(func=run_mounts)
    prepare = ssub.add_parser("prepare", help="prepare an active snapshot")
    prepare.add_argument("--target", default="", help="print mount commands for this target")
    prepare.add_argument("key")
    prepare.add_argument("parent", nargs="?", default="")
    prepare.set_defaults(func=run_prepare)
    commit = ssub.add_parser("commit", help="commit an active snapshot")
    commit.add_argument("name")
    commit.add_argument("key")
    commit.set_defaults(func=run_commit)
    rm = ssub.add_parser("rm", aliases=["delete", "del", "remove"], help="remove snapshots")
    rm.add_argument("keys", nargs="+")
    rm.set_defaults(func=run_rm)


def _proxy(channel: Any, args: argparse.Namespace) -> Any:
    from pycontainerd.core.snapshots.proxy import ProxySnapshotter

    return ProxySnapshotter(channel, args.snapshotter, owns_channel=False)


def run_ls(args: argparse.Namespace) -> int:
    async def go(channel: Any) -> int:
        rows = [
            [i.name, i.parent, str(i.kind)] async for i in _proxy(channel, args).walk(args.filters)
        ]
        print_table(["KEY", "PARENT", "KIND"], rows, padding=1)
        return 0

    return run_async(args, go)


def print_mounts(target: str, mounts: Any) -> None:
    for m in mounts:
        opts = ",".join(m.options)
        print(f"mount -t {m.type} {m.source} {target} -o {opts}")


def run_mounts(args: argparse.Namespace) -> int:
    async def go(channel: Any) -> int:
        print_mounts(args.target, await _proxy(channel, args).mounts(args.key))
        return 0

    return run_async(args, go)


def run_prepare(args: argparse.Namespace) -> int:
    async def go(channel: Any) -> int:
        mounts = await _proxy(channel, args).prepare(args.key, args.parent)
        if args.target:
            print_mounts(args.target, mounts)
        return 0

    return run_async(args, go)


def run_commit(args: argparse.Namespace) -> int:
    async def go(channel: Any) -> int:
        await _proxy(channel, args).commit(args.name, args.key)
        return 0

    return run_async(args, go)


def run_rm(args: argparse.Namespace) -> int:
    async def go(channel: Any) -> int:
        sn = _proxy(channel, args)
        for key in args.keys:
            await sn.remove(key)
        return 0

    return run_async(args, go)
