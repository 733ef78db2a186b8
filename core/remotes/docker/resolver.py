"""Resolving references against registries (OCI distribution spec v2).

``Resolver.resolve(ref)`` finds the descriptor a tag or digest names: ``HEAD`` on
``/v2/<name>/manifests/<tag|digest>`` with the manifest media types in ``Accept``, reading
``Docker-Content-Digest``, ``Content-Type`` and ``Content-Length``; a ``GET`` (hashing the body)
when the registry does not give them or refuses HEAD. Endpoints come from
:mod:`~pycontainerd.core.remotes.hosts` (mirrors first); a failing endpoint passes to the next,
and the most telling error of all is raised when none answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from pycontainerd.core import errdefs, reference
from pycontainerd.core.content import digests
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.images import mediatypes
from pycontainerd.core.remotes.docker import errors
from pycontainerd.core.remotes.docker.auth import Authorizer, Credentials, repository_scope
from pycontainerd.core.remotes.docker.client import USER_AGENT, Transport
from pycontainerd.core.remotes.hosts import (
    DOCKER_HUB,
    DOCKER_HUB_HOST,
    Capabilities,
    RegistryHost,
    RegistryHosts,
    configure_hosts,
)

if TYPE_CHECKING:
    import aiohttp

    from pycontainerd.core.remotes.docker.fetcher import Fetcher
    from pycontainerd.core.remotes.docker.pusher import Pusher

log = logging.getLogger(__name__)

#: Largest manifest accepted by resolve (containerd's MaxManifestSize).
MAX_MANIFEST_SIZE = 4 << 20
#: Hash in a thread above this many bytes.
_THREAD_HASH_MIN = 256 << 10

ACCEPT_MANIFESTS = ", ".join(mediatypes.MANIFEST_ACCEPT)


def is_proxy(ref_host: str, host: RegistryHost) -> bool:
    """True when ``host`` serves ``ref_host``'s content as a mirror (requests then carry
    ``?ns=<ref_host>``)."""
    if host.host == ref_host:
        return False
    return not (ref_host == DOCKER_HUB and host.host == DOCKER_HUB_HOST)


def parse_ref(ref: str) -> reference.Reference:
    """A normalised reference (``busybox`` -> ``docker.io/library/busybox:latest``)."""
    return reference.parse_docker_ref(ref)


async def hash_bytes(data: bytes, alg: str = digests.CANONICAL) -> str:
    if len(data) >= _THREAD_HASH_MIN:
        return await asyncio.to_thread(digests.from_bytes, data, alg)
    return digests.from_bytes(data, alg)


@attrs.define(eq=False, kw_only=True)
class RepositoryBase:
    """The endpoints and request helpers for one repository (shared by fetcher and pusher)."""

    transport: Transport
    ref: reference.Reference
    hosts: list[RegistryHost]
    push: bool = False

    @property
    def scopes(self) -> tuple[str, ...]:
        return (repository_scope(self.ref.path, self.push),)

    def filter_hosts(self, caps: Capabilities) -> list[RegistryHost]:
        return [h for h in self.hosts if h.has(caps)]

    def url(self, host: RegistryHost, *parts: str, query: Mapping[str, str] | None = None) -> str:
        import urllib.parse

        u = host.url(self.ref.path, *parts)
        q = dict(query or {})
        if is_proxy(self.ref.hostname, host):
            q["ns"] = self.ref.hostname
        if q:
            u += ("&" if "?" in u else "?") + urllib.parse.urlencode(q)
        return u

    async def request(
        self,
        host: RegistryHost,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        scopes: tuple[str, ...] | None = None,
        **kw: Any,
    ) -> aiohttp.ClientResponse:
        return await self.transport.request(
            host,
            method,
            url,
            headers=headers,
            scopes=self.scopes if scopes is None else scopes,
            **kw,
        )


def _content_type(resp: Any) -> str:
    return resp.headers.get("Content-Type", "").split(";")[0].strip()


def _content_length(resp: Any) -> int:
    try:
        n = int(resp.headers.get("Content-Length", "-1"))
    except ValueError:
        return -1
    return n


@attrs.define(eq=False, kw_only=True)
class Resolver:
    """An OCI distribution client for many registries.

    ``hosts`` maps a registry host name to endpoints (default: containerd's defaults without
    a config directory); ``credentials(host) -> (user, secret)`` is asked when a registry
    challenges. Close with :meth:`close` or use ``async with``.
    """

    hosts: RegistryHosts = attrs.Factory(configure_hosts)
    credentials: Credentials | None = None
    #: extra headers on every request (``Accept`` here replaces the manifest Accept list)
    headers: Mapping[str, str] = attrs.Factory(dict)
    user_agent: str = USER_AGENT
    session: aiohttp.ClientSession | None = None
    fetch_refresh_token: bool = False
    _transport: Transport | None = None

    def __attrs_post_init__(self) -> None:
        authorizer = Authorizer(
            credentials=self.credentials,
            fetch_refresh_token=self.fetch_refresh_token,
            user_agent=self.user_agent,
        )
        self._transport = Transport(
            authorizer=authorizer, user_agent=self.user_agent, session=self.session
        )

    @property
    def transport(self) -> Transport:
        assert self._transport is not None
        return self._transport

    @property
    def authorizer(self) -> Authorizer:
        return self.transport.authorizer

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> Resolver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _base(self, ref: str, push: bool = False) -> RepositoryBase:
        spec = parse_ref(ref)
        hosts = await asyncio.to_thread(self.hosts, spec.hostname)
        return RepositoryBase(transport=self.transport, ref=spec, hosts=hosts, push=push)

    async def resolve(self, ref: str) -> tuple[str, Descriptor]:
        """(normalised name, descriptor) of what ``ref`` (a tag or digest) points at."""
        base = await self._base(ref)
        spec = base.ref
        dgst = spec.digest
        caps = Capabilities.PULL
        if dgst:
            digests.validate(dgst)
            paths = [("manifests", dgst), ("blobs", dgst)]
        else:
            paths = [("manifests", spec.tag)]
            caps |= Capabilities.RESOLVE
        hosts = base.filter_hosts(caps)
        if not hosts:
            raise errdefs.NotFound(f"no resolve hosts for {spec}")
        accept = self.headers.get("Accept", ACCEPT_MANIFESTS)
        extra = {k: v for k, v in self.headers.items() if k != "Accept"}
        first_err: errdefs.ContainerdError | None = None
        priority = 0

        def note(err: errdefs.ContainerdError, prio: int) -> None:
            nonlocal first_err, priority
            if prio > priority:
                first_err, priority = err, prio

        for kind, obj in paths:
            if priority > 2:
                break
            for host in hosts:
                url = base.url(host, kind, obj)
                headers = {**extra, "Accept": accept}
                try:
                    desc = await self._resolve_one(base, host, url, headers, dgst)
                except errdefs.NotFound as exc:
                    note(exc, 2)
                    log.info("resolve %s: not found at %s, %s", spec, host.host, _next(host, hosts))
                    continue
                except (errdefs.Unauthenticated, errdefs.Unavailable) as exc:
                    note(exc, 1)
                    log.info(
                        "resolve %s at %s failed: %s; %s", spec, host.host, exc, _next(host, hosts)
                    )
                    continue
                except errdefs.ResourceExhausted as exc:
                    note(exc, 4)
                    continue
                except (
                    errdefs.PermissionDenied,
                    errdefs.InvalidArgument,
                    errdefs.NotImplemented_,
                    errdefs.FailedPrecondition,
                    errdefs.Unknown,
                ) as exc:
                    note(exc, 3)
                    log.info(
                        "resolve %s at %s failed: %s; %s", spec, host.host, exc, _next(host, hosts)
                    )
                    continue
                log.debug("resolved %s to %s via %s", spec, desc.digest, host.host)
                return str(spec), desc
        raise first_err or errdefs.NotFound(f"{spec}: not found")

    async def _resolve_one(
        self,
        base: RepositoryBase,
        host: RegistryHost,
        url: str,
        headers: Mapping[str, str],
        dgst: str,
    ) -> Descriptor:
        resp = await base.request(host, "HEAD", url, headers=headers)
        try:
            if resp.status == 405 or resp.status == 400:
                pass  # HEAD not supported here: GET below
            elif resp.status >= 300:
                raise await self.transport.error_from(resp, host, url, headers)
            else:
                size = _content_length(resp)
                media_type = _content_type(resp)
                header_dgst = resp.headers.get("Docker-Content-Digest", "")
                if header_dgst and size >= 0:
                    if not digests.is_valid(header_dgst):
                        raise errdefs.InvalidArgument(
                            f"{header_dgst!r} in Docker-Content-Digest is not a valid digest"
                        )
                    if (
                        dgst
                        and header_dgst != dgst
                        and digests.algorithm(header_dgst) == digests.algorithm(dgst)
                    ):
                        raise errdefs.FailedPrecondition(
                            f"registry returned digest {header_dgst} for {dgst}"
                        )
                    if size > MAX_MANIFEST_SIZE:
                        raise errdefs.ResourceExhausted(
                            f"rejecting {size} byte manifest for {base.ref}"
                        )
                    return Descriptor(media_type=media_type, digest=dgst or header_dgst, size=size)
        finally:
            resp.release()
        log.debug("no usable HEAD answer from %s; fetching manifest", host.host)
        resp = await base.request(host, "GET", url, headers=headers)
        try:
            if resp.status >= 300:
                raise await errors.from_response(resp, "GET")
            media_type = _content_type(resp)
            if media_type == mediatypes.DOCKER_SCHEMA1_MANIFEST:
                raise errdefs.NotImplemented_(
                    f"{base.ref}: media type {media_type!r} is not supported; rebuild the image "
                    f"as {mediatypes.DOCKER_MANIFEST!r} or {mediatypes.OCI_MANIFEST!r}"
                )
            length = _content_length(resp)
            if length > MAX_MANIFEST_SIZE:
                raise errdefs.ResourceExhausted(f"rejecting {length} byte manifest for {base.ref}")
            data = await resp.content.read(MAX_MANIFEST_SIZE + 1)
            if len(data) > MAX_MANIFEST_SIZE:
                raise errdefs.ResourceExhausted(
                    f"rejecting manifest over {MAX_MANIFEST_SIZE} bytes for {base.ref}"
                )
        finally:
            resp.release()
        alg = digests.algorithm(dgst) if dgst else digests.CANONICAL
        actual = await hash_bytes(data, alg)
        if dgst and actual != dgst:
            raise errdefs.FailedPrecondition(
                f"manifest of {base.ref} from {host.host}: digest mismatch: expected {dgst}, "
                f"got {actual}"
            )
        return Descriptor(media_type=media_type, digest=actual, size=len(data))

    async def fetcher(self, ref: str) -> Fetcher:
        """A fetcher for the repository of ``ref`` (tag/digest not needed)."""
        from pycontainerd.core.remotes.docker.fetcher import Fetcher

        return Fetcher(base=await self._base(ref))

    async def pusher(self, ref: str) -> Pusher:
        """A pusher to the repository of ``ref``; its tag is what a pushed root manifest is
        stored under."""
        from pycontainerd.core.remotes.docker.pusher import Pusher

        return Pusher(base=await self._base(ref, push=True))


def _next(host: RegistryHost, hosts: list[RegistryHost]) -> str:
    return "trying next host" if host is not hosts[-1] else "no more hosts"
