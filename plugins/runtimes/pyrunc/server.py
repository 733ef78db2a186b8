"""The long-running shim: ttrpc on the inherited listener (fd 3) serving
``containerd.task.v2.Task`` and ``containerd.task.v3.Task`` with one :class:`TaskService`.

The two task APIs differ only in their proto package: every request and response message
has the same fields with the same numbers and types, so the v3 messages decode v2 requests
and their bytes are valid v2 replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from typing import Any

from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2 as shim_v2
from pycontainerd.api.containerd.runtime.task.v3 import shim_pb2 as shim_v3
from pycontainerd.core.ttrpc import Server
from pycontainerd.core.ttrpc.service import methods_from_descriptor
from pycontainerd.plugins.runtimes.pyrunc import reaper
from pycontainerd.plugins.runtimes.pyrunc.main import LISTENER_FD
from pycontainerd.plugins.runtimes.pyrunc.publisher import Publisher
from pycontainerd.plugins.runtimes.pyrunc.service import TaskService

log = logging.getLogger("containerd-shim-pyrunc-v2")

TASK_V2 = "containerd.task.v2.Task"
TASK_V3 = "containerd.task.v3.Task"


class _QuietStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr is the `log` FIFO (non-blocking): when the daemon is gone or slow, drop lines
    instead of stalling or complaining."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def _setup_logging(debug: bool, namespace: str, id: str) -> None:
    handler = _QuietStderr(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            f"time=%(asctime)s level=%(levelname)s msg=%(message)s "
            f"namespace={namespace} runtime=io.containerd.pyrunc.v2 id={id}"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def register(server: Server, service: TaskService) -> None:
    methods = methods_from_descriptor(shim_v3.DESCRIPTOR.services_by_name["Task"], service)
    server.register(TASK_V3, methods)
    server.register(TASK_V2, methods)
    assert shim_v2.DESCRIPTOR.services_by_name["Task"].full_name == TASK_V2


async def _serve(opts: dict[str, Any]) -> int:
    loop = asyncio.get_running_loop()
    try:
        rp = reaper.install(loop)
    except OSError as e:
        log.warning("not a child subreaper: %s", e)
        rp = reaper.Reaper()
        asyncio.set_child_watcher(rp)
        rp.attach_loop(loop)
    publisher = Publisher(
        ttrpc_address=os.environ.get("TTRPC_ADDRESS", ""),
        address=opts["address"],
        publish_binary=opts["publish-binary"],
    )
    publisher.start()
    service = TaskService(namespace=opts["namespace"], publisher=publisher)
    rp.subscribe(service.on_exit)
    server = Server(require_same_user=True)
    register(server, service)
    listener = socket.socket(fileno=LISTENER_FD)
    await server.serve_socket(listener)
    path = opts["socket"].removeprefix("unix://")
    ours = _file_id(path)

    def stop_accepting() -> None:
        server.stop_listening()
        # once this shim stops listening, a `start` for its group binds the path anew for a
        # new shim: remove the socket only while it is still this shim's
        if path and ours is not None and _file_id(path) == ours:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    service.on_stopping = stop_accepting
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.shutdown_requested.set)
    log.info("serving pid=%d socket=%s", os.getpid(), opts["socket"])
    await service.shutdown_requested.wait()
    log.info("shutting down")
    stop_accepting()
    await server.stop(grace=2.0)
    listener.close()
    await service.close()
    await publisher.close()
    return 0


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def serve(opts: dict[str, Any]) -> int:
    _setup_logging(opts["debug"], opts["namespace"], opts["id"])
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        return asyncio.run(_serve(opts))
    except Exception:
        log.exception("shim failed")
        return 1
