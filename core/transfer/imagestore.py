"""The image store as a transfer source or destination (containerd's
``core/transfer/image.Store``): the image name and labels to record, the platforms to fetch,
and where to unpack."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core import platforms as platforms_
from pycontainerd.core.transfer import UnpackConfiguration

if TYPE_CHECKING:
    from pycontainerd.core.content.descriptor import Descriptor
    from pycontainerd.core.metadata.images import Image
    from pycontainerd.core.plugin.context import Platform


@attrs.frozen(kw_only=True)
class ImageReference:
    """An extra name to record (containerd's ``image.Reference``)."""

    name: str
    is_prefix: bool = False
    allow_overwrite: bool = False
    add_digest: bool = False
    skip_named_digest: bool = False


@attrs.define(eq=False, kw_only=True)
class ImageStore:
    name: str = ""
    labels: Mapping[str, str] = attrs.Factory(dict)
    #: platforms to fetch (empty: all of them)
    platforms: Sequence[Platform] = ()
    #: fetch every manifest of an index, but the layers only of ``platforms``
    all_metadata: bool = False
    manifest_limit: int = 0
    extra_references: Sequence[ImageReference] = ()
    unpacks: Sequence[UnpackConfiguration] = ()

    def __str__(self) -> str:
        return f"Local Image Store ({self.name})"

    def matcher(self) -> platforms_.MatchComparer:
        if not self.platforms:
            return platforms_.ALL
        return platforms_.ordered(*self.platforms)

    def names(self, desc: Descriptor) -> list[str]:
        out = [self.name] if self.name else []
        for ref in self.extra_references:
            if ref.is_prefix and not ref.add_digest:
                continue
            out.append(f"{ref.name}@{desc.digest}" if ref.add_digest else ref.name)
        return out

    async def store(self, desc: Descriptor, images: Any) -> list[Image]:
        """Record ``desc`` under every name (create, or update an existing image)."""
        from pycontainerd.core.metadata.images import Image

        names = self.names(desc)
        if not names:
            raise errdefs.NotFound("no image name found")
        out: list[Image] = []
        for i, name in enumerate(names):
            labels = dict(self.labels)
            if i > 0 and self.name:
                labels["containerd.io/gc.bref.image"] = self.name
            img = Image(name=name, target=desc, labels=labels)
            try:
                out.append(await images.create(img))
            except errdefs.AlreadyExists:
                out.append(await images.update(img))
        return out

    async def get(self, images: Any) -> Image:
        if not self.name:
            raise errdefs.InvalidArgument("image name is required")
        img: Image = await images.get(self.name)
        return img
