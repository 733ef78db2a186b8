"""The debug listener: asyncio tasks, thread stacks and plugin states, as plain text/JSON."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import traceback
from typing import Any

from pycontainerd.core.plugin.context import PluginSet
from pycontainerd.core.server.http import HTTPServer


def debug_server(address: str, uid: int, gid: int, plugins: PluginSet) -> Any:
    async def tasks(query: str) -> tuple[int, str, bytes]:
        out = io.StringIO()
        for t in asyncio.all_tasks():
            out.write(f"--- {t.get_name()}\n")
            t.print_stack(file=out)
        return 200, "text/plain", out.getvalue().encode()

    async def stacks(query: str) -> tuple[int, str, bytes]:
        out = io.StringIO()
        for tid, frame in sys._current_frames().items():
            out.write(f"--- thread {tid}\n")
            traceback.print_stack(frame, file=out)
        return 200, "text/plain", out.getvalue().encode()

    async def vars_(query: str) -> tuple[int, str, bytes]:
        data = {
            "plugins": {p.uri: p.status.value for p in plugins},
            "tasks": len(asyncio.all_tasks()),
        }
        return 200, "application/json", json.dumps(data, indent=2).encode()

    return HTTPServer(
        address=address,
        uid=uid,
        gid=gid,
        routes={"/debug/tasks": tasks, "/debug/stacks": stacks, "/debug/vars": vars_},
        name="debug",
    )
