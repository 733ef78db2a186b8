"""A standalone snapshots gRPC service: serves one pycontainerd snapshotter over
``containerd.services.snapshots.v1.Snapshots`` on a unix socket, for use as a
``[proxy_plugins]`` snapshotter by pycontainerd (or containerd).

Run it (from this directory, or with it on ``PYTHONPATH``)::

    python -m snapshot_service --address /run/my-snapshotter.sock --root /var/lib/my-sn
    python -m snapshot_service --snapshotter overlayfs ...
    python -m snapshot_service --snapshotter mypkg.mymod:open_snapshotter ...

``--snapshotter`` is ``native`` (the default), ``overlayfs``, or ``module:function`` naming an
``async (root: str) -> Snapshotter`` factory. The ``snapshotter`` field of requests is ignored:
whatever name the daemon gives the proxy, this one snapshotter answers. Errors go back with
containerd's status codes. SIGTERM/SIGINT stop it cleanly.

This program is an example and a test fixture, not part of the installed package.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("snapshot_service")

Factory = Callable[[str], Awaitable[Any]]


async def _native(root: str) -> Any:
    from pycontainerd.plugins.snapshotters.native.snapshotter import NativeSnapshotter

    return await NativeSnapshotter.open(root)


async def _overlayfs(root: str) -> Any:
    from pycontainerd.plugins.snapshotters.overlayfs.snapshotter import OverlaySnapshotter

    return await OverlaySnapshotter.open(root)


BUILTIN: dict[str, Factory] = {"native": _native, "overlayfs": _overlayfs}


def resolve_factory(spec: str) -> Factory:
    if spec in BUILTIN:
        return BUILTIN[spec]
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise SystemExit(
            f"snapshot_service: unknown snapshotter {spec!r}: want native, "
            "overlayfs or module:function"
        )
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


class AnyName:
    """A read-only mapping in which every snapshotter name means the one served here."""

    def __init__(self, sn: Any) -> None:
        self.sn = sn

    def get(self, name: str, default: Any = None) -> Any:
        return self.sn


async def serve(address: str, root: str, factory: Factory, ready: Callable[[], None]) -> None:
    """Serve ``factory(root)`` on ``address`` until cancelled."""
    import grpc

    from pycontainerd.core.server.grpcserver import ErrorInterceptor, prepare_unix_socket
    from pycontainerd.plugins.services.snapshots.service import SnapshotsService

    os.makedirs(root, exist_ok=True)
    sn = await factory(root)
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor()],
        options=[
            ("grpc.max_receive_message_length", 16 << 20),
            ("grpc.max_send_message_length", 16 << 20),
        ],
    )
    SnapshotsService(AnyName(sn)).register_grpc(server)  # type: ignore[arg-type]
    prepare_unix_socket(address)
    if server.add_insecure_port(f"unix:{address}") == 0:
        raise SystemExit(f"snapshot_service: cannot listen on {address}")
    await server.start()
    log.info("serving snapshots address=%s root=%s", address, root)
    ready()
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop(2.0)
        await sn.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address)


async def _main(args: argparse.Namespace) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await serve(args.address, args.root, resolve_factory(args.snapshotter), lambda: None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="snapshot_service", description=__doc__.split("\n")[0])
    p.add_argument("--address", required=True, help="unix socket to listen on")
    p.add_argument("--root", required=True, help="the snapshotter's root directory")
    p.add_argument(
        "--snapshotter",
        default="native",
        help="native, overlayfs, or module:function (async root -> Snapshotter)",
    )
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
