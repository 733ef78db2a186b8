"""What the shim keeps in a bundle, readable without the serving shim (for ``delete``).

Only the standard library here: ``delete`` runs after a shim died and should be quick.
"""

from __future__ import annotations

import json
import os
from typing import Any

DEFAULT_RUNC_ROOT = "/run/containerd/runc"
OPTIONS_FILE = "options.json"
INIT_PID_FILE = "init.pid"
RUNC_LOG = "log.json"


def write_options(bundle: str, *, binary_name: str, root: str, systemd_cgroup: bool) -> None:
    """The runc options of the task, so ``delete`` finds the container after the shim is gone."""
    doc = {"binary_name": binary_name, "root": root, "systemd_cgroup": systemd_cgroup}
    tmp = os.path.join(bundle, f".{OPTIONS_FILE}.tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.rename(tmp, os.path.join(bundle, OPTIONS_FILE))


def read_options(bundle: str) -> dict[str, Any]:
    try:
        with open(os.path.join(bundle, OPTIONS_FILE)) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        doc = {}
    return doc if isinstance(doc, dict) else {}


def runc_command(options: dict[str, Any]) -> str:
    return str(options.get("binary_name") or "runc")


def runc_root(options: dict[str, Any], namespace: str) -> str:
    """runc's state root for a namespace: ``<root>/<namespace>``, as containerd's runc shim."""
    return os.path.join(str(options.get("root") or DEFAULT_RUNC_ROOT), namespace)


def read_init_pid(bundle: str) -> int:
    try:
        with open(os.path.join(bundle, INIT_PID_FILE)) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0


def _unescape(field: str) -> str:
    return (
        field.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
    )


def unmount_below(path: str) -> list[str]:
    """Lazily unmount ``path`` and every mount below it (deepest first), with umount2 through
    ctypes; the mount points that could not be unmounted."""
    import ctypes

    target = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            points = [_unescape(line.split()[4]) for line in f]
    except OSError:
        return []
    mine = [p for p in points if p == target or p.startswith(target + "/")]
    libc = ctypes.CDLL(None, use_errno=True)
    failed = []
    for p in sorted(set(mine), key=len, reverse=True):
        for _ in range(mine.count(p)):
            if libc.umount2(p.encode(), 2) != 0:  # MNT_DETACH
                failed.append(p)
                break
    return failed
