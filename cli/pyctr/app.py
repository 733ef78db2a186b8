"""pyctr's command line: global flags, then one subcommand module per object kind."""

from __future__ import annotations

import argparse
import os
import sys

from pycontainerd.cli.pyctr import commands
from pycontainerd.core import errdefs, namespaces

DEFAULT_ADDRESS = "/run/pycontainerd/pycontainerd.sock"


#: global flags that take a value (to find the command word in argv)
_VALUED = {"-a", "--address", "-n", "--namespace", "--timeout"}


def _command_word(argv: list[str]) -> str | None:
    """The subcommand in ``argv`` (after the global flags), if any."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _VALUED:
            i += 2
            continue
        if arg.startswith("-"):
            if arg in ("-h", "--help"):
                return None
            i += 1
            continue
        return arg
    return None


def parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command line parser; with ``argv``, only the subcommand it names is loaded."""
    p = argparse.ArgumentParser(prog="pyctr", description="pycontainerd command line client")
    p.add_argument(
        "-a",
        "--address",
        default=os.environ.get("PYCONTAINERD_ADDRESS")
        or os.environ.get("CONTAINERD_ADDRESS")
        or DEFAULT_ADDRESS,
        help="address of the daemon's gRPC socket",
    )
    p.add_argument(
        "-n",
        "--namespace",
        default=namespaces.default_from_env(),
        help="namespace to use (env CONTAINERD_NAMESPACE)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        help="total timeout for each call, in seconds (0: none)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    word = _command_word(argv) if argv is not None else None
    for mod in commands.modules(word):
        mod.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(argv).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except errdefs.ContainerdError as e:
        print(f"pyctr: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
