"""What the daemon is doing, as containerd's SIGUSR1 dump: the stack of every asyncio task
and of every thread, as text (``pycontainerd`` logs it and writes it to
``$TMPDIR/pycontainerd.<unix time>.stacks.log``)."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import tempfile
import threading
import time
import traceback


def dump(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """Every task of ``loop`` (default: the running one) with its stack, then every
    thread's."""
    out = io.StringIO()
    try:
        loop = loop or asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    tasks = sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name()) if loop else []
    out.write(f"=== {len(tasks)} asyncio tasks ===\n")
    for task in tasks:
        out.write(f"\ntask {task.get_name()!r}: {task.get_coro()!r}\n")
        frames = task.get_stack()
        if not frames:
            out.write("  (no Python frames)\n")
        for frame in frames:
            code = frame.f_code
            out.write(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}\n')
    names = {t.ident: t.name for t in threading.enumerate()}
    current = sys._current_frames()
    out.write(f"\n=== {len(current)} threads ===\n")
    for ident, frame in current.items():
        out.write(f"\nthread {names.get(ident, '?')!r} ({ident}):\n")
        out.write("".join(traceback.format_stack(frame)))
    return out.getvalue()


def write(text: str) -> str:
    """``text`` in ``$TMPDIR/pycontainerd.<unix time>.stacks.log``; the path."""
    path = os.path.join(tempfile.gettempdir(), f"pycontainerd.{int(time.time())}.stacks.log")
    with open(path, "a") as f:
        f.write(text)
    return path
