"""The CRI streaming server: an HTTP(S) listener for exec, attach and port-forward URLs.

The CRI plugin calls :meth:`StreamServer.get_exec` / :meth:`~StreamServer.get_attach` /
:meth:`~StreamServer.get_port_forward` with the CRI request and returns the URL
(``<base>/exec/<token>``, ``/attach/<token>``, ``/portforward/<token>``) to kubelet. The token
is single use and lives a minute; the cached request (not the URL's query) decides what is run.
Each of the three paths takes GET or POST, upgraded to WebSocket or SPDY/3.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.streaming.tokens import DEFAULT_MAX_IN_FLIGHT, DEFAULT_TTL, RequestCache
from pycontainerd.core.streaming.types import (
    AttachRequest,
    ExecRequest,
    PortForwardRequest,
    Runtime,
)

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

DEFAULT_IDLE_TIMEOUT = 4 * 3600.0
DEFAULT_CREATION_TIMEOUT = 30.0
_STOP_GRACE = 2.0


@attrs.frozen(kw_only=True)
class Config:
    """``stream_server_address``/``stream_server_port``, ``stream_idle_timeout`` (seconds;
    0 = none), TLS from ``x509_key_pair_streaming`` (both files, or neither)."""

    address: str = "127.0.0.1"
    port: int = attrs.field(default=0, converter=int)
    base_url: str | None = None
    tls_cert_file: str = ""
    tls_key_file: str = ""
    stream_idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    stream_creation_timeout: float = DEFAULT_CREATION_TIMEOUT
    token_ttl: float = DEFAULT_TTL
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT

    @port.validator
    def _check_port(self, _: Any, value: int) -> None:
        if not 0 <= value < 65536:
            raise errdefs.InvalidArgument(f"invalid stream server port {value}")

    @property
    def tls(self) -> bool:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise errdefs.InvalidArgument("streaming tls needs both tls_cert_file and tls_key_file")
        return bool(self.tls_cert_file)


def _outbound_ip() -> str:
    """The address this host uses toward the default route (no packet is sent)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: routing lookup only
        return str(s.getsockname()[0])
    return "127.0.0.1"


async def _listen(host: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, stype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, stype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _url_host(host: str) -> str:
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    return host


@attrs.define(eq=False)
class StreamServer:
    config: Config
    runtime: Runtime
    _cache: RequestCache = attrs.field(init=False)
    _runner: web.AppRunner | None = attrs.field(default=None, init=False)
    _sock: socket.socket | None = attrs.field(default=None, init=False)
    _ssl: ssl.SSLContext | None = attrs.field(default=None, init=False)
    _serving: asyncio.Task[None] | None = attrs.field(default=None, init=False)
    _base_url: str = attrs.field(default="", init=False)
    _handlers: set[asyncio.Task[Any]] = attrs.field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        self._cache = RequestCache(
            ttl=self.config.token_ttl, max_in_flight=self.config.max_in_flight
        )

    # -- lifecycle

    @property
    def base_url(self) -> str:
        """``http(s)://host:port`` once started (or the configured base URL)."""
        if not self._base_url:
            raise errdefs.FailedPrecondition("streaming server is not started")
        return self._base_url

    async def start(self) -> None:
        cfg = self.config
        ssl_ctx: ssl.SSLContext | None = None
        if cfg.tls:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                ssl_ctx.load_cert_chain(cfg.tls_cert_file, cfg.tls_key_file)
            except (OSError, ssl.SSLError) as exc:
                raise errdefs.InvalidArgument(
                    f"failed to load streaming tls key pair {cfg.tls_cert_file!r}: {exc}"
                ) from exc
        host = cfg.address or "0.0.0.0"
        try:
            sock = await _listen(host, cfg.port)
        except OSError as exc:
            raise errdefs.Unavailable(
                f"failed to listen for streaming on {host}:{cfg.port}: {exc}"
            ) from exc
        self._sock, self._ssl = sock, ssl_ctx
        # aiohttp (~0.3 s and ~10 MB to import) is attached to the bound socket when the
        # first connection arrives or the first URL is handed out; until then connections
        # wait in the listen backlog.
        asyncio.get_running_loop().add_reader(sock.fileno(), self._serve_soon)
        port = sock.getsockname()[1]
        if cfg.base_url:
            self._base_url = cfg.base_url.rstrip("/")
        else:
            url_host = cfg.address if cfg.address not in ("", "0.0.0.0", "::") else _outbound_ip()
            scheme = "https" if ssl_ctx is not None else "http"
            self._base_url = f"{scheme}://{_url_host(url_host)}:{port}"
        log.info("streaming server listening on %s", self._base_url)

    async def stop(self) -> None:
        """Stop listening and end every stream in progress (bounded: connections whose close
        handshake does not finish within a couple of seconds are dropped)."""
        serving, self._serving = self._serving, None
        sock, self._sock = self._sock, None
        if serving is None and sock is not None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        elif serving is not None:
            await asyncio.gather(serving, return_exceptions=True)
        runner, self._runner = self._runner, None
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=_STOP_GRACE)
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> StreamServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- URLs

    def get_exec(self, req: Any) -> str:
        """The URL for a CRI ExecRequest (or an :class:`ExecRequest`)."""
        r = req if isinstance(req, ExecRequest) else ExecRequest.from_request(req)
        r.validate()
        return self._url("exec", self._cache.insert(r))

    def get_attach(self, req: Any) -> str:
        r = req if isinstance(req, AttachRequest) else AttachRequest.from_request(req)
        r.validate()
        return self._url("attach", self._cache.insert(r))

    def get_port_forward(self, req: Any) -> str:
        r = req if isinstance(req, PortForwardRequest) else PortForwardRequest.from_request(req)
        r.validate()
        return self._url("portforward", self._cache.insert(r))

    def _url(self, kind: str, token: str) -> str:
        url = f"{self.base_url}/{kind}/{token}"
        with contextlib.suppress(RuntimeError):  # no running loop: the first connection will
            self._serve_soon()
        return url

    def _serve_soon(self) -> None:
        """Start serving HTTP on the bound socket (once)."""
        if self._serving is not None or self._sock is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._sock.fileno())
        self._serving = loop.create_task(self._serve(self._sock), name="streaming server")

    async def _serve(self, sock: socket.socket) -> None:
        from aiohttp import web

        app = web.Application()
        for kind in ("exec", "attach", "portforward"):
            for method in ("GET", "POST"):
                app.router.add_route(method, f"/{kind}/{{token}}", self._handle)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=_STOP_GRACE
        )
        try:
            await runner.setup()
            site = web.SockSite(runner, sock, ssl_context=self._ssl)
            await site.start()
        except BaseException as exc:
            await runner.cleanup()
            sock.close()
            if not isinstance(exc, Exception):
                raise
            log.error("streaming server: failed to serve on %s: %s", self._base_url, exc)
            return
        self._runner = runner

    # -- serving

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        from pycontainerd.core.streaming import portforward, remotecommand, wsstream

        kind = request.path.strip("/").split("/", 1)[0]
        cached = self._cache.consume(request.match_info["token"])
        expected = {"exec": ExecRequest, "attach": AttachRequest, "portforward": PortForwardRequest}
        if cached is None or not isinstance(cached, expected[kind]):
            raise web.HTTPNotFound(text="404 page not found\n")
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        cfg = self.config
        try:
            websocket = wsstream.is_websocket_request(request)
            log.debug("streaming %s %s over %s", kind, cached, "websocket" if websocket else "spdy")
            if isinstance(cached, PortForwardRequest):
                if websocket:
                    return await portforward.serve_websocket(
                        request, self.runtime, cached, idle_timeout=cfg.stream_idle_timeout
                    )
                return await portforward.serve_spdy(
                    request,
                    self.runtime,
                    cached,
                    idle_timeout=cfg.stream_idle_timeout,
                    creation_timeout=cfg.stream_creation_timeout,
                )
            if websocket:
                return await remotecommand.serve_websocket(
                    request, self.runtime, cached, idle_timeout=cfg.stream_idle_timeout
                )
            return await remotecommand.serve_spdy(
                request,
                self.runtime,
                cached,
                idle_timeout=cfg.stream_idle_timeout,
                creation_timeout=cfg.stream_creation_timeout,
            )
        finally:
            self._handlers.discard(task)
