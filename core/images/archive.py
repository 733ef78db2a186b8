"""Image archives: importing OCI and ``docker save`` tars into a content store and image
records, and exporting images as OCI archives (containerd's ``core/images/archive`` and the
import half of its client).

Import (:func:`import_index`, then :func:`import_images`):

- The tar is read as a stream (a file or a pipe), in worker threads. An entry
  ``blobs/<alg>/<hex>`` is written to the store with that digest as the expected one, so a
  corrupted blob fails the commit and nothing of it becomes visible; a blob already present is
  skipped without writing. Other entries (``index.json``, ``manifest.json``, Docker layer tars
  and configs) are hashed as they are written; small ones stay in memory until it is known
  whether anything refers to them.
- An OCI archive (``oci-layout`` present) gives its ``index.json`` as the index. A Docker
  archive (``manifest.json``) is converted as containerd does: each entry becomes a Docker
  schema 2 manifest (config ``application/vnd.docker.container.image.v1+json``, layers typed by
  their detected compression) written to the store, and all of them an OCI index whose entries
  carry ``io.containerd.image.name`` (the normalised repo tag) and
  ``org.opencontainers.image.ref.name`` and the platform from the config.
- :func:`import_images` walks the index for the platform (host default, or all), checks that
  every needed blob is present with its size, sets the GC reference labels on each parent
  (``containerd.io/gc.ref.content.m.<i>``, ``.config``, ``.l.<i>``), then creates or updates
  one image per named index entry (plus ``index_name`` for the whole index).

Run both under a lease (the caller's): what the archive brought that no image ends up
referring to is collected once the lease is gone.

Export (:func:`export`): an OCI layout tar (``oci-layout``, ``index.json`` naming each image,
``blobs/sha256/...`` for what the platform needs) plus a Docker-compatible ``manifest.json``,
entries sorted by name as containerd writes them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import posixpath
import re
import tarfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any, BinaryIO

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core import platforms as platforms_
from pycontainerd.core import reference as reference_
from pycontainerd.core.archive.compression import Compression, detect_compression
from pycontainerd.core.content import digests, helpers
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.content.types import Info
from pycontainerd.core.images import image as image_
from pycontainerd.core.images import mediatypes
from pycontainerd.core.images.blobio import blob_file
from pycontainerd.core.metadata.images import Image

log = logging.getLogger(__name__)

OCI_LAYOUT_FILE = "oci-layout"
OCI_INDEX_FILE = "index.json"
OCI_LAYOUT_VERSION = "1.0.0"
DOCKER_MANIFEST_FILE = "manifest.json"

#: Entries up to this size that are not ``blobs/...`` are kept in memory, not written, until
#: something refers to them (Docker ``json``/``VERSION``/``repositories`` files never are).
SMALL_ENTRY = 1 << 20
_CHUNK = 1 << 20
_TAR_BUFSIZE = 1 << 20
_BLOB_PATH = re.compile(r"^blobs/([a-z0-9]+)/([a-f0-9]+)$")


@attrs.frozen(kw_only=True)
class BlobProgress:
    """A progress report for one archive entry being stored."""

    #: the entry's name in the tar
    name: str
    #: its digest ("" until known for entries that are hashed as they are written)
    digest: str
    offset: int
    total: int
    #: ``writing``, ``exists`` (already in the store, skipped) or ``done``
    status: str


Progress = Callable[[BlobProgress], None]


@attrs.frozen(kw_only=True)
class ImportOptions:
    """What :func:`import_images` creates (containerd's client import options)."""

    #: also name the whole index as an image
    index_name: str = ""
    #: walk (label) every platform rather than ``platform``
    all_platforms: bool = False
    #: platforms to keep (None: this host)
    platform: platforms_.MatchComparer | None = None
    #: turns an ``org.opencontainers.image.ref.name`` into an image name ("" drops it)
    ref_translator: Callable[[str], str] | None = None
    #: names an image per manifest digest (``--digests``); "" for none
    digest_ref: Callable[[str], str] | None = None
    #: with ``digest_ref``: no digest image for entries that have a name
    skip_digest_for_named: bool = False
    #: labels of the images created or updated
    labels: Mapping[str, str] | None = None


# --- reference helpers (containerd's archive/reference.go) --------------------------------


def _is_image_prefix(s: str, prefix: str) -> bool:
    if not s.startswith(prefix):
        return False
    return len(s) == len(prefix) or s[len(prefix)] in "/:@"


def _ref_translator(image: str, check_prefix: bool) -> Callable[[str], str]:
    def translate(ref: str) -> str:
        if not image:
            return ""
        if any(c in ref for c in "/:@"):
            if check_prefix and not _is_image_prefix(ref, image):
                return ""
            return ref
        return f"{image}:{ref}"

    return translate


def add_ref_prefix(image: str) -> Callable[[str], str]:
    """A bare tag ``t`` becomes ``image:t``; full references are kept."""
    return _ref_translator(image, False)


def filter_ref_prefix(image: str) -> Callable[[str], str]:
    """As :func:`add_ref_prefix`, but full references not under ``image`` are dropped."""
    return _ref_translator(image, True)


def digest_translator(prefix: str) -> Callable[[str], str]:
    return lambda dgst: f"{prefix}@{dgst}"


def normalize_reference(ref: str) -> str:
    """``busybox`` -> ``docker.io/library/busybox:latest``."""
    try:
        return str(reference_.parse_docker_ref(ref))
    except errdefs.ContainerdError as exc:
        raise errdefs.InvalidArgument(f"normalize image ref {ref!r}: {exc}") from None


def oci_reference_name(name: str) -> str:
    """The OCI ``ref.name`` of a full name: only what follows the repository (the tag)."""
    try:
        return reference_.parse(name).object or name
    except errdefs.ContainerdError:
        return name


def image_name(annotations: Mapping[str, str], translator: Callable[[str], str] | None) -> str:
    name = annotations.get(image_.ANNOTATION_IMAGE_NAME, "")
    if name:
        return name
    name = annotations.get(image_.ANNOTATION_REF_NAME, "")
    if name and translator is not None:
        name = translator(name)
    return name


# --- reading the tar ----------------------------------------------------------------------


class _TarStream:
    """Blocking access to a tar read front to back (call from worker threads only)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._tf: tarfile.TarFile | None = None
        self._member: BinaryIO | None = None

    def next(self) -> tarfile.TarInfo | None:
        try:
            if self._tf is None:
                self._tf = tarfile.open(fileobj=self._stream, mode="r|*", bufsize=_TAR_BUFSIZE)
            self._member = None
            return self._tf.next()
        except tarfile.TarError as exc:
            raise errdefs.InvalidArgument(f"invalid image archive: {exc}") from None

    def open(self, member: tarfile.TarInfo) -> None:
        assert self._tf is not None
        self._member = self._tf.extractfile(member)  # type: ignore[assignment]

    def read(self, n: int) -> bytes:
        assert self._member is not None
        try:
            return self._member.read(n)
        except tarfile.TarError as exc:
            raise errdefs.InvalidArgument(f"invalid image archive: {exc}") from None

    def read_all(self, limit: int) -> bytes:
        assert self._member is not None
        data = self._member.read(limit + 1)
        if len(data) > limit:
            raise errdefs.ResourceExhausted(f"archive entry larger than {limit} bytes")
        return data


@attrs.define(eq=False)
class _Entry:
    """A regular file of the archive: stored (``digest`` set) or in memory (``data``)."""

    name: str
    size: int
    digest: str = ""
    data: bytes | None = None
    compression: Compression = Compression.UNCOMPRESSED


async def _store_stream(
    store: Any,
    tar: _TarStream,
    name: str,
    size: int,
    expected: str,
    progress: Progress | None,
) -> tuple[str, bytes]:
    """Write the current tar member into ``store``; -> (digest, first bytes)."""
    ref = "tar-" + name
    try:
        w = await helpers.open_writer(store, ref, total=size, expected=expected)
    except errdefs.AlreadyExists:
        if progress is not None:
            progress(
                BlobProgress(name=name, digest=expected, offset=size, total=size, status="exists")
            )
        return expected, b""
    head = b""
    try:
        offset = w.status().offset
        if offset and not (offset == size and expected and w.digest() == expected):
            # An interrupted ingest of this entry: the stream cannot be rewound, start over.
            await w.close()
            try:
                await store.abort(ref)
            except errdefs.NotFound:
                pass
            w = await helpers.open_writer(store, ref, total=size, expected=expected)
            offset = w.status().offset
        if offset == size and size:
            # shared content already in the backend: nothing to copy
            if progress is not None:
                progress(
                    BlobProgress(
                        name=name, digest=expected, offset=size, total=size, status="exists"
                    )
                )
        else:
            got = 0
            while got < size:
                chunk = await asyncio.to_thread(tar.read, min(_CHUNK, size - got))
                if not chunk:
                    raise errdefs.InvalidArgument(
                        f"invalid image archive: entry {name!r} truncated at {got} of {size}"
                    )
                if not head:
                    head = chunk[:16]
                await w.write(chunk)
                got += len(chunk)
                if progress is not None:
                    progress(
                        BlobProgress(
                            name=name, digest=expected, offset=got, total=size, status="writing"
                        )
                    )
        dgst = expected or w.digest()
        try:
            await w.commit(size, expected)
        except errdefs.FailedPrecondition as exc:
            raise errdefs.FailedPrecondition(f"failed to ingest {name!r}: {exc}") from None
        except errdefs.AlreadyExists:
            pass
    finally:
        await w.close()
    if progress is not None:
        progress(BlobProgress(name=name, digest=dgst, offset=size, total=size, status="done"))
    return dgst, head


async def _write_json_blob(
    store: Any, doc: Any, media_type: str, labels: Mapping[str, str] | None = None
) -> Descriptor:
    data = json.dumps(doc, separators=(",", ":")).encode()
    return await _write_bytes(store, data, media_type, labels)


async def _write_bytes(
    store: Any, data: bytes, media_type: str, labels: Mapping[str, str] | None = None
) -> Descriptor:
    dgst = digests.from_bytes(data)
    await helpers.write_blob(store, f"manifest-{dgst}", data, dgst, labels)
    return Descriptor(media_type=media_type, digest=dgst, size=len(data))


async def import_index(
    store: Any, stream: BinaryIO, *, progress: Progress | None = None
) -> Descriptor:
    """Store the blobs of an OCI or Docker archive read from ``stream`` (a blocking binary
    file; read in threads) and return the descriptor of its index (see the module doc)."""
    tar = _TarStream(stream)
    entries: dict[str, _Entry] = {}
    symlinks: dict[str, str] = {}
    layout: dict[str, Any] | None = None
    docker: list[dict[str, Any]] | None = None
    while True:
        member = await asyncio.to_thread(tar.next)
        if member is None:
            break
        name = posixpath.normpath(member.name).lstrip("/")
        if member.issym():
            symlinks[name] = posixpath.normpath(
                posixpath.join(posixpath.dirname(name), member.linkname)
            )
            continue
        if not member.isreg():
            continue
        await asyncio.to_thread(tar.open, member)
        if name == OCI_LAYOUT_FILE:
            layout = _json_entry(name, await asyncio.to_thread(tar.read_all, image_.MAX_JSON_BLOB))
            continue
        if name == DOCKER_MANIFEST_FILE:
            doc = json.loads(await asyncio.to_thread(tar.read_all, image_.MAX_JSON_BLOB) or b"null")
            if not isinstance(doc, list):
                raise errdefs.InvalidArgument("invalid image archive: manifest.json is not a list")
            docker = doc
            continue
        m = _BLOB_PATH.match(name)
        if m is not None:
            expected = f"{m.group(1)}:{m.group(2)}"
            try:
                digests.validate(expected)
            except errdefs.InvalidArgument:
                expected = ""
            if expected:
                dgst, head = await _store_stream(store, tar, name, member.size, expected, progress)
                entries[name] = _Entry(
                    name=name, size=member.size, digest=dgst, compression=_compression(head)
                )
                continue
        if member.size <= SMALL_ENTRY:
            data = await asyncio.to_thread(tar.read_all, SMALL_ENTRY)
            entries[name] = _Entry(
                name=name, size=len(data), data=data, compression=_compression(data[:16])
            )
        else:
            dgst, head = await _store_stream(store, tar, name, member.size, "", progress)
            entries[name] = _Entry(
                name=name, size=member.size, digest=dgst, compression=_compression(head)
            )

    if layout is not None:
        version = layout.get("imageLayoutVersion", "")
        if version != OCI_LAYOUT_VERSION:
            raise errdefs.InvalidArgument(f"unsupported OCI layout version {version!r}")
        idx = entries.get(OCI_INDEX_FILE)
        if idx is None:
            raise errdefs.InvalidArgument(f"missing index.json in OCI layout {OCI_LAYOUT_VERSION}")
        return await _materialise(store, idx, mediatypes.OCI_INDEX)
    if docker is None:
        raise errdefs.InvalidArgument(
            "unrecognized image format: neither oci-layout nor manifest.json found"
        )
    for link, target in symlinks.items():
        if target not in entries:
            raise errdefs.InvalidArgument(
                f"no target for symlink layer from {link!r} to {target!r}"
            )
        entries[link] = entries[target]
    return await _docker_index(store, docker, entries)


def _compression(head: bytes) -> Compression:
    return detect_compression(head) if head else Compression.UNCOMPRESSED


def _json_entry(name: str, data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"invalid image archive: {name}: {exc}") from None
    if not isinstance(doc, dict):
        raise errdefs.InvalidArgument(f"invalid image archive: {name} is not a JSON object")
    return doc


async def _materialise(store: Any, entry: _Entry, media_type: str) -> Descriptor:
    """The descriptor of an entry, writing it to the store first if it is only in memory."""
    if entry.data is not None:
        desc = await _write_bytes(store, entry.data, media_type)
        entry.digest, entry.data = desc.digest, None
    return Descriptor(media_type=media_type, digest=entry.digest, size=entry.size)


async def _docker_index(
    store: Any, manifests: list[dict[str, Any]], entries: dict[str, _Entry]
) -> Descriptor:
    index_entries: list[dict[str, Any]] = []
    for mfst in manifests:
        if not isinstance(mfst, dict):
            raise errdefs.InvalidArgument("invalid image archive: bad manifest.json entry")
        cfg_name = str(mfst.get("Config", ""))
        cfg_entry = entries.get(posixpath.normpath(cfg_name)) if cfg_name else None
        if cfg_entry is None:
            raise errdefs.InvalidArgument(f"image config {cfg_name!r} not found")
        cfg_bytes = cfg_entry.data
        cfg_desc = await _materialise(store, cfg_entry, mediatypes.DOCKER_CONFIG)
        if cfg_bytes is None:
            cfg_bytes = await helpers.read_blob(store, cfg_desc, max_size=image_.MAX_JSON_BLOB)
        layers: list[Descriptor] = []
        for lname in mfst.get("Layers") or []:
            le = entries.get(posixpath.normpath(str(lname)))
            if le is None:
                raise errdefs.InvalidArgument(f"layer {lname!r} not found")
            mt = (
                mediatypes.DOCKER_LAYER
                if le.compression is Compression.UNCOMPRESSED
                else mediatypes.DOCKER_LAYER_GZIP
            )
            layers.append(await _materialise(store, le, mt))
        manifest = {
            "schemaVersion": 2,
            "mediaType": mediatypes.DOCKER_MANIFEST,
            "config": cfg_desc.to_dict(),
            "layers": [la.to_dict() for la in layers],
        }
        mdesc = await _write_json_blob(store, manifest, mediatypes.DOCKER_MANIFEST)
        entry = mdesc.to_dict()
        cfg_doc = _json_entry(cfg_name, cfg_bytes)
        if cfg_doc.get("os") or cfg_doc.get("architecture"):
            plat = image_.config_platform(cfg_doc)
            pd: dict[str, str] = {"architecture": plat.architecture, "os": plat.os}
            if plat.os_version:
                pd["os.version"] = plat.os_version
            if plat.variant:
                pd["variant"] = plat.variant
            entry["platform"] = pd
        tags = mfst.get("RepoTags") or []
        if not tags:
            index_entries.append(entry)
        for tag in tags:
            normalized = normalize_reference(str(tag))
            index_entries.append(
                {
                    **entry,
                    "annotations": {
                        image_.ANNOTATION_IMAGE_NAME: normalized,
                        image_.ANNOTATION_REF_NAME: oci_reference_name(normalized),
                    },
                }
            )
    # Key order as containerd's (Go struct order, annotations sorted) for identical digests.
    for e in index_entries:
        ordered: dict[str, Any] = {
            k: e[k] for k in ("mediaType", "digest", "size", "annotations", "platform") if k in e
        }
        e.clear()
        e.update(ordered)
    return await _write_json_blob(
        store, {"schemaVersion": 2, "manifests": index_entries}, mediatypes.OCI_INDEX
    )


# --- records ------------------------------------------------------------------------------


async def import_images(
    store: Any,
    image_store: Any,
    stream: BinaryIO,
    options: ImportOptions | None = None,
    *,
    progress: Progress | None = None,
) -> list[Image]:
    """Import an archive: :func:`import_index`, GC labels for the selected platforms, then
    image records created or updated (target and labels). Returns the images."""
    opts = options or ImportOptions()
    index = await import_index(store, stream, progress=progress)
    return await register_index(store, image_store, index, opts)


async def register_index(
    store: Any, image_store: Any, index: Descriptor, opts: ImportOptions
) -> list[Image]:
    """Label the graph under an imported ``index`` and record its named images."""
    matcher = platforms_.ALL if opts.all_platforms else (opts.platform or platforms_.default())
    wanted: list[Image] = []
    if opts.index_name:
        wanted.append(Image(name=opts.index_name, target=index))

    idx = await image_.read_json(store, index)
    for raw in idx.get("manifests") or []:
        m = Descriptor.from_dict(raw)
        name = image_name(m.annotations, opts.ref_translator)
        if name:
            wanted.append(Image(name=name, target=m))
        if opts.digest_ref is not None and not (opts.skip_digest_for_named and name):
            ref = opts.digest_ref(m.digest)
            if ref:
                wanted.append(Image(name=ref, target=m))

    await label_children(store, index, matcher)

    out: list[Image] = []
    labels = dict(opts.labels or {})
    for img in wanted:
        if labels:
            img = attrs.evolve(img, labels=labels)
        fields = ["target", "labels"] if labels else ["target"]
        try:
            out.append(await image_store.update(img, fields))
        except errdefs.NotFound:
            out.append(await image_store.create(img))
    return out


async def label_children(
    store: Any, root: Descriptor, matcher: platforms_.MatchComparer | None
) -> list[Descriptor]:
    """Walk ``root`` (index children filtered by ``matcher``), check every blob is present
    with its descriptor's size, and set the GC reference labels on each parent. Returns the
    descriptors visited (each digest once)."""
    seen: set[str] = set()
    visited: list[Descriptor] = []
    stack = [root]
    while stack:
        desc = stack.pop()
        if desc.digest in seen:
            continue
        seen.add(desc.digest)
        visited.append(desc)
        try:
            info = await store.info(desc.digest)
        except errdefs.NotFound:
            raise errdefs.NotFound(
                f"content {desc.digest} ({desc.media_type or 'blob'}) not found in the archive"
            ) from None
        if desc.size and info.size != desc.size:
            raise errdefs.FailedPrecondition(
                f"content {desc.digest}: size {info.size} does not match descriptor size "
                f"{desc.size}"
            )
        kids = await image_.read_children(store, desc)
        if mediatypes.is_index(desc.media_type):
            kids = image_.filter_platforms(kids, matcher)
        labels = image_.child_gc_labels(desc, kids)
        if labels:
            await store.update(
                Info(digest=desc.digest, labels=labels), [f"labels.{k}" for k in labels]
            )
        stack.extend(reversed(kids))
    return visited


# --- export -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _Record:
    name: str
    data: bytes | None = None
    blob: Descriptor | None = None
    is_dir: bool = False


async def export(
    store: Any,
    out: BinaryIO,
    images: Sequence[Image],
    *,
    platform: platforms_.MatchComparer | None = None,
    all_platforms: bool = False,
    skip_manifest_json: bool = False,
) -> list[Descriptor]:
    """Write ``images`` as an OCI archive to ``out`` (a blocking binary file, written in a
    thread). Returns the blobs written."""
    matcher = platforms_.ALL if all_platforms else (platform or platforms_.default())
    blobs: dict[str, Descriptor] = {}
    index_entries: list[dict[str, Any]] = []
    docker: list[dict[str, Any]] = []
    for img in images:
        async for d in image_.walk(store, img.target, matcher):
            blobs.setdefault(d.digest, d)
        entry = attrs.evolve(
            img.target,
            annotations={
                **img.target.annotations,
                image_.ANNOTATION_IMAGE_NAME: img.name,
                image_.ANNOTATION_REF_NAME: oci_reference_name(img.name),
            },
        ).to_dict()
        index_entries.append(entry)
        if not skip_manifest_json:
            try:
                m = await image_.manifest(store, img.target, matcher)
            except errdefs.NotFound:
                continue
            tags: list[str] = []
            try:
                ref = reference_.parse_normalized(img.name)
                if ref.tag:
                    tags.append(ref.familiar())
            except errdefs.ContainerdError:
                pass
            docker.append(
                {
                    "Config": _blob_name(m.config.digest),
                    "RepoTags": tags,
                    "Layers": [_blob_name(la.digest) for la in m.layers],
                }
            )
    records = [
        _Record(name="blobs/", is_dir=True),
        *[
            _Record(name=f"blobs/{a}/", is_dir=True)
            for a in sorted({d.split(":", 1)[0] for d in blobs})
        ],
        _Record(
            name=OCI_LAYOUT_FILE,
            data=json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}).encode(),
        ),
        _Record(
            name=OCI_INDEX_FILE,
            data=json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": mediatypes.OCI_INDEX,
                    "manifests": index_entries,
                },
                separators=(",", ":"),
            ).encode(),
        ),
        *[_Record(name=_blob_name(d.digest), blob=d) for d in blobs.values()],
    ]
    if docker:
        records.append(
            _Record(
                name=DOCKER_MANIFEST_FILE, data=json.dumps(docker, separators=(",", ":")).encode()
            )
        )
    records.sort(key=lambda r: r.name)
    readers = {}
    try:
        for d in blobs.values():
            readers[d.digest] = await store.reader_at(d)
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(_write_tar, out, records, readers, loop)
    finally:
        for ra in readers.values():
            await ra.close()
    return list(blobs.values())


def _blob_name(dgst: str) -> str:
    alg, hexpart = digests.parse(dgst)
    return f"blobs/{alg}/{hexpart}"


def _write_tar(
    out: BinaryIO,
    records: list[_Record],
    readers: dict[str, Any],
    loop: asyncio.AbstractEventLoop,
) -> None:
    import io

    with tarfile.open(
        fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=_TAR_BUFSIZE
    ) as tf:
        for r in records:
            ti = tarfile.TarInfo(r.name)
            ti.mtime = 0
            if r.is_dir:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            elif r.blob is not None:
                ra = readers[r.blob.digest]
                ti.size, ti.mode = ra.size, 0o444
                with blob_file(ra, loop) as f:
                    tf.addfile(ti, f)
            else:
                assert r.data is not None
                ti.size, ti.mode = len(r.data), 0o444
                tf.addfile(ti, io.BytesIO(r.data))
