"""Pushing blobs and manifests to one repository (OCI distribution spec v2).

A blob push checks the blob with ``HEAD /blobs/<digest>`` (present: nothing to do), tries a
cross-repository mount (``POST /blobs/uploads/?mount=<digest>&from=<repo>``) for each
``mount_from`` repository of the same registry, else opens an upload session (``POST
/blobs/uploads/``) and sends the bytes either in one ``PUT <location>?digest=<digest>`` or in
``PATCH`` chunks closed by an empty ``PUT``. Manifests are ``PUT`` by tag or digest. The
``Docker-Content-Digest`` the registry answers with must be the descriptor's digest.
"""

from __future__ import annotations

import enum
import logging
import urllib.parse
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.content import digests
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.images import mediatypes
from pycontainerd.core.remotes.docker.auth import repository_scope
from pycontainerd.core.remotes.docker.resolver import RepositoryBase
from pycontainerd.core.remotes.hosts import Capabilities, RegistryHost

log = logging.getLogger(__name__)

#: The bytes to push: all of them, or a function giving a fresh stream (called once per
#: attempt, so a request retried after authorisation sends the data again).
PushSource = bytes | Callable[[], AsyncIterable[bytes]]


class PushResult(enum.Enum):
    EXISTS = "exists"
    MOUNTED = "mounted"
    UPLOADED = "uploaded"


def _is_manifest(media_type: str) -> bool:
    return mediatypes.is_manifest(media_type) or mediatypes.is_index(media_type)


async def _rechunk(source: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """Chunks of exactly ``size`` bytes (the last may be shorter)."""
    buf = bytearray()
    async for chunk in source:
        buf += chunk
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


async def _single(data: bytes) -> AsyncIterator[bytes]:
    yield data


@attrs.define(eq=False, kw_only=True)
class Pusher:
    base: RepositoryBase

    def _host(self) -> RegistryHost:
        hosts = self.base.filter_hosts(Capabilities.PUSH)
        if not hosts:
            raise errdefs.NotFound(f"no push hosts for {self.base.ref.name}")
        return hosts[0]

    async def exists(self, desc: Descriptor, *, tag: str | None = None) -> bool:
        """True when the registry has ``desc`` (a manifest under ``tag`` when given)."""
        host = self._host()
        if _is_manifest(desc.media_type):
            url = self.base.url(host, "manifests", tag or desc.digest)
            headers = {"Accept": desc.media_type or "*/*"}
        else:
            url = self.base.url(host, "blobs", desc.digest)
            headers = {}
        resp = await self.base.request(host, "HEAD", url, headers=headers)
        try:
            if resp.status == 404:
                return False
            if resp.status >= 300:
                raise await self.base.transport.error_from(resp, host, url, headers)
            got = resp.headers.get("Docker-Content-Digest", "")
            if tag and got and got != desc.digest:
                return False
            return True
        finally:
            resp.release()

    async def push(
        self,
        desc: Descriptor,
        source: PushSource,
        *,
        tag: str | None = None,
        mount_from: Sequence[str] = (),
        chunk_size: int = 0,
    ) -> PushResult:
        """Push one blob or manifest. Manifests go under ``tag`` when given, else their
        digest; ``mount_from`` lists repository paths (same registry) to mount a blob from;
        ``chunk_size`` > 0 uploads a blob in PATCH chunks of that size."""
        digests.validate(desc.digest)
        host = self._host()
        if _is_manifest(desc.media_type):
            if not isinstance(source, bytes):
                parts = [c async for c in source()]
                source = b"".join(parts)
            return await self._push_manifest(host, desc, source, tag)
        if await self.exists(desc):
            log.debug("blob %s already in %s", desc.digest, self.base.ref.name)
            return PushResult.EXISTS
        location = ""
        for repo in mount_from:
            if repo == self.base.ref.path:
                continue
            mounted, location = await self._try_mount(host, desc, repo)
            if mounted:
                return PushResult.MOUNTED
            if location:
                break
        if not location:
            location = await self._start_upload(host)
        if chunk_size > 0:
            location = await self._patch_chunks(host, desc, source, location, chunk_size)
            body: Any = b""
            length = 0
        else:
            body = source if isinstance(source, bytes) else source
            length = desc.size
        url = _with_query(location, digest=desc.digest)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        resp = await self.base.request(host, "PUT", url, headers=headers, body=body)
        try:
            if resp.status not in (201, 204):
                raise await self.base.transport.error_from(resp, host, url, headers)
            self._check_digest(resp, desc)
        finally:
            resp.release()
        log.debug("uploaded %s to %s", desc.digest, self.base.ref.name)
        return PushResult.UPLOADED

    def _check_digest(self, resp: Any, desc: Descriptor) -> None:
        got = resp.headers.get("Docker-Content-Digest", "")
        if got and got != desc.digest:
            raise errdefs.FailedPrecondition(
                f"push of {desc.digest} to {self.base.ref.name}: registry stored {got}"
            )

    async def _push_manifest(
        self, host: RegistryHost, desc: Descriptor, data: bytes, tag: str | None
    ) -> PushResult:
        if len(data) != desc.size and desc.size:
            raise errdefs.FailedPrecondition(
                f"manifest {desc.digest}: {len(data)} bytes, descriptor says {desc.size}"
            )
        actual = digests.from_bytes(data, digests.algorithm(desc.digest))
        if actual != desc.digest:
            raise errdefs.FailedPrecondition(
                f"manifest digest mismatch: expected {desc.digest}, got {actual}"
            )
        url = self.base.url(host, "manifests", tag or desc.digest)
        headers = {"Content-Type": desc.media_type}
        resp = await self.base.request(host, "PUT", url, headers=headers, body=data)
        try:
            if resp.status not in (200, 201, 204):
                raise await self.base.transport.error_from(resp, host, url, headers)
            self._check_digest(resp, desc)
        finally:
            resp.release()
        return PushResult.UPLOADED

    async def _try_mount(self, host: RegistryHost, desc: Descriptor, repo: str) -> tuple[bool, str]:
        url = self.base.url(host, "blobs", "uploads/", query={"mount": desc.digest, "from": repo})
        scopes = (*self.base.scopes, repository_scope(repo))
        try:
            resp = await self.base.request(
                host, "POST", url, headers={"Content-Length": "0"}, scopes=scopes
            )
        except errdefs.Unauthenticated as exc:
            log.debug("mount of %s from %s not authorised: %s", desc.digest, repo, exc)
            return False, ""
        try:
            if resp.status == 201:
                log.debug("mounted %s from %s", desc.digest, repo)
                return True, ""
            if resp.status == 202:
                return False, urllib.parse.urljoin(url, resp.headers.get("Location", ""))
            log.debug("mount of %s from %s refused: %d", desc.digest, repo, resp.status)
            return False, ""
        finally:
            resp.release()

    async def _start_upload(self, host: RegistryHost) -> str:
        url = self.base.url(host, "blobs", "uploads/")
        headers = {"Content-Length": "0"}
        resp = await self.base.request(host, "POST", url, headers=headers)
        try:
            if resp.status != 202:
                raise await self.base.transport.error_from(resp, host, url, headers)
            location = resp.headers.get("Location", "")
            if not location:
                raise errdefs.Unknown(f"upload to {self.base.ref.name}: no Location in answer")
            return urllib.parse.urljoin(url, location)
        finally:
            resp.release()

    async def _patch_chunks(
        self,
        host: RegistryHost,
        desc: Descriptor,
        source: PushSource,
        location: str,
        chunk_size: int,
    ) -> str:
        stream = _single(source) if isinstance(source, bytes) else source()
        offset = 0
        async for chunk in _rechunk(stream, chunk_size):
            end = offset + len(chunk) - 1
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{end}",
                "Content-Length": str(len(chunk)),
            }
            resp = await self.base.request(host, "PATCH", location, headers=headers, body=chunk)
            try:
                if resp.status != 202:
                    raise await self.base.transport.error_from(resp, host, location, headers)
                location = urllib.parse.urljoin(location, resp.headers.get("Location", location))
            finally:
                resp.release()
            offset = end + 1
        if desc.size and offset != desc.size:
            raise errdefs.FailedPrecondition(
                f"push of {desc.digest}: source gave {offset} bytes, expected {desc.size}"
            )
        return location


def _with_query(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + urllib.parse.urlencode(params)
