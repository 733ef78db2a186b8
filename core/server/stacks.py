"""What the daemon is doing, as containerd's SIGUSR1 dump: the stack of every asyncio task
and of every thread, as text (``pycontainerd`` logs it and writes it to
``$TMPDIR/pycontainerd.<unix time>.stacks.log``)."""

from __future__ import annotations

import asyncio
import gc
import inspect
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
        _await_chain(task.get_coro(), out)
    # coroutines awaited from C code (a gRPC handler under grpc.aio's Cython task) are in
    # no task's chain: the outermost suspended ones, found among all objects
    in_chains: set[int] = set()
    for task in tasks:
        obj: object = task.get_coro()
        while obj is not None:
            in_chains.add(id(obj))
            obj = getattr(obj, "cr_await", None)
    suspended = [o for o in gc.get_objects() if inspect.iscoroutine(o) and o.cr_frame is not None]
    awaited = {id(o.cr_await) for o in suspended if o.cr_await is not None}
    roots = [o for o in suspended if id(o) not in awaited and id(o) not in in_chains]
    out.write(f"\n=== {len(roots)} coroutines awaited from outside Python ===\n")
    for coro in roots:
        out.write(f"\ncoroutine {coro.__qualname__}:\n")
        _await_chain(coro, out)
    names = {t.ident: t.name for t in threading.enumerate()}
    current = sys._current_frames()
    out.write(f"\n=== {len(current)} threads ===\n")
    for ident, frame in current.items():
        out.write(f"\nthread {names.get(ident, '?')!r} ({ident}):\n")
        out.write("".join(traceback.format_stack(frame)))
    return out.getvalue()


def _await_chain(obj: object, out: io.StringIO) -> None:
    """The frames of a coroutine and of what it awaits, outermost first (a task's own
    stack shows only its outermost frame), then the future at the bottom."""
    seen = frames = 0
    while obj is not None and seen < 100:
        seen += 1
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
        if frame is not None:
            frames += 1
            code = frame.f_code
            out.write(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}\n')
        nxt = getattr(obj, "cr_await", None)
        if nxt is None:
            nxt = getattr(obj, "gi_yieldfrom", None)
        if nxt is None and frame is None:
            out.write(f"  awaiting {obj!r}\n"[:500])
            return
        obj = nxt
    if not frames:
        out.write("  (no Python frames)\n")


def write(text: str) -> str:
    """``text`` in ``$TMPDIR/pycontainerd.<unix time>.stacks.log``; the path."""
    path = os.path.join(tempfile.gettempdir(), f"pycontainerd.{int(time.time())}.stacks.log")
    with open(path, "a") as f:
        f.write(text)
    return path
