"""Reading an image's object graph from a content store (containerd's ``core/images/image.go``).

An image is a name and a target descriptor: an index (OCI index, Docker manifest list), or a
manifest. From the target and a platform matcher:

- :func:`manifest` picks the manifest for the platform (best match first, recursing through
  nested indexes; a top-level manifest is checked against its config's platform);
- :func:`config`, :func:`rootfs` (the config's ``rootfs.diff_ids``), :func:`chain_ids`
  (``identity.ChainIDs``) and :func:`chain_id`;
- :func:`size` (every blob the platform needs, target included), :func:`platforms` (what the
  image offers), :func:`check` (which needed blobs are present);
- :func:`children` and :func:`child_gc_labels`: the graph edges and the GC reference labels
  clients set on parents (``containerd.io/gc.ref.content.m.<i>`` on an index,
  ``.config`` and ``.l.<i>`` on a manifest).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core import platforms as platforms_
from pycontainerd.core.content import helpers
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.content.types import InfoProvider, Provider
from pycontainerd.core.images import mediatypes
from pycontainerd.core.plugin.context import Platform

#: GC reference label prefix for content (``.m.<i>``, ``.config``, ``.l.<i>`` follow it).
LABEL_GC_REF_CONTENT = "containerd.io/gc.ref.content"
#: GC reference label prefix for snapshots; ``<prefix><snapshotter>`` = chain ID on a config.
LABEL_GC_REF_SNAPSHOT_PREFIX = "containerd.io/gc.ref.snapshot."
#: Label on a compressed layer blob naming its uncompressed digest (the diff ID).
LABEL_UNCOMPRESSED = "containerd.io/uncompressed"
#: Full image name on an index entry (containerd's own annotation).
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
#: OCI reference name on an index entry (usually only the tag).
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

#: Largest index/manifest/config read into memory (containerd's importer allows 20 MiB).
MAX_JSON_BLOB = 20 << 20


def snapshot_gc_label(snapshotter: str) -> str:
    """``containerd.io/gc.ref.snapshot.<snapshotter>``."""
    return LABEL_GC_REF_SNAPSHOT_PREFIX + snapshotter


# --- identity -----------------------------------------------------------------------------


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """ChainID(0) = DiffID(0); ChainID(n) = sha256(ChainID(n-1) + " " + DiffID(n))."""
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def chain_id(diff_ids: Sequence[str]) -> str:
    """The chain ID of the whole stack ("" for no layers)."""
    ids = chain_ids(diff_ids)
    return ids[-1] if ids else ""


# --- graph edges --------------------------------------------------------------------------


def _loads(desc: Descriptor, data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise errdefs.InvalidArgument(
            f"{desc.media_type or 'blob'} {desc.digest}: invalid JSON: {exc}"
        ) from None
    if not isinstance(doc, dict):
        raise errdefs.InvalidArgument(f"{desc.media_type} {desc.digest}: not a JSON object")
    declared = doc.get("mediaType")
    mt = desc.media_type
    if (
        isinstance(declared, str)
        and declared
        and declared != mt
        and mediatypes.is_index(declared) != mediatypes.is_index(mt)
    ):
        raise errdefs.InvalidArgument(
            f"{desc.digest}: descriptor says {mt} but the document says {declared}"
        )
    return doc


def _descs(desc: Descriptor, items: Any, what: str) -> list[Descriptor]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise errdefs.InvalidArgument(f"{desc.digest}: {what} is not a list")
    try:
        return [Descriptor.from_dict(i) for i in items]
    except (TypeError, ValueError, AttributeError) as exc:
        raise errdefs.InvalidArgument(f"{desc.digest}: bad descriptor in {what}: {exc}") from None


def children(desc: Descriptor, data: bytes) -> list[Descriptor]:
    """What an index (its manifests) or a manifest (config, then layers) refers to; [] for
    other media types."""
    mt = desc.media_type
    if mediatypes.is_index(mt):
        return _descs(desc, _loads(desc, data).get("manifests"), "manifests")
    if mediatypes.is_manifest(mt):
        doc = _loads(desc, data)
        cfg = doc.get("config")
        if not isinstance(cfg, dict):
            raise errdefs.InvalidArgument(f"manifest {desc.digest}: no config")
        return [Descriptor.from_dict(cfg), *_descs(desc, doc.get("layers"), "layers")]
    return []


def child_gc_labels(desc: Descriptor, kids: Sequence[Descriptor]) -> dict[str, str]:
    """The GC reference labels a client sets on ``desc`` for its (kept) children."""
    out: dict[str, str] = {}
    if mediatypes.is_index(desc.media_type):
        for i, k in enumerate(kids):
            out[f"{LABEL_GC_REF_CONTENT}.m.{i}"] = k.digest
    elif mediatypes.is_manifest(desc.media_type):
        layer = 0
        for k in kids:
            if mediatypes.is_config(k.media_type) and f"{LABEL_GC_REF_CONTENT}.config" not in out:
                out[f"{LABEL_GC_REF_CONTENT}.config"] = k.digest
            else:
                out[f"{LABEL_GC_REF_CONTENT}.l.{layer}"] = k.digest
                layer += 1
    return out


def filter_platforms(
    kids: Sequence[Descriptor], matcher: platforms_.MatchComparer | None
) -> list[Descriptor]:
    """An index's children that ``matcher`` accepts (those without a platform always pass),
    in their order; all of them when ``matcher`` is None."""
    if matcher is None:
        return list(kids)
    return [k for k in kids if k.platform is None or matcher.match(k.platform)]


async def read_json(provider: Provider, desc: Descriptor) -> dict[str, Any]:
    data = await helpers.read_blob(provider, desc, max_size=MAX_JSON_BLOB)
    return _loads(desc, data)


async def read_children(provider: Provider, desc: Descriptor) -> list[Descriptor]:
    if not (mediatypes.is_index(desc.media_type) or mediatypes.is_manifest(desc.media_type)):
        return []
    data = await helpers.read_blob(provider, desc, max_size=MAX_JSON_BLOB)
    return children(desc, data)


async def walk(
    provider: Provider,
    root: Descriptor,
    matcher: platforms_.MatchComparer | None = None,
) -> AsyncIterator[Descriptor]:
    """Every descriptor under ``root`` (root first, depth first), index children filtered by
    ``matcher``. A missing index or manifest is NotFound."""
    stack = [root]
    while stack:
        desc = stack.pop()
        yield desc
        kids = await read_children(provider, desc)
        if mediatypes.is_index(desc.media_type):
            kids = filter_platforms(kids, matcher)
        stack.extend(reversed(kids))


# --- manifest selection -------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Manifest:
    """A manifest picked for a platform: its descriptor, config and layers."""

    descriptor: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = attrs.field(factory=dict)


def config_platform(cfg: dict[str, Any]) -> Platform:
    return platforms_.normalize(
        Platform(
            os=str(cfg.get("os", "")),
            architecture=str(cfg.get("architecture", "")),
            variant=str(cfg.get("variant", "")),
            os_version=str(cfg.get("os.version", "")),
        )
    )


async def manifest(
    provider: Provider,
    target: Descriptor,
    matcher: platforms_.MatchComparer | None = None,
) -> Manifest:
    """The manifest of ``target`` for ``matcher`` (None: this host's default matcher;
    :data:`platforms.ALL`: the first manifest). NotFound when none matches."""
    comparer = matcher if matcher is not None else platforms_.default()
    found = await _manifest(provider, target, comparer, top=True)
    if found is None:
        raise errdefs.NotFound(
            f"manifest {target.digest}: no match for platform {comparer!r} in manifest"
        )
    return found


async def _manifest(
    provider: Provider, desc: Descriptor, comparer: platforms_.MatchComparer, *, top: bool
) -> Manifest | None:
    mt = desc.media_type
    if mediatypes.is_manifest(mt):
        doc = await read_json(provider, desc)
        kids = _manifest_kids(desc, doc)
        cfg, layers = kids[0], kids[1:]
        if top and desc.platform is None and comparer is not platforms_.ALL:
            cfg_doc = await read_json(provider, cfg)
            if not comparer.match(config_platform(cfg_doc)):
                return None
        return Manifest(
            descriptor=desc,
            config=cfg,
            layers=tuple(layers),
            annotations=dict(doc.get("annotations") or {}),
        )
    if mediatypes.is_index(mt):
        kids = await read_children(provider, desc)
        with_platform = [(k, k.platform) for k in kids if k.platform is not None]
        ordered = platforms_.select(comparer, with_platform)
        ordered += [k for k in kids if k.platform is None and comparer is not platforms_.ALL]
        if comparer is platforms_.ALL:
            ordered = list(kids)
        for k in ordered:
            if not (mediatypes.is_manifest(k.media_type) or mediatypes.is_index(k.media_type)):
                continue
            got = await _manifest(provider, k, comparer, top=False)
            if got is not None:
                return got
        return None
    raise errdefs.NotFound(f"unexpected media type {mt!r} for {desc.digest}: not an image")


def _manifest_kids(desc: Descriptor, doc: dict[str, Any]) -> list[Descriptor]:
    cfg = doc.get("config")
    if not isinstance(cfg, dict):
        raise errdefs.InvalidArgument(f"manifest {desc.digest}: no config")
    return [Descriptor.from_dict(cfg), *_descs(desc, doc.get("layers"), "layers")]


async def config(
    provider: Provider, target: Descriptor, matcher: platforms_.MatchComparer | None = None
) -> Descriptor:
    return (await manifest(provider, target, matcher)).config


async def rootfs(provider: Provider, config_desc: Descriptor) -> list[str]:
    """The config's ``rootfs.diff_ids``."""
    doc = await read_json(provider, config_desc)
    fs = doc.get("rootfs") or {}
    ids = fs.get("diff_ids") if isinstance(fs, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise errdefs.InvalidArgument(f"config {config_desc.digest}: invalid rootfs.diff_ids")
    return list(ids)


async def size(
    provider: Provider, target: Descriptor, matcher: platforms_.MatchComparer | None = None
) -> int:
    """The bytes of every blob the platform needs: target, indexes, manifests, configs and
    layers (what ``ctr images ls`` shows)."""
    comparer = matcher if matcher is not None else platforms_.default()
    total = 0
    async for d in walk(provider, target, comparer):
        total += d.size
    return total


async def platforms(provider: Provider, target: Descriptor) -> list[Platform]:
    """The platforms an image offers: from its index entries, else from the config."""
    out: list[Platform] = []
    stack = [target]
    while stack:
        desc = stack.pop()
        if desc is not target and desc.platform is not None:
            if desc.platform.os != "unknown":  # attestation manifests
                out.append(platforms_.normalize(desc.platform))
            continue
        if mediatypes.is_config(desc.media_type):
            out.append(config_platform(await read_json(provider, desc)))
            continue
        kids = await read_children(provider, desc)
        if mediatypes.is_manifest(desc.media_type):
            kids = kids[:1]  # only the config
        stack.extend(reversed(kids))
    return out


@attrs.frozen(kw_only=True)
class CheckResult:
    """Whether an image is complete for a platform (containerd's ``images.Check``)."""

    available: bool
    required: tuple[Descriptor, ...]
    present: tuple[Descriptor, ...]
    missing: tuple[Descriptor, ...]


async def check(
    provider: Any, target: Descriptor, matcher: platforms_.MatchComparer | None = None
) -> CheckResult:
    """Which blobs of the platform's manifest (config and layers) are in ``provider`` (an
    :class:`InfoProvider`)."""
    try:
        m = await manifest(provider, target, matcher)
    except errdefs.NotFound:
        return CheckResult(available=False, required=(), present=(), missing=(target,))
    required = (m.config, *m.layers)
    info: InfoProvider = provider
    present: list[Descriptor] = []
    missing: list[Descriptor] = []
    for d in required:
        try:
            await info.info(d.digest)
            present.append(d)
        except errdefs.NotFound:
            missing.append(d)
    return CheckResult(
        available=True, required=required, present=tuple(present), missing=tuple(missing)
    )
