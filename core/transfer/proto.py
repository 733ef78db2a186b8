"""Transfer objects <-> their ``containerd.types.transfer`` protobuf messages (used by the gRPC
Transfer service and by clients)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pycontainerd.core import errdefs
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.plugin.context import Platform
from pycontainerd.core.transfer import Progress, UnpackConfiguration
from pycontainerd.core.transfer.imagestore import ImageReference, ImageStore
from pycontainerd.core.transfer.registry import OCIRegistry
from pycontainerd.core.transfer.streaming import Stream, pack, unpack_as

log = logging.getLogger(__name__)


def _pb() -> Any:
    from pycontainerd.api.containerd.types import descriptor_pb2, platform_pb2
    from pycontainerd.api.containerd.types.transfer import (
        imagestore_pb2,
        progress_pb2,
        registry_pb2,
    )

    return descriptor_pb2, platform_pb2, imagestore_pb2, progress_pb2, registry_pb2


def descriptor_to_proto(d: Descriptor) -> Any:
    descriptor_pb2 = _pb()[0]
    return descriptor_pb2.Descriptor(
        media_type=d.media_type, digest=d.digest, size=d.size, annotations=dict(d.annotations)
    )


def descriptor_from_proto(m: Any) -> Descriptor:
    return Descriptor(
        media_type=m.media_type, digest=m.digest, size=m.size, annotations=dict(m.annotations)
    )


def platform_to_proto(p: Platform) -> Any:
    platform_pb2 = _pb()[1]
    return platform_pb2.Platform(
        os=p.os, architecture=p.architecture, variant=p.variant, os_version=p.os_version
    )


def platform_from_proto(m: Any) -> Platform:
    return Platform(
        os=m.os, architecture=m.architecture, variant=m.variant, os_version=m.os_version
    )


def progress_to_proto(p: Progress) -> Any:
    progress_pb2 = _pb()[3]
    msg = progress_pb2.Progress(
        event=p.event, name=p.name, parents=list(p.parents), progress=p.progress, total=p.total
    )
    if p.desc is not None:
        msg.desc.CopyFrom(descriptor_to_proto(p.desc))
    return msg


def progress_from_proto(m: Any) -> Progress:
    return Progress(
        event=m.event,
        name=m.name,
        parents=tuple(m.parents),
        progress=m.progress,
        total=m.total,
        desc=descriptor_from_proto(m.desc) if m.HasField("desc") else None,
    )


def imagestore_to_proto(s: ImageStore) -> Any:
    imagestore_pb2 = _pb()[2]
    msg = imagestore_pb2.ImageStore(
        name=s.name,
        labels=dict(s.labels),
        platforms=[platform_to_proto(p) for p in s.platforms],
        all_metadata=s.all_metadata,
        manifest_limit=s.manifest_limit,
    )
    for r in s.extra_references:
        msg.extra_references.add(
            name=r.name,
            is_prefix=r.is_prefix,
            allow_overwrite=r.allow_overwrite,
            add_digest=r.add_digest,
            skip_named_digest=r.skip_named_digest,
        )
    for u in s.unpacks:
        um = msg.unpacks.add(snapshotter=u.snapshotter)
        if u.platform is not None:
            um.platform.CopyFrom(platform_to_proto(u.platform))
    return msg


def imagestore_from_proto(m: Any) -> ImageStore:
    return ImageStore(
        name=m.name,
        labels=dict(m.labels),
        platforms=[platform_from_proto(p) for p in m.platforms],
        all_metadata=m.all_metadata,
        manifest_limit=m.manifest_limit,
        extra_references=[
            ImageReference(
                name=r.name,
                is_prefix=r.is_prefix,
                allow_overwrite=r.allow_overwrite,
                add_digest=r.add_digest,
                skip_named_digest=r.skip_named_digest,
            )
            for r in m.extra_references
        ],
        unpacks=[
            UnpackConfiguration(
                platform=platform_from_proto(u.platform) if u.HasField("platform") else None,
                snapshotter=u.snapshotter,
            )
            for u in m.unpacks
        ],
    )


def registry_to_proto(r: OCIRegistry, *, auth_stream: str = "") -> Any:
    registry_pb2 = _pb()[4]
    return registry_pb2.OCIRegistry(
        reference=r.reference,
        resolver=registry_pb2.RegistryResolver(
            auth_stream=auth_stream,
            headers=dict(r.headers),
            host_dir=r.host_dir,
            default_scheme=r.default_scheme,
        ),
    )


class StreamCredentials:
    """Credentials asked for over an auth stream: ``AuthRequest{host, reference}`` out,
    ``AuthResponse`` back (containerd's credCallback)."""

    def __init__(self, stream: Stream, reference: str) -> None:
        self._stream = stream
        self._reference = reference
        self._lock = asyncio.Lock()

    async def __call__(self, host: str) -> tuple[str, str]:
        registry_pb2 = _pb()[4]
        async with self._lock:
            try:
                await self._stream.send(
                    pack(registry_pb2.AuthRequest(host=host, reference=self._reference))
                )
                resp = unpack_as(await self._stream.recv(), registry_pb2.AuthResponse)
            except EOFError:
                raise errdefs.Unavailable(
                    f"credentials for {host}: the client's auth stream closed"
                ) from None
        if resp.authType == registry_pb2.CREDENTIALS:
            return resp.username, resp.secret
        if resp.authType == registry_pb2.REFRESH:
            return "", resp.secret
        if resp.authType == registry_pb2.HEADER:
            log.warning("header credentials for %s are not supported; ignoring", host)
        return "", ""


def registry_from_proto(m: Any, get_stream: Any = None) -> OCIRegistry:
    """``get_stream(id)`` gives the registered stream for an auth stream id."""
    res = m.resolver if m.HasField("resolver") else None
    creds = None
    if res is not None and res.auth_stream:
        if get_stream is None:
            raise errdefs.InvalidArgument("an auth stream needs the streaming service")
        creds = StreamCredentials(get_stream(res.auth_stream), m.reference)
    return OCIRegistry(
        reference=m.reference,
        headers=dict(res.headers) if res is not None else {},
        host_dir=res.host_dir if res is not None else "",
        default_scheme=res.default_scheme if res is not None else "",
        credentials=creds,
    )


def to_any(obj: Any, *, auth_stream: str = "") -> Any:
    """An OCIRegistry or ImageStore packed in an ``Any``."""
    if isinstance(obj, OCIRegistry):
        return pack(registry_to_proto(obj, auth_stream=auth_stream))
    if isinstance(obj, ImageStore):
        return pack(imagestore_to_proto(obj))
    raise errdefs.InvalidArgument(f"cannot encode {type(obj).__name__}")
