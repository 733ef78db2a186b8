"""gRPC ``containerd.services.images.v1.Images``: proto <-> core conversion only."""

from __future__ import annotations

import datetime
from typing import Any

from google.protobuf import empty_pb2, timestamp_pb2

from pycontainerd.api.containerd.services.images.v1 import images_pb2 as pb
from pycontainerd.api.containerd.services.images.v1 import images_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import descriptor_pb2
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.metadata.images import Image
from pycontainerd.plugins.services.images.local import Local


def timestamp_to_proto(t: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    if t is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(t)
    return ts


def descriptor_from_proto(msg: descriptor_pb2.Descriptor) -> Descriptor:
    return Descriptor(
        media_type=msg.media_type,
        digest=msg.digest,
        size=msg.size,
        annotations=dict(msg.annotations),
    )


def descriptor_to_proto(d: Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(
        media_type=d.media_type, digest=d.digest, size=d.size, annotations=d.annotations
    )


def from_proto(msg: pb.Image) -> Image:
    """Creation and update times are the store's: the client's are ignored."""
    return Image(name=msg.name, labels=dict(msg.labels), target=descriptor_from_proto(msg.target))


def to_proto(image: Image) -> pb.Image:
    return pb.Image(
        name=image.name,
        labels=image.labels,
        target=descriptor_to_proto(image.target),
        created_at=timestamp_to_proto(image.created_at),
        updated_at=timestamp_to_proto(image.updated_at),
    )


class ImagesService(pb_grpc.ImagesServicer):
    def __init__(self, local: Local) -> None:
        self.local = local

    def register_grpc(self, server: Any) -> None:
        pb_grpc.add_ImagesServicer_to_server(self, server)

    async def Get(self, request: pb.GetImageRequest, context: Any) -> pb.GetImageResponse:  # noqa: N802
        return pb.GetImageResponse(image=to_proto(await self.local.get(request.name)))

    async def List(self, request: pb.ListImagesRequest, context: Any) -> pb.ListImagesResponse:  # noqa: N802
        images = await self.local.list(list(request.filters))
        return pb.ListImagesResponse(images=[to_proto(i) for i in images])

    async def Create(self, request: pb.CreateImageRequest, context: Any) -> pb.CreateImageResponse:  # noqa: N802
        created = await self.local.create(from_proto(request.image))
        return pb.CreateImageResponse(image=to_proto(created))

    async def Update(self, request: pb.UpdateImageRequest, context: Any) -> pb.UpdateImageResponse:  # noqa: N802
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else []
        updated = await self.local.update(from_proto(request.image), paths)
        return pb.UpdateImageResponse(image=to_proto(updated))

    async def Delete(self, request: pb.DeleteImageRequest, context: Any) -> empty_pb2.Empty:  # noqa: N802
        target = descriptor_from_proto(request.target) if request.HasField("target") else None
        await self.local.delete(request.name, target=target, sync=request.sync)
        return empty_pb2.Empty()
