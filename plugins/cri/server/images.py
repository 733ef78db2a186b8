"""ImageService: ListImages, StreamImages, ImageStatus, PullImage, RemoveImage and ImageFsInfo
(containerd's ``internal/cri/server/images/*.go``) over the CRI image service."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from pycontainerd.core import errdefs
from pycontainerd.plugins.cri.images import auth, refs
from pycontainerd.plugins.cri.images.store import Image

log = logging.getLogger(__name__)

#: Images per StreamImages message.
STREAM_BATCH_SIZE = 5000


def _pb() -> Any:
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2

    return api_pb2


def user_of(user: str) -> tuple[int | None, str]:
    """An image config's ``User`` as the CRI reports it: a numeric user (``1000`` or
    ``1000:100``) is a uid, anything else a user name."""
    if not user:
        return None, ""
    name = user.split(":", 1)[0]
    try:
        return int(name), ""
    except ValueError:
        return None, name


def to_cri_image(image: Image, spec: Any = None) -> Any:
    pb = _pb()
    tags, digests = refs.repo_tags_and_digests(image.references)
    out = pb.Image(
        id=image.id,
        repo_tags=tags,
        repo_digests=digests,
        size=image.size,
        pinned=image.pinned,
    )
    uid, username = user_of(image.user)
    if uid is not None:
        out.uid.value = uid
    out.username = username
    out.spec.CopyFrom(spec if spec is not None else pb.ImageSpec(image=image.id))
    return out


def _filtered(c: Any, image_filter: Any) -> list[Image]:
    wanted = image_filter.image.image if image_filter is not None else ""
    if not wanted:
        return c.images.index.list()
    try:
        return [c.images.local_resolve(wanted)]
    except errdefs.NotFound:
        return []


async def list_images(c: Any, request: Any, context: Any) -> Any:
    images = _filtered(c, request.filter if request.HasField("filter") else None)
    return _pb().ListImagesResponse(images=[to_cri_image(i) for i in images])


async def stream_images(c: Any, request: Any, context: Any) -> AsyncIterator[Any]:
    images = _filtered(c, request.filter if request.HasField("filter") else None)
    converted = [to_cri_image(i) for i in images]
    for start in range(0, len(converted), STREAM_BATCH_SIZE):
        yield _pb().StreamImagesResponse(images=converted[start : start + STREAM_BATCH_SIZE])


async def image_status(c: Any, request: Any, context: Any) -> Any:
    """The image any reference form names; an empty response when there is none."""
    pb = _pb()
    try:
        image = c.images.local_resolve(request.image.image)
    except errdefs.NotFound:
        return pb.ImageStatusResponse()
    spec = pb.ImageSpec()
    spec.CopyFrom(request.image)
    spec.image = image.id
    resp = pb.ImageStatusResponse(image=to_cri_image(image, spec))
    if request.verbose:
        resp.info["info"] = json.dumps({"chainID": image.chain_id, "imageSpec": image.spec})
    return resp


async def pull_image(c: Any, request: Any, context: Any) -> Any:
    pb = _pb()
    auth_config = request.auth if request.HasField("auth") else None

    def credentials(host: str) -> tuple[str, str]:
        return auth.parse_auth(auth_config, host)

    headers: dict[str, str] = {}
    if auth_config is not None and auth_config.registry_token:
        from pycontainerd.core import reference

        try:
            host = reference.parse_docker_ref(request.image.image).domain
        except errdefs.InvalidArgument:
            host = ""
        headers = auth.registry_token_header(auth_config, host)
    image_id = await c.images.pull_image(
        request.image.image,
        credentials=credentials,
        headers=headers,
        sandbox_config=request.sandbox_config if request.HasField("sandbox_config") else None,
        runtime_handler=request.image.runtime_handler,
    )
    return pb.PullImageResponse(image_ref=image_id)


async def remove_image(c: Any, request: Any, context: Any) -> Any:
    """Remove the whole image, whichever of its references is given; unknown is fine."""
    await c.images.remove_image(request.image.image)
    return _pb().RemoveImageResponse()


async def image_fs_info(c: Any, request: Any, context: Any) -> Any:
    pb = _pb()
    timestamp, mountpoint, used, inodes = await c.images.image_fs_usage()
    usage = pb.FilesystemUsage(
        timestamp=timestamp,
        fs_id=pb.FilesystemIdentifier(mountpoint=mountpoint),
    )
    usage.used_bytes.value = used
    usage.inodes_used.value = inodes
    return pb.ImageFsInfoResponse(image_filesystems=[usage])
