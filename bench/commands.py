"""Command lines for the daemons the benchmarks start side by side: ours and Debian's
containerd, each with its own config, root, state and socket under ``base``."""

from __future__ import annotations

import sys
from pathlib import Path


def _cmd(head: list[str], base: Path, sock: str, cfg: Path) -> list[str]:
    return [
        *head,
        "--config",
        str(cfg),
        "--root",
        str(base / "root"),
        "--state",
        str(base / "state"),
        "--address",
        sock,
        "--log-level",
        "warn",
    ]


def pycontainerd(base: Path, config: str) -> tuple[list[str], str]:
    """pycontainerd (this interpreter) with ``config`` as its TOML; (command, socket)."""
    sock, cfg = str(base / "pycontainerd.sock"), base / "config.toml"
    cfg.write_text(config)
    head = [sys.executable, "-P", "-m", "pycontainerd.cli.daemon"]
    return _cmd(head, base, sock, cfg), sock


def containerd(base: Path, config: str) -> tuple[list[str], str]:
    """Debian's containerd with ``config`` as its TOML; (command, socket)."""
    sock, cfg = str(base / "containerd.sock"), base / "containerd.toml"
    cfg.write_text(config)
    return _cmd(["containerd"], base, sock, cfg), sock
