"""The OCI content descriptor: what a blob is (media type), which (digest) and how big."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from pycontainerd.core.plugin.context import Platform


def _frozen_map(value: Mapping[str, str] | None) -> dict[str, str]:
    return dict(value or {})


@attrs.frozen(kw_only=True)
class Descriptor:
    """An OCI descriptor. Only ``digest`` is needed to read a blob from a content store;
    ``size`` is checked where the blob is read in full."""

    media_type: str = ""
    digest: str
    size: int = 0
    annotations: dict[str, str] = attrs.field(factory=dict, converter=_frozen_map)
    urls: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    platform: Platform | None = None

    def to_dict(self) -> dict[str, Any]:
        """The OCI JSON form (``mediaType``, ``digest``, ``size``, ...), omitting empty fields."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            p: dict[str, Any] = {
                "architecture": self.platform.architecture,
                "os": self.platform.os,
            }
            if self.platform.os_version:
                p["os.version"] = self.platform.os_version
            if self.platform.variant:
                p["variant"] = self.platform.variant
            out["platform"] = p
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Descriptor:
        """Build from the OCI JSON form; fields that are not in the OCI spec are ignored."""
        platform = None
        p = data.get("platform")
        if isinstance(p, Mapping):
            platform = Platform(
                os=str(p.get("os", "")),
                architecture=str(p.get("architecture", "")),
                variant=str(p.get("variant", "")),
                os_version=str(p.get("os.version", "")),
            )
        return cls(
            media_type=str(data.get("mediaType", "")),
            digest=str(data.get("digest", "")),
            size=int(data.get("size", 0)),
            annotations=dict(data.get("annotations") or {}),
            urls=tuple(data.get("urls") or ()),
            platform=platform,
        )
