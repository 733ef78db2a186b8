"""Helpers for tests that run the NRI test plugin (``nri_test_plugin.py``, beside this file)
as a real process: installed as a pre-installed plugin, or started on a socket."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

PLUGIN = Path(__file__).with_name("nri_test_plugin.py")


def install(plugin_dir: Path, conf_dir: Path, name: str, settings: dict) -> Path:
    """A pre-installed plugin ``NN-name`` in ``plugin_dir``, its settings as its config file."""
    exe = plugin_dir / name
    exe.write_text(
        f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(PLUGIN)!r}, run_name='__main__')\n"
    )
    exe.chmod(0o755)
    (conf_dir / f"{name}.conf").write_text(json.dumps(settings))
    return exe


def command(settings: dict) -> list[str]:
    """The command line of an external test plugin."""
    return [sys.executable, str(PLUGIN), json.dumps(settings)]


def events(log: Path) -> list[dict]:
    """What the plugin recorded, one dict per call."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


async def wait_for(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
