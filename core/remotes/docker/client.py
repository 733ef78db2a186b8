"""The HTTP layer under the resolver, fetcher and pusher: one aiohttp session, per-host TLS,
authorisation with retry on 401, redirects followed by hand, HTTPS->HTTP fallback for hosts
configured that way, connection failures as Unavailable."""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
import urllib.parse
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

import pycontainerd
from pycontainerd.core import errdefs
from pycontainerd.core.remotes.docker import errors
from pycontainerd.core.remotes.docker.auth import Authorizer, parse_www_authenticate
from pycontainerd.core.remotes.hosts import RegistryHost

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

USER_AGENT = f"pycontainerd/{pycontainerd.__version__}"
MAX_REDIRECTS = 10
#: Re-authorisations allowed for one request (a fresh handler, then one refreshed token).
MAX_AUTH_RETRIES = 2
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

#: A request body: bytes, or a function giving a fresh body for every attempt.
Body = bytes | Callable[[], AsyncIterable[bytes] | bytes] | None


def _body_for_attempt(body: Body) -> Any:
    if body is None or isinstance(body, bytes | bytearray | memoryview):
        return body
    return body()


def _is_tls_mismatch(exc: BaseException) -> bool:
    """A TLS handshake with a plain-HTTP server fails with an SSL error or a reset."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientSSLError | _ssl.SSLError | aiohttp.ServerDisconnectedError):
        return True
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, _ssl.SSLError):
            return True
        cause = cause.__cause__ or cause.__context__
        if cause is exc:
            break
    return False


@attrs.define(eq=False, kw_only=True)
class Transport:
    """Shared by every resolver/fetcher/pusher of one :class:`Resolver`."""

    authorizer: Authorizer
    user_agent: str = USER_AGENT
    #: a caller-owned session (not closed here); else one is made on first use
    session: aiohttp.ClientSession | None = None
    connect_timeout: float = 30.0
    _own_session: bool = False
    _http_hosts: set[str] = attrs.Factory(set)

    async def get_session(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            import aiohttp

            self.session = aiohttp.ClientSession(
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout),
                connector=aiohttp.TCPConnector(limit=64, limit_per_host=16),
            )
            self._own_session = True
        return self.session

    async def close(self) -> None:
        if self._own_session and self.session is not None:
            await self.session.close()
        self.session = None

    def _ssl_for(self, host: RegistryHost, url: str) -> Any:
        netloc = urllib.parse.urlsplit(url).netloc
        if netloc != host.host:
            return True  # a redirect target: default verification
        return host.ssl_context if host.ssl_context is not None else True

    def _effective_url(self, host: RegistryHost, url: str) -> str:
        if host.http_fallback and host.host in self._http_hosts and url.startswith("https://"):
            return "http://" + url[len("https://") :]
        return url

    async def request(
        self,
        host: RegistryHost,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        scopes: Sequence[str] = (),
        body: Body = None,
        follow_redirects: bool = True,
    ) -> aiohttp.ClientResponse:
        """One registry request, authorised for ``scopes``; returns the final response (the
        caller releases it). A 401 that authorisation cannot fix is Unauthenticated with the
        registry's message; a connection failure is Unavailable."""
        session = await self.get_session()
        attempts = 0
        while True:
            hdrs: dict[str, str] = {"User-Agent": self.user_agent, "Accept-Encoding": "identity"}
            for k, v in host.headers:
                hdrs[k] = f"{hdrs[k]}, {v}" if k in hdrs and k != "User-Agent" else v
            hdrs.update(headers or {})
            auth = await self.authorizer.authorize(
                session, host.host, scopes, ssl=host.ssl_context or True
            )
            if auth:
                hdrs["Authorization"] = auth
            resp = await self._send(
                session, host, method, url, hdrs, body, follow_redirects=follow_redirects
            )
            if resp.status != 401:
                return resp
            challenges = parse_www_authenticate(resp.headers.getall("WWW-Authenticate", []))
            if attempts < MAX_AUTH_RETRIES:
                retry, reason = await self.authorizer.add_response(
                    host.host, challenges, authorized=auth is not None
                )
                if retry:
                    attempts += 1
                    resp.release()
                    log.debug(
                        "retrying %s %s with authorization (%s)",
                        method,
                        errors.sanitize_url(url),
                        reason or "new",
                    )
                    continue
            else:
                reason = "authorization refused"
            err = await self.error_from(resp, host, url, hdrs)
            raise errdefs.Unauthenticated(f"{reason}: {err}" if reason else str(err))

    async def error_from(
        self,
        resp: aiohttp.ClientResponse,
        host: RegistryHost,
        url: str,
        headers: Mapping[str, str],
    ) -> errdefs.ContainerdError:
        """The error for a failed response, with the registry's message. A HEAD answer has
        no body, so for refusals (401, 403) the same request is made as a GET to read it."""
        if resp.method != "HEAD" or resp.status not in (401, 403):
            return await errors.from_response(resp)
        status, reason, url_s = resp.status, resp.reason or "", str(resp.url)
        resp.release()
        body = b""
        try:
            session = await self.get_session()
            get = await self._send(
                session, host, "GET", url, dict(headers), None, follow_redirects=True
            )
            try:
                if get.status == status:
                    body = await get.content.read(errors.MAX_ERROR_BODY)
            finally:
                get.release()
        except errdefs.Unavailable:
            pass
        return errors.from_status("HEAD", url_s, status, reason, body)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        host: RegistryHost,
        method: str,
        url: str,
        headers: dict[str, str],
        body: Body,
        *,
        follow_redirects: bool,
    ) -> aiohttp.ClientResponse:
        import aiohttp

        url = self._effective_url(host, url)
        timeout = (
            aiohttp.ClientTimeout(total=None, sock_connect=host.dial_timeout)
            if host.dial_timeout
            else None
        )
        for _ in range(MAX_REDIRECTS + 1):
            kwargs: dict[str, Any] = {
                "headers": headers,
                "allow_redirects": False,
                "ssl": self._ssl_for(host, url),
            }
            if timeout is not None:
                kwargs["timeout"] = timeout
            data = _body_for_attempt(body)
            if data is not None:
                kwargs["data"] = data
            try:
                resp = await session.request(method, url, **kwargs)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                if (
                    host.http_fallback
                    and url.startswith(f"https://{host.host}")
                    and _is_tls_mismatch(exc)
                ):
                    log.info("host %s does not speak TLS; falling back to HTTP", host.host)
                    self._http_hosts.add(host.host)
                    url = "http://" + url[len("https://") :]
                    continue
                raise errdefs.Unavailable(
                    f"failed to do {method} request to {errors.sanitize_url(url)}: {exc}"
                ) from exc
            if not (follow_redirects and resp.status in _REDIRECTS and "Location" in resp.headers):
                return resp
            location = urllib.parse.urljoin(url, resp.headers["Location"])
            resp.release()
            if urllib.parse.urlsplit(location).netloc != urllib.parse.urlsplit(url).netloc:
                # Never send registry credentials to another host (signed storage URLs).
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            if resp.status == 303 or (resp.status in (301, 302) and method not in ("GET", "HEAD")):
                method, body = "GET", None
            log.debug("following redirect to %s", errors.sanitize_url(location))
            url = location
        raise errdefs.Unavailable(f"too many redirects for {method} {errors.sanitize_url(url)}")
