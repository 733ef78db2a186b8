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

#: Set by an import on each index entry it asks to record: names then come from the entry's
#: annotations through the prefix references (containerd's ``io.containerd.import.ref-source``).
REF_SOURCE_ANNOTATION = "io.containerd.import.ref-source"

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
        source = desc.annotations.get(REF_SOURCE_ANNOTATION)
        if source is not None:
            if source != "annotation":
                raise errdefs.InvalidArgument(f"ref source {source!r} not supported")
            return self._annotated_names(desc)
        out = [self.name] if self.name else []
        for ref in self.extra_references:
            if ref.is_prefix:
                continue
            out.append(f"{ref.name}@{desc.digest}" if ref.add_digest else ref.name)
        return out

    def _annotated_names(self, desc: Descriptor) -> list[str]:
        """Names for an imported index entry: each prefix reference turns the entry's
        ``io.containerd.image.name`` (kept only when under the prefix, unless overwriting is
        allowed) or its ``org.opencontainers.image.ref.name`` (a bare tag gets the prefix)
        into a name, and adds ``prefix@digest`` where asked."""
        from pycontainerd.core.images import archive
        from pycontainerd.core.images import image as image_

        out: list[str] = []
        for ref in self.extra_references:
            if not ref.is_prefix:
                continue
            translate = (
                archive.add_ref_prefix(ref.name)
                if ref.allow_overwrite
                else archive.filter_ref_prefix(ref.name)
            )
            name = desc.annotations.get(image_.ANNOTATION_IMAGE_NAME, "")
            if name:
                if translate(name) != name:
                    name = ""
            else:
                name = desc.annotations.get(image_.ANNOTATION_REF_NAME, "")
                if name:
                    name = translate(name)
            if name:
                out.append(name)
            if ref.add_digest and (not name or not ref.skip_named_digest):
                out.append(f"{ref.name}@{desc.digest}")
        return out

    async def store(self, desc: Descriptor, images: Any) -> list[Image]:
        """Record ``desc`` under every name (create, or update an existing image)."""
        from pycontainerd.core.metadata.images import Image

        names = self.names(desc)
        if not names:
            raise errdefs.NotFound("no image name found")
        if REF_SOURCE_ANNOTATION in desc.annotations:
            desc = attrs.evolve(
                desc,
                annotations={
                    k: v for k, v in desc.annotations.items() if k != REF_SOURCE_ANNOTATION
                },
            )
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
