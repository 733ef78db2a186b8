"""pyctr's subcommands, one module per object kind, each with ``add_parser(sub)``.

A command's module (and with it grpc and the protobuf modules it needs) is imported only when
that command runs; ``pyctr --help`` and unknown commands load them all.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: (command, its aliases, module name under this package), in help order
COMMANDS: list[tuple[str, tuple[str, ...], str]] = [
    ("version", (), "version"),
    ("plugins", ("plugin",), "plugins"),
    ("namespaces", ("namespace", "ns"), "namespaces"),
    ("images", ("image", "i"), "images"),
    ("content", (), "content"),
    ("snapshots", ("snapshot",), "snapshots"),
    ("leases", ("lease",), "leases"),
    ("containers", ("container", "c"), "containers"),
    ("tasks", ("task", "t"), "tasks"),
    ("run", (), "run"),
    ("cri", (), "cri"),
]


def load(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


def module_for(command: str) -> str | None:
    """The module name of ``command`` (a name or an alias), or None."""
    for name, aliases, module in COMMANDS:
        if command == name or command in aliases:
            return module
    return None


def modules(command: str | None = None) -> list[ModuleType]:
    """The module of ``command`` alone when it is known, else every command module."""
    module = module_for(command) if command else None
    if module is not None:
        return [load(module)]
    return [load(m) for _, _, m in COMMANDS]
