"""Fetching manifests and blobs by descriptor, from an offset (``Range``) for resumes.

Manifest and index media types are fetched from ``/manifests/<digest>`` (then ``/blobs/``),
everything else from ``/blobs/<digest>``; blob GETs are usually redirected to storage, which
the transport follows without forwarding credentials. Endpoints with the ``pull`` capability
are tried in order. A registry that ignores ``Range`` has the first bytes skipped here, so the
stream always starts at the requested offset.

The stream's bytes are not verified here (the consumer hashes them as it writes, see
:func:`pycontainerd.core.remotes.handlers.fetch_to_store`); sizes and any
``Docker-Content-Digest`` header are checked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.content import digests
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.images import mediatypes
from pycontainerd.core.remotes.docker.resolver import ACCEPT_MANIFESTS, RepositoryBase
from pycontainerd.core.remotes.hosts import Capabilities, RegistryHost

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@attrs.define(eq=False)
class BlobStream:
    """The bytes of one blob from ``offset`` on: ``async for chunk in stream``; close when
    done (or use ``async with``). ``size`` is the full blob size when known (else -1)."""

    _resp: aiohttp.ClientResponse
    desc: Descriptor
    offset: int
    size: int
    _skip: int = 0
    _read: int = 0

    @property
    def bytes_read(self) -> int:
        """Bytes handed out so far (not counting the start offset)."""
        return self._read

    async def __aiter__(self) -> AsyncIterator[bytes]:
        import aiohttp

        try:
            async for chunk in self._resp.content.iter_chunked(CHUNK_SIZE):
                if self._skip:
                    if len(chunk) <= self._skip:
                        self._skip -= len(chunk)
                        continue
                    chunk = chunk[self._skip :]
                    self._skip = 0
                self._read += len(chunk)
                if self.size >= 0 and self.offset + self._read > self.size:
                    raise errdefs.FailedPrecondition(
                        f"blob {self.desc.digest}: registry sent more than {self.size} bytes"
                    )
                yield chunk
        except aiohttp.ClientPayloadError as exc:
            raise errdefs.Unavailable(
                f"blob {self.desc.digest}: connection lost after "
                f"{self.offset + self._read} bytes: {exc}"
            ) from exc
        except aiohttp.ClientError as exc:
            raise errdefs.Unavailable(f"blob {self.desc.digest}: read failed: {exc}") from exc
        if self.size >= 0 and self.offset + self._read < self.size:
            raise errdefs.Unavailable(
                f"blob {self.desc.digest}: short read: got {self.offset + self._read} of "
                f"{self.size} bytes"
            )

    async def read_all(self, limit: int = 64 << 20) -> bytes:
        parts = []
        total = 0
        try:
            async for chunk in self:
                total += len(chunk)
                if total > limit:
                    raise errdefs.ResourceExhausted(
                        f"blob {self.desc.digest}: larger than {limit} bytes"
                    )
                parts.append(chunk)
        finally:
            self.close()
        return b"".join(parts)

    def close(self) -> None:
        self._resp.close()

    async def __aenter__(self) -> BlobStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


@attrs.define(eq=False, kw_only=True)
class Fetcher:
    base: RepositoryBase

    async def fetch(self, desc: Descriptor, *, offset: int = 0) -> BlobStream:
        """Open a stream of ``desc``'s bytes from ``offset``. NotFound when no endpoint has
        it; OutOfRange for an offset past the end."""
        digests.validate(desc.digest)
        if offset < 0 or (desc.size and offset > desc.size):
            raise errdefs.OutOfRange(
                f"blob {desc.digest}: offset {offset} outside size {desc.size}"
            )
        hosts = self.base.filter_hosts(Capabilities.PULL)
        if not hosts:
            raise errdefs.NotFound(f"no pull hosts for {self.base.ref.name}")
        if mediatypes.is_index(desc.media_type) or mediatypes.is_manifest(desc.media_type):
            kinds: tuple[str, ...] = ("manifests", "blobs")
        else:
            kinds = ("blobs",)
        not_found: errdefs.ContainerdError | None = None
        failure: errdefs.ContainerdError | None = None
        for kind in kinds:
            for host in hosts:
                try:
                    return await self._open(host, kind, desc, offset)
                except errdefs.OutOfRange:
                    raise
                except errdefs.NotFound as exc:
                    not_found = not_found or exc
                except errdefs.ContainerdError as exc:
                    failure = failure or exc
                    log.info("fetch %s from %s failed: %s", desc.digest, host.host, exc)
        raise (
            failure
            or not_found
            or errdefs.NotFound(f"{self.base.ref.name}@{desc.digest}: not found")
        )

    async def _open(
        self, host: RegistryHost, kind: str, desc: Descriptor, offset: int
    ) -> BlobStream:
        url = self.base.url(host, kind, desc.digest)
        headers: dict[str, str] = {}
        if kind == "manifests":
            headers["Accept"] = (
                f"{desc.media_type}, {ACCEPT_MANIFESTS}" if desc.media_type else ACCEPT_MANIFESTS
            )
        else:
            headers["Accept"] = f"{desc.media_type}, */*" if desc.media_type else "*/*"
        if offset:
            headers["Range"] = f"bytes={offset}-"
        resp = await self.base.request(host, "GET", url, headers=headers)
        ok = False
        try:
            if resp.status == 416:
                raise errdefs.OutOfRange(
                    f"blob {desc.digest}: range from {offset} not satisfiable at {host.host}"
                )
            if resp.status >= 300:
                raise await self.base.transport.error_from(resp, host, url, headers)
            header_dgst = resp.headers.get("Docker-Content-Digest", "")
            if (
                header_dgst
                and digests.is_valid(header_dgst)
                and digests.algorithm(header_dgst) == digests.algorithm(desc.digest)
                and header_dgst != desc.digest
            ):
                raise errdefs.FailedPrecondition(
                    f"digest mismatch for {desc.digest} from {host.host}: registry says "
                    f"{header_dgst}"
                )
            length = _int(resp.headers.get("Content-Length"))
            skip = 0
            start = 0
            if offset and resp.status == 206:
                m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
                if m is None or int(m[1]) != offset:
                    raise errdefs.FailedPrecondition(
                        f"blob {desc.digest}: unexpected Content-Range "
                        f"{resp.headers.get('Content-Range', '')!r} for offset {offset}"
                    )
                start = offset
            elif offset:
                log.debug(
                    "%s ignored Range for %s; skipping %d bytes", host.host, desc.digest, offset
                )
                skip = offset
            size = desc.size if desc.size > 0 else (start + length if length >= 0 else -1)
            if desc.size > 0 and length >= 0 and length != desc.size - start:
                raise errdefs.FailedPrecondition(
                    f"blob {desc.digest}: registry sent content length {length} from offset "
                    f"{start}, expected {desc.size - start}"
                )
            stream = BlobStream(resp, desc, offset, size, skip=skip)
            ok = True
            return stream
        finally:
            if not ok:
                resp.release()


def _int(value: str | None) -> int:
    try:
        return int(value) if value is not None else -1
    except ValueError:
        return -1
