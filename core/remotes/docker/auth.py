"""Registry authorisation: ``WWW-Authenticate`` challenges, Basic auth and the Bearer token
flow of the distribution token spec.

On a 401 the client hands the challenge to :meth:`Authorizer.add_response`, which sets up a
handler for the registry host (Basic with the credentials, or Bearer with the realm and service
of the challenge) and says whether the request is worth retrying. :meth:`Authorizer.authorize`
then gives the ``Authorization`` value for a request:

- Basic: ``user:secret`` from the credentials callback.
- Bearer: a token for the request's scopes (``repository:<path>:pull[,push]``), cached per
  scope set until it expires. With a secret, the token is asked for with an OAuth2 form POST
  (``grant_type=password``, or ``refresh_token`` when the username is empty: an identity
  token), falling back to a GET with Basic credentials where the realm does not speak OAuth2;
  anonymously, with a GET. A refresh token handed out by the realm is used for later scopes.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from pycontainerd.core import errdefs

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

#: ``credentials(host) -> (username, secret)``; may be a coroutine function. Empty strings
#: mean none. An empty username with a secret is an identity (refresh) token.
Credentials = Callable[[str], "tuple[str, str] | Awaitable[tuple[str, str]]"]

CLIENT_ID = "pycontainerd-client"
#: Token lifetime assumed when the realm does not say (the token spec's default).
DEFAULT_TOKEN_LIFETIME = 60.0
#: Statuses of the OAuth2 POST after which the GET flow is tried instead.
_OAUTH_FALLBACK_STATUSES = frozenset({400, 401, 404, 405, 501})
_MAX_TOKEN_RESPONSE = 1 << 20


@attrs.frozen
class Challenge:
    scheme: str
    params: Mapping[str, str] = attrs.field(factory=dict)


def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t":
        i += 1
    return i


def _token(s: str, i: int) -> tuple[str, int]:
    j = i
    while j < len(s) and s[j] not in ' \t,="':
        j += 1
    return s[i:j], j


def _quoted(s: str, i: int) -> tuple[str, int]:
    # s[i] == '"'
    out = []
    i += 1
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            out.append(s[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    return "".join(out), i


def parse_www_authenticate(values: Iterable[str]) -> list[Challenge]:
    """Every challenge in the ``WWW-Authenticate`` header values (several may share one
    value, separated by commas). Scheme names are lowercased; so are parameter names."""
    out: list[Challenge] = []
    for value in values:
        i = 0
        current: Challenge | None = None
        while i < len(value):
            i = _skip_ws(value, i)
            if i < len(value) and value[i] == ",":
                i += 1
                continue
            word, j = _token(value, i)
            if not word:
                i = j + 1
                continue
            k = _skip_ws(value, j)
            if k < len(value) and value[k] == "=" and current is not None:
                k = _skip_ws(value, k + 1)
                if k < len(value) and value[k] == '"':
                    v, k = _quoted(value, k)
                else:
                    v, k = _token(value, k)
                current.params[word.lower()] = v  # type: ignore[index]
                i = k
            elif k < len(value) and value[k] == "=":
                # token68 without a scheme: ignore
                i = k + 1
            else:
                current = Challenge(word.lower(), {})
                out.append(current)
                i = j
    return out


@attrs.frozen(kw_only=True)
class TokenResult:
    token: str
    refresh_token: str = ""
    expires_at: float = 0.0


@attrs.define(eq=False)
class _Handler:
    scheme: str
    username: str = ""
    secret: str = ""
    realm: str = ""
    service: str = ""
    scopes: tuple[str, ...] = ()
    refresh_token: str = ""
    tokens: dict[str, TokenResult] = attrs.Factory(dict)
    locks: dict[str, asyncio.Lock] = attrs.Factory(dict)


def merge_scopes(*groups: Iterable[str]) -> tuple[str, ...]:
    """Scopes deduplicated and sorted; actions of one resource are merged
    (``repository:a:pull`` + ``repository:a:push`` -> ``repository:a:pull,push``)."""
    actions: dict[str, set[str]] = {}
    plain: set[str] = set()
    for group in groups:
        for scope in group:
            for one in scope.split():
                resource, sep, acts = one.rpartition(":")
                if not sep or not resource:
                    plain.add(one)
                    continue
                actions.setdefault(resource, set()).update(a for a in acts.split(",") if a)
    merged = {f"{r}:{','.join(sorted(a))}" for r, a in actions.items()} | plain
    return tuple(sorted(merged))


def repository_scope(path: str, push: bool = False) -> str:
    return f"repository:{path}:pull" + (",push" if push else "")


@attrs.define(eq=False)
class Authorizer:
    """Per-host authorisation state shared by the requests of one resolver."""

    credentials: Credentials | None = None
    #: extra headers for token requests (from hosts.toml ``header``)
    headers: Mapping[str, str] = attrs.Factory(dict)
    #: ask the realm for refresh tokens (``offline_token``/``access_type=offline``)
    fetch_refresh_token: bool = False
    #: called with (host, refresh_token) when the realm hands one out
    on_refresh_token: Callable[[str, str], None] | None = None
    user_agent: str = ""
    _handlers: dict[str, _Handler] = attrs.Factory(dict)

    async def _creds(self, host: str) -> tuple[str, str]:
        if self.credentials is None:
            return "", ""
        result = self.credentials(host)
        if inspect.isawaitable(result):
            result = await result
        user, secret = result  # type: ignore[misc]
        return user or "", secret or ""

    def has_handler(self, host: str) -> bool:
        return host in self._handlers

    def forget(self, host: str) -> None:
        self._handlers.pop(host, None)

    async def authorize(
        self,
        session: aiohttp.ClientSession,
        host: str,
        scopes: Sequence[str],
        *,
        ssl: Any = None,
    ) -> str | None:
        """The ``Authorization`` header value for a request to ``host`` needing ``scopes``,
        or None when ``host`` has not asked for authorisation."""
        h = self._handlers.get(host)
        if h is None:
            return None
        if h.scheme == "basic":
            raw = f"{h.username}:{h.secret}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        want = merge_scopes(h.scopes, scopes)
        key = " ".join(want)
        cached = h.tokens.get(key)
        if cached is not None and (not cached.expires_at or cached.expires_at > time.monotonic()):
            return "Bearer " + cached.token
        lock = h.locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = h.tokens.get(key)
            if cached is not None and (
                not cached.expires_at or cached.expires_at > time.monotonic()
            ):
                return "Bearer " + cached.token
            result = await self._fetch_token(session, host, h, want, ssl=ssl)
            h.tokens[key] = result
            if result.refresh_token and result.refresh_token != h.refresh_token:
                h.refresh_token = result.refresh_token
                if self.on_refresh_token is not None:
                    self.on_refresh_token(host, result.refresh_token)
            return "Bearer " + result.token

    def invalidate(self, host: str, scopes: Sequence[str]) -> None:
        """Drop the cached token for ``scopes`` (the registry refused it)."""
        h = self._handlers.get(host)
        if h is not None:
            h.tokens.pop(" ".join(merge_scopes(h.scopes, scopes)), None)

    async def add_response(
        self, host: str, challenges: Sequence[Challenge], *, authorized: bool
    ) -> tuple[bool, str]:
        """Take a 401's challenges. Returns (retry, reason): retry is True when a new or
        refreshed authorisation is worth one more attempt; otherwise reason says why not."""
        for c in challenges:
            if c.scheme == "bearer":
                existing = self._handlers.get(host)
                error = c.params.get("error", "")
                if existing is not None and existing.scheme == "bearer" and authorized:
                    # The token we sent was refused. One refetch (it may have expired or
                    # lacked a scope) is worth it; the caller limits retries.
                    existing.tokens.clear()
                    existing.scopes = merge_scopes(
                        existing.scopes, c.params.get("scope", "").split()
                    )
                    return True, error or "token refused"
                realm = c.params.get("realm", "")
                if not realm:
                    return False, "bearer challenge without realm"
                user, secret = await self._creds(host)
                self._handlers[host] = _Handler(
                    scheme="bearer",
                    username=user,
                    secret=secret,
                    realm=realm,
                    service=c.params.get("service", ""),
                    scopes=merge_scopes(c.params.get("scope", "").split()),
                )
                return True, ""
            if c.scheme == "basic":
                if authorized and host in self._handlers:
                    return False, "credentials rejected"
                user, secret = await self._creds(host)
                if not user or not secret:
                    return False, "no basic auth credentials"
                self._handlers[host] = _Handler(scheme="basic", username=user, secret=secret)
                return True, ""
        return False, "no supported authentication scheme in challenge"

    async def _fetch_token(
        self,
        session: aiohttp.ClientSession,
        host: str,
        h: _Handler,
        scopes: tuple[str, ...],
        *,
        ssl: Any,
    ) -> TokenResult:
        if h.refresh_token or h.secret:
            grant_refresh = h.refresh_token or (h.secret if not h.username else "")
            try:
                return await self._fetch_oauth(session, h, scopes, grant_refresh, ssl=ssl)
            except _TokenHTTPError as exc:
                if exc.status not in _OAUTH_FALLBACK_STATUSES:
                    raise _auth_error(host, "failed to fetch oauth token", exc) from None
                log.debug("oauth token request to %s refused (%d); trying GET", h.realm, exc.status)
            try:
                return await self._fetch_get(session, h, scopes, ssl=ssl)
            except _TokenHTTPError as exc:
                raise _auth_error(host, "failed to fetch token", exc) from None
        try:
            return await self._fetch_get(session, h, scopes, ssl=ssl)
        except _TokenHTTPError as exc:
            raise _auth_error(host, "failed to fetch anonymous token", exc) from None

    def _token_headers(self) -> dict[str, str]:
        out = dict(self.headers)
        if self.user_agent:
            out.setdefault("User-Agent", self.user_agent)
        return out

    async def _fetch_oauth(
        self,
        session: aiohttp.ClientSession,
        h: _Handler,
        scopes: tuple[str, ...],
        refresh_token: str,
        *,
        ssl: Any,
    ) -> TokenResult:
        form = {"service": h.service, "client_id": CLIENT_ID}
        if scopes:
            form["scope"] = " ".join(scopes)
        if refresh_token:
            form["grant_type"] = "refresh_token"
            form["refresh_token"] = refresh_token
        else:
            form["grant_type"] = "password"
            form["username"] = h.username
            form["password"] = h.secret
        if self.fetch_refresh_token:
            form["access_type"] = "offline"
        headers = self._token_headers()
        headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
        doc = await self._token_request(
            session, "POST", h.realm, headers=headers, data=urllib.parse.urlencode(form), ssl=ssl
        )
        token = doc.get("access_token")
        if not isinstance(token, str) or not token:
            raise _TokenHTTPError(200, "", "token response has no access_token")
        return _result(token, doc)

    async def _fetch_get(
        self, session: aiohttp.ClientSession, h: _Handler, scopes: tuple[str, ...], *, ssl: Any
    ) -> TokenResult:
        params: list[tuple[str, str]] = []
        if h.service:
            params.append(("service", h.service))
        params += [("scope", s) for s in scopes]
        if self.fetch_refresh_token:
            params.append(("offline_token", "true"))
            params.append(("client_id", CLIENT_ID))
        headers = self._token_headers()
        if h.username and h.secret:
            raw = f"{h.username}:{h.secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        sep = "&" if "?" in h.realm else "?"
        url = h.realm + (sep + urllib.parse.urlencode(params) if params else "")
        doc = await self._token_request(session, "GET", url, headers=headers, ssl=ssl)
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str) or not token:
            raise _TokenHTTPError(200, "", "token response has no token")
        return _result(token, doc)

    async def _token_request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        data: str | None = None,
        ssl: Any,
    ) -> dict[str, Any]:
        import aiohttp

        try:
            async with session.request(method, url, headers=headers, data=data, ssl=ssl) as resp:
                body = await resp.content.read(_MAX_TOKEN_RESPONSE)
                if resp.status != 200:
                    raise _TokenHTTPError(
                        resp.status, resp.reason or "", body.decode("utf-8", "replace")
                    )
        except aiohttp.ClientError as exc:
            raise errdefs.Unavailable(f"token request to {url}: {exc}") from exc
        try:
            doc = json.loads(body)
        except ValueError:
            raise _TokenHTTPError(200, "", "token response is not JSON") from None
        if not isinstance(doc, dict):
            raise _TokenHTTPError(200, "", "token response is not a JSON object")
        return doc


class _TokenHTTPError(Exception):
    def __init__(self, status: int, reason: str, body: str) -> None:
        super().__init__(f"{status} {reason}".strip())
        self.status = status
        self.reason = reason
        self.body = body


def _result(token: str, doc: Mapping[str, Any]) -> TokenResult:
    try:
        expires_in = float(doc.get("expires_in") or 0)
    except (TypeError, ValueError):
        expires_in = 0.0
    lifetime = expires_in if expires_in > 0 else DEFAULT_TOKEN_LIFETIME
    # Renew a little early so a token does not expire in flight.
    expires_at = time.monotonic() + max(lifetime - min(10.0, lifetime / 10), 1.0)
    refresh = doc.get("refresh_token")
    return TokenResult(
        token=token,
        refresh_token=refresh if isinstance(refresh, str) else "",
        expires_at=expires_at,
    )


def _auth_error(host: str, what: str, exc: _TokenHTTPError) -> errdefs.ContainerdError:
    from pycontainerd.core.remotes.docker.errors import registry_message

    detail = registry_message(exc.body) or exc.body.strip()[:200]
    msg = f"{what} for {host}: unexpected status {exc.status} {exc.reason}".rstrip()
    if detail:
        msg += f": {detail}"
    if exc.status in (401, 403):
        return errdefs.Unauthenticated(msg)
    if exc.status >= 500 or exc.status == 429:
        return errdefs.Unavailable(msg)
    return errdefs.Unauthenticated(msg)
