"""``pyctr run [flags] IMAGE ID [COMMAND [ARG...]]``: create a container from an image and
run its task, as ``ctr run`` does (containers.new_container, then tasks.run_task). Attached,
pyctr's stdio is the process's and its exit code is pyctr's; ``--rm`` then deletes the
container and its snapshot; ``-d`` returns once the task runs."""

from __future__ import annotations

import argparse
from typing import Any

from pycontainerd.cli.pyctr.commands.containers import add_container_flags, run_async
from pycontainerd.cli.pyctr.commands.tasks import add_task_flags


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="run a container")
    p.add_argument("--rm", action="store_true", help="remove the container after running")
    add_container_flags(p)
    add_task_flags(p)
    p.add_argument("image", help="image reference")
    p.add_argument("id", help="container id")
    p.add_argument("args", nargs=argparse.REMAINDER, help="command and arguments")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import contextlib
    import sys

    from pycontainerd.cli.pyctr.commands.containers import delete_container, new_container
    from pycontainerd.cli.pyctr.commands.tasks import run_task
    from pycontainerd.core import errdefs

    if args.rm and args.detach:
        raise errdefs.InvalidArgument("flags --detach and --rm cannot be specified together")
    cmd = list(args.args)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]

    async def go(channel: Any) -> int:
        container = await new_container(channel, args, args.image, args.id, cmd)
        try:
            return await run_task(channel, container, args, tty=bool(args.tty))
        finally:
            if args.rm:
                try:
                    await delete_container(channel, container.id)
                except errdefs.ContainerdError as e:
                    print(
                        f"pyctr: failed to remove container {container.id!r}: {e}", file=sys.stderr
                    )
                with contextlib.suppress(Exception):
                    sys.stdout.flush()

    return run_async(args, go)
