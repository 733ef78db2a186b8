"""A tiny asyncio HTTP/1.1 server for the metrics and debug listeners (GET only).

Listens on a unix socket path or ``host:port``; routes map a path to an async handler
returning ``(status, content_type, body)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from pycontainerd.core.server.sockets import prepare_unix_socket, secure_unix_socket

log = logging.getLogger(__name__)

Handler = Callable[[str], Awaitable[tuple[int, str, bytes]]]

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


def is_tcp(address: str) -> bool:
    return not address.startswith("/") and ":" in address and not address.startswith("unix:")


@attrs.define(eq=False, kw_only=True)
class HTTPServer:
    address: str
    routes: dict[str, Handler]
    uid: int = -1
    gid: int = -1
    name: str = "http"
    _server: asyncio.base_events.Server | None = None
    bound: str = ""

    async def start(self, services: Sequence[Any] = ()) -> None:
        if is_tcp(self.address):
            host, _, port = self.address.rpartition(":")
            self._server = await asyncio.start_server(self._serve, host or "127.0.0.1", int(port))
            sock = self._server.sockets[0].getsockname()
            self.bound = f"{sock[0]}:{sock[1]}"
        else:
            path = self.address.removeprefix("unix://")
            prepare_unix_socket(path)
            self._server = await asyncio.start_unix_server(self._serve, path)
            secure_unix_socket(path, self.uid, self.gid)
            self.bound = path
        log.info("serving %s address=%s", self.name, self.bound)

    async def stop(self, grace: float = 5.0) -> None:
        if self._server is None:
            return
        self._server.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), grace)
        self._server = None
        if not is_tcp(self.address):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address.removeprefix("unix://"))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            parts = line.decode("latin-1").split()
            while True:  # drain headers
                h = await asyncio.wait_for(reader.readline(), 10)
                if h in (b"\r\n", b"\n", b""):
                    break
            if len(parts) < 2:
                return
            method, target = parts[0], parts[1]
            path, _, query = target.partition("?")
            if method not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain", b"method not allowed\n"
            elif path not in self.routes:
                status, ctype, body = 404, "text/plain", b"not found\n"
            else:
                try:
                    status, ctype, body = await self.routes[path](query)
                except Exception as e:  # noqa: BLE001
                    log.error("%s %s failed: %s", self.name, path, e)
                    status, ctype, body = 500, "text/plain", f"{e}\n".encode()
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            writer.write(head + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
