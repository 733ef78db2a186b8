"""Build OCI images for tests and benchmarks, without network or docker.

- :class:`OCILayout` writes an OCI image layout (``oci-layout``, ``index.json``,
  ``blobs/sha256/<hex>``); layers are tars made deterministically with :mod:`tarfile`
  (gzip by default, also uncompressed and zstd), streamed so large layers never sit in memory.
- :class:`Image` is what a builder returns: the descriptors (digest, size, media type) of the
  target, manifest, config and layers, so tests can assert on them, plus writers for an OCI
  archive (``ctr images export`` style) and a ``docker save`` archive.
- Ready-made builders, cached per session in a directory: :func:`busybox_image`,
  :func:`pause_image`, :func:`layered_image` (file trees, with :func:`whiteout` and
  :func:`opaque` entries), :func:`multiplatform_image`, :func:`large_image`.
- :func:`validate_layout` / :func:`validate_oci_archive` check a layout or archive: every
  referenced blob is present with the digest and size its descriptor claims.

Importable from bench/ scripts (no pytest here): put ``tests/support`` on ``sys.path``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import platform as _platform
import random
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import attrs

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent

# --- media types and annotations -----------------------------------------------------------

OCI_LAYOUT_VERSION = "1.0.0"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"

_LAYER_TYPES = {
    ("oci", "gzip"): MT_OCI_LAYER_GZIP,
    ("oci", "zstd"): MT_OCI_LAYER_ZSTD,
    ("oci", "none"): MT_OCI_LAYER,
    ("docker", "gzip"): MT_DOCKER_LAYER_GZIP,
    ("docker", "zstd"): MT_DOCKER_LAYER_ZSTD,
    ("docker", "none"): MT_DOCKER_LAYER,
}
_MANIFEST_TYPES = {"oci": MT_OCI_MANIFEST, "docker": MT_DOCKER_MANIFEST}
_CONFIG_TYPES = {"oci": MT_OCI_CONFIG, "docker": MT_DOCKER_CONFIG}
_INDEX_TYPES = {"oci": MT_OCI_INDEX, "docker": MT_DOCKER_MANIFEST_LIST}

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Fixed timestamps keep every build byte-for-byte reproducible.
CREATED = "2024-01-01T00:00:00Z"
MTIME = 1704067200

_ARCH = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}


def host_platform() -> dict[str, str]:
    """This host's platform in OCI terms: ``{"os": "linux", "architecture": "amd64"}``."""
    arch, variant = _ARCH.get(_platform.machine(), (_platform.machine(), ""))
    out = {"os": "linux", "architecture": arch}
    if variant:
        out["variant"] = variant
    return out


def parse_platform(spec: str) -> dict[str, str]:
    """``"linux/arm/v7"`` -> ``{"os": "linux", "architecture": "arm", "variant": "v7"}``."""
    parts = spec.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"invalid platform {spec!r}: want os/arch[/variant]")
    out = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        out["variant"] = parts[2]
    return out


def format_platform(p: Mapping[str, str]) -> str:
    return "/".join(x for x in (p["os"], p["architecture"], p.get("variant", "")) if x)


# --- references --------------------------------------------------------------------------------


def normalize_name(ref: str) -> str:
    """Docker-style normalisation: ``busybox`` -> ``docker.io/library/busybox:latest``."""
    name, sep, digest = ref.partition("@")
    first, _, rest = name.partition("/")
    if not rest:
        name = "docker.io/library/" + name
    elif "." not in first and ":" not in first and first != "localhost":
        name = "docker.io/" + name
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and not sep:
        name += ":latest"
    return name + (sep + digest if sep else "")


def ref_tag(ref: str) -> str:
    """The tag part of a normalised reference (what ``ctr export`` puts in ref.name)."""
    name = normalize_name(ref).partition("@")[0]
    last = name.rsplit("/", 1)[-1]
    return last.partition(":")[2] or "latest"


def ref_repository(ref: str) -> str:
    """``docker.io/library/busybox:latest`` -> ``docker.io/library/busybox``."""
    name = normalize_name(ref).partition("@")[0]
    head, _, last = name.rpartition("/")
    return head + "/" + last.partition(":")[0]


def familiar_name(ref: str) -> str:
    """``docker.io/library/busybox:latest`` -> ``busybox:latest`` (docker save's RepoTags)."""
    name = normalize_name(ref)
    if name.startswith("docker.io/library/"):
        return name[len("docker.io/library/") :]
    if name.startswith("docker.io/"):
        return name[len("docker.io/") :]
    return name


# --- descriptors ---------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    platform: Mapping[str, str] | None = attrs.field(default=None, hash=False)

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Descriptor:
        return cls(
            media_type=d["mediaType"],
            digest=d["digest"],
            size=int(d["size"]),
            annotations=dict(d.get("annotations") or {}),
            platform=dict(d["platform"]) if d.get("platform") else None,
        )


@attrs.frozen(kw_only=True)
class Layer:
    descriptor: Descriptor
    #: sha256 of the uncompressed tar (the config's ``rootfs.diff_ids`` entry).
    diff_id: str
    uncompressed_size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "descriptor": self.descriptor.to_json(),
            "diff_id": self.diff_id,
            "uncompressed_size": self.uncompressed_size,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Layer:
        return cls(
            descriptor=Descriptor.from_json(d["descriptor"]),
            diff_id=d["diff_id"],
            uncompressed_size=int(d["uncompressed_size"]),
        )


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# --- file trees --------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class File:
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    #: extra PAX records, e.g. ``{"SCHILY.xattr.user.k": "v"}``
    pax: Mapping[str, str] = attrs.field(factory=dict, hash=False)


@attrs.frozen(kw_only=True)
class Dir:
    mode: int = 0o755
    uid: int = 0
    gid: int = 0


@attrs.frozen
class Symlink:
    target: str


@attrs.frozen
class Hardlink:
    #: path of the earlier entry (relative to the layer root) this one links to
    target: str


@attrs.frozen(kw_only=True)
class BigFile:
    """A file of ``size`` generated bytes, streamed into the tar (never held in memory).
    ``compressible``: text from a 16-letter alphabet (gzip saves ~40%); else random."""

    size: int
    seed: int = 0
    compressible: bool = False
    mode: int = 0o644


#: The value for a whiteout entry: ``{whiteout("etc/x"): WHITEOUT, opaque("var"): WHITEOUT}``.
WHITEOUT = File(data=b"", mode=0o644)

Entry = bytes | str | File | Dir | Symlink | Hardlink | BigFile
Tree = Mapping[str, Entry]


def whiteout(path: str) -> str:
    """The layer entry name that deletes ``path`` from lower layers: ``dir/.wh.name``."""
    path = path.strip("/")
    head, _, name = path.rpartition("/")
    return (head + "/" if head else "") + ".wh." + name


def opaque(directory: str) -> str:
    """The layer entry name that hides everything below ``directory`` in lower layers."""
    directory = directory.strip("/")
    return (directory + "/" if directory else "") + ".wh..wh..opq"


def _norm(path: str) -> str:
    path = path.strip("/")
    if not path or any(p in ("", ".", "..") for p in path.split("/")):
        raise ValueError(f"invalid path in tree: {path!r}")
    return path


def _ordered_entries(tree: Tree) -> list[tuple[str, Entry]]:
    entries: dict[str, Entry] = {_norm(k): v for k, v in tree.items()}
    for path in list(entries):
        parts = path.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]), Dir())
    links = [(p, e) for p, e in entries.items() if isinstance(e, Hardlink)]
    rest = [(p, e) for p, e in entries.items() if not isinstance(e, Hardlink)]
    rest.sort(key=lambda pe: pe[0].split("/"))
    links.sort(key=lambda pe: pe[0].split("/"))
    return rest + links


class _GeneratedReader:
    """A read()-able stream of ``size`` deterministic bytes."""

    _CHUNK = 1 << 20

    def __init__(self, size: int, seed: int, compressible: bool) -> None:
        self._left = size
        self._rng = random.Random(seed)
        self._compressible = compressible
        self._buf = b""
        self._n = 0

    def _next_chunk(self) -> bytes:
        raw = self._rng.randbytes(self._CHUNK)
        if self._compressible:
            raw = raw.translate(_TEXT_TABLE)
        self._n += 1
        return raw

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self._left
        n = min(n, self._left)
        while len(self._buf) < n:
            self._buf += self._next_chunk()
        out, self._buf = self._buf[:n], self._buf[n:]
        self._left -= len(out)
        return out


_TEXT_TABLE = bytes((b"abcdefghijklmno\n"[i % 16]) for i in range(256))


def _tarinfo(path: str, entry: Entry, mtime: int) -> tuple[tarfile.TarInfo, BinaryIO | None]:
    ti = tarfile.TarInfo(path)
    ti.mtime = mtime
    ti.uname = ti.gname = ""
    fobj: BinaryIO | None = None
    if isinstance(entry, str):
        entry = entry.encode()
    if isinstance(entry, bytes):
        entry = File(data=entry)
    if isinstance(entry, File):
        ti.type = tarfile.REGTYPE
        ti.mode, ti.uid, ti.gid = entry.mode, entry.uid, entry.gid
        ti.size = len(entry.data)
        if entry.pax:
            ti.pax_headers = dict(entry.pax)
        fobj = io.BytesIO(entry.data)
    elif isinstance(entry, BigFile):
        ti.type = tarfile.REGTYPE
        ti.mode = entry.mode
        ti.size = entry.size
        fobj = _GeneratedReader(entry.size, entry.seed, entry.compressible)  # type: ignore[assignment]
    elif isinstance(entry, Dir):
        ti.type = tarfile.DIRTYPE
        ti.mode, ti.uid, ti.gid = entry.mode, entry.uid, entry.gid
    elif isinstance(entry, Symlink):
        ti.type = tarfile.SYMTYPE
        ti.mode = 0o777
        ti.linkname = entry.target
    elif isinstance(entry, Hardlink):
        ti.type = tarfile.LNKTYPE
        ti.mode = 0o644
        ti.linkname = _norm(entry.target)
    else:
        raise TypeError(f"unsupported tree entry for {path!r}: {entry!r}")
    return ti, fobj


class _HashingWriter:
    def __init__(self, out: Any) -> None:
        self._out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, b: bytes) -> int:
        b = bytes(b)
        self.hash.update(b)
        self.size += len(b)
        self._out.write(b)
        return len(b)

    def flush(self) -> None:
        self._out.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def write_layer_tar(
    tree: Tree,
    out: BinaryIO,
    *,
    compression: str = "gzip",
    mtime: int = MTIME,
    level: int | None = None,
) -> tuple[str, int, str, int]:
    """Write ``tree`` as a layer tar to ``out``, deterministically.

    Returns ``(digest, size, diff_id, uncompressed_size)``.
    """
    compressed = _HashingWriter(out)
    closer: Any = None
    if compression == "gzip":
        closer = gzip.GzipFile(
            filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=level or 6
        )
        sink: Any = closer
    elif compression == "zstd":
        import zstandard

        closer = zstandard.ZstdCompressor(level=level or 3).stream_writer(compressed, closefd=False)
        sink = closer
    elif compression == "none":
        sink = compressed
    else:
        raise ValueError(f"unknown compression {compression!r}: want gzip, zstd or none")
    plain = _HashingWriter(sink)
    with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for path, entry in _ordered_entries(tree):
            ti, fobj = _tarinfo(path, entry, mtime)
            tf.addfile(ti, fobj)
    if closer is not None:
        closer.close()
    return compressed.digest, compressed.size, plain.digest, plain.size


# --- the layout writer --------------------------------------------------------------------------


@attrs.define(eq=False)
class OCILayout:
    """An OCI image layout directory being written. ``save()`` writes ``index.json``."""

    root: Path = attrs.field(converter=Path)
    entries: list[Descriptor] = attrs.Factory(list)

    def __attrs_post_init__(self) -> None:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "oci-layout").write_text(
            json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION})
        )

    def blob_path(self, digest: str) -> Path:
        algo, _, hexd = digest.partition(":")
        return self.root / "blobs" / algo / hexd

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def write_blob(self, data: bytes, media_type: str, **kw: Any) -> Descriptor:
        digest = sha256_digest(data)
        path = self.blob_path(digest)
        if not path.exists():
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            tmp.rename(path)
        return Descriptor(media_type=media_type, digest=digest, size=len(data), **kw)

    def add_layer(
        self,
        tree: Tree,
        *,
        compression: str = "gzip",
        media_types: str = "oci",
        mtime: int = MTIME,
        level: int | None = None,
    ) -> Layer:
        fd, tmpname = tempfile.mkstemp(dir=self.root / "blobs" / "sha256", prefix=".layer-")
        try:
            with os.fdopen(fd, "wb") as f:
                digest, size, diff_id, usize = write_layer_tar(
                    tree, f, compression=compression, mtime=mtime, level=level
                )
            os.replace(tmpname, self.blob_path(digest))
        except BaseException:
            if os.path.exists(tmpname):
                os.unlink(tmpname)
            raise
        desc = Descriptor(
            media_type=_LAYER_TYPES[(media_types, compression)], digest=digest, size=size
        )
        return Layer(descriptor=desc, diff_id=diff_id, uncompressed_size=usize)

    def add_manifest(
        self,
        layers: Sequence[Layer],
        *,
        config: Mapping[str, Any] | None = None,
        platform: Mapping[str, str] | None = None,
        media_types: str = "oci",
        annotations: Mapping[str, str] | None = None,
        history: Sequence[Mapping[str, Any]] | None = None,
    ) -> tuple[Descriptor, Descriptor]:
        """Write a config and a manifest for ``layers``; returns ``(manifest, config)``."""
        plat = dict(platform or host_platform())
        cfg: dict[str, Any] = {
            "created": CREATED,
            "architecture": plat["architecture"],
            "os": plat["os"],
            "config": dict(config or {"Env": [DEFAULT_PATH_ENV], "Cmd": ["/bin/sh"]}),
            "rootfs": {"type": "layers", "diff_ids": [la.diff_id for la in layers]},
            "history": list(history)
            if history is not None
            else [{"created": CREATED, "created_by": "pycontainerd tests/support/images.py"}]
            * len(layers),
        }
        if plat.get("variant"):
            cfg["variant"] = plat["variant"]
        config_desc = self.write_blob(canonical_json(cfg), _CONFIG_TYPES[media_types])
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": _MANIFEST_TYPES[media_types],
            "config": config_desc.to_json(),
            "layers": [la.descriptor.to_json() for la in layers],
        }
        if annotations:
            manifest["annotations"] = dict(annotations)
        manifest_desc = self.write_blob(
            json.dumps(manifest, indent=2).encode(), _MANIFEST_TYPES[media_types], platform=plat
        )
        return manifest_desc, config_desc

    def add_index(self, manifests: Sequence[Descriptor], *, media_types: str = "oci") -> Descriptor:
        index = {
            "schemaVersion": 2,
            "mediaType": _INDEX_TYPES[media_types],
            "manifests": [m.to_json() for m in manifests],
        }
        return self.write_blob(json.dumps(index, indent=2).encode(), _INDEX_TYPES[media_types])

    def tag(self, target: Descriptor, name: str) -> Descriptor:
        """Point ``index.json`` at ``target`` under ``name`` (both annotations ctr uses)."""
        name = normalize_name(name)
        entry = attrs.evolve(
            target,
            platform=None,
            annotations={ANNOTATION_IMAGE_NAME: name, ANNOTATION_REF_NAME: ref_tag(name)},
        )
        self.entries = [e for e in self.entries if e.annotations.get(ANNOTATION_IMAGE_NAME) != name]
        self.entries.append(entry)
        return entry

    def save(self) -> None:
        index = {
            "schemaVersion": 2,
            "mediaType": MT_OCI_INDEX,
            "manifests": [e.to_json() for e in self.entries],
        }
        tmp = self.root / "index.json.tmp"
        tmp.write_text(json.dumps(index, indent=2))
        tmp.rename(self.root / "index.json")


# --- built images -----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Image:
    """An image in an OCI layout directory, with every descriptor a test may assert on."""

    name: str
    layout: Path
    #: what the name points at: the manifest, or the index of a multi-platform image
    target: Descriptor
    #: the host platform's manifest (== target for a single-platform image)
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Layer, ...]
    #: every platform manifest of an index (empty for a single-platform image)
    manifests: tuple[Descriptor, ...] = ()

    @property
    def digest(self) -> str:
        return self.target.digest

    @property
    def tag(self) -> str:
        return ref_tag(self.name)

    @property
    def repository(self) -> str:
        return ref_repository(self.name)

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return tuple(la.diff_id for la in self.layers)

    def blob_path(self, digest: str) -> Path:
        algo, _, hexd = digest.partition(":")
        return self.layout / "blobs" / algo / hexd

    def blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def blobs(self) -> list[Descriptor]:
        """Every blob of the image, children before parents (the order to push them in)."""
        out: list[Descriptor] = []
        seen: set[str] = set()

        def visit(desc: Descriptor) -> None:
            if desc.digest in seen:
                return
            seen.add(desc.digest)
            if desc.media_type in (MT_OCI_INDEX, MT_DOCKER_MANIFEST_LIST):
                for m in json.loads(self.blob(desc.digest))["manifests"]:
                    visit(Descriptor.from_json(m))
            elif desc.media_type in (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST):
                doc = json.loads(self.blob(desc.digest))
                visit(Descriptor.from_json(doc["config"]))
                for la in doc["layers"]:
                    visit(Descriptor.from_json(la))
            out.append(desc)

        visit(self.target)
        return out

    def oci_archive(self, path: str | os.PathLike[str]) -> Path:
        """Write this image as an OCI archive (as ``ctr images export`` does)."""
        return write_oci_archive(self, Path(path))

    def docker_archive(
        self, path: str | os.PathLike[str], repo_tags: Sequence[str] | None = None
    ) -> Path:
        """Write this image (host platform) as a ``docker save`` archive."""
        return write_docker_archive(self, Path(path), repo_tags=repo_tags)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target.to_json(),
            "manifest": self.manifest.to_json(),
            "config": self.config.to_json(),
            "layers": [la.to_json() for la in self.layers],
            "manifests": [m.to_json() for m in self.manifests],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any], layout: Path) -> Image:
        return cls(
            name=d["name"],
            layout=layout,
            target=Descriptor.from_json(d["target"]),
            manifest=Descriptor.from_json(d["manifest"]),
            config=Descriptor.from_json(d["config"]),
            layers=tuple(Layer.from_json(x) for x in d["layers"]),
            manifests=tuple(Descriptor.from_json(x) for x in d["manifests"]),
        )


def build_image(
    layout_dir: str | os.PathLike[str],
    name: str,
    trees: Sequence[Tree],
    *,
    config: Mapping[str, Any] | None = None,
    platform: Mapping[str, str] | None = None,
    compression: str = "gzip",
    media_types: str = "oci",
) -> Image:
    """Write a single-platform image from file trees (one layer each) into a new layout."""
    layout = OCILayout(Path(layout_dir))
    layers = [layout.add_layer(t, compression=compression, media_types=media_types) for t in trees]
    manifest, cfg = layout.add_manifest(
        layers, config=config, platform=platform, media_types=media_types
    )
    layout.tag(manifest, name)
    layout.save()
    return Image(
        name=normalize_name(name),
        layout=layout.root,
        target=manifest,
        manifest=manifest,
        config=cfg,
        layers=tuple(layers),
    )


# --- archives ---------------------------------------------------------------------------------


def _tar_add_bytes(tf: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), mode, MTIME
    tf.addfile(ti, io.BytesIO(data))


def _tar_add_dir(tf: tarfile.TarFile, name: str) -> None:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, MTIME
    tf.addfile(ti)


def _tar_add_file(tf: tarfile.TarFile, name: str, path: Path) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = path.stat().st_size, 0o644, MTIME
    with path.open("rb") as f:
        tf.addfile(ti, f)


def write_oci_archive(image: Image, path: Path) -> Path:
    """A tar of an OCI layout holding only this image; entries sorted by name, like containerd's
    exporter. ``index.json`` carries ``io.containerd.image.name`` and ``...ref.name``."""
    name = normalize_name(image.name)
    entry = attrs.evolve(
        image.target,
        platform=None,
        annotations={ANNOTATION_IMAGE_NAME: name, ANNOTATION_REF_NAME: ref_tag(name)},
    )
    index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [entry.to_json()]}
    records: list[tuple[str, Callable[[tarfile.TarFile, str], None]]] = [
        ("blobs/", _tar_add_dir),
        ("blobs/sha256/", _tar_add_dir),
        (
            "oci-layout",
            lambda tf, n: _tar_add_bytes(
                tf, n, json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}).encode()
            ),
        ),
        ("index.json", lambda tf, n: _tar_add_bytes(tf, n, json.dumps(index).encode())),
    ]
    for desc in image.blobs():
        src = image.blob_path(desc.digest)
        records.append(
            (f"blobs/sha256/{desc.hex}", lambda tf, n, src=src: _tar_add_file(tf, n, src))
        )
    records.sort(key=lambda r: r[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for rec_name, add in records:
            add(tf, rec_name)
    return path


def _decompressed(src: Path, media_type: str, dst: Path) -> None:
    with src.open("rb") as f, dst.open("wb") as out:
        if media_type.endswith("gzip"):
            with gzip.GzipFile(fileobj=f) as g:
                shutil.copyfileobj(g, out, 1 << 20)
        elif media_type.endswith("zstd"):
            import zstandard

            zstandard.ZstdDecompressor().copy_stream(f, out)
        else:
            shutil.copyfileobj(f, out, 1 << 20)


def write_docker_archive(image: Image, path: Path, repo_tags: Sequence[str] | None = None) -> Path:
    """A ``docker save`` archive: ``manifest.json``, ``repositories``, ``<config hex>.json`` and
    ``<layer id>/{VERSION,json,layer.tar}`` with uncompressed layer tars."""
    tags = list(repo_tags) if repo_tags is not None else [familiar_name(image.name)]
    config_name = f"{image.config.hex}.json"
    layer_ids: list[str] = []
    parent = ""
    for la in image.layers:
        lid = hashlib.sha256((parent + "\n" + la.diff_id).encode()).hexdigest()
        layer_ids.append(lid)
        parent = lid
    manifest = [
        {
            "Config": config_name,
            "RepoTags": tags,
            "Layers": [f"{lid}/layer.tar" for lid in layer_ids],
        }
    ]
    repositories: dict[str, dict[str, str]] = {}
    for t in tags:
        repo, _, tag = t.rpartition(":") if ":" in t.rsplit("/", 1)[-1] else (t, "", "latest")
        repositories.setdefault(repo, {})[tag] = layer_ids[-1] if layer_ids else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(dir=path.parent) as tmp,
        tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf,
    ):
        prev = ""
        for la, lid in zip(image.layers, layer_ids, strict=True):
            _tar_add_dir(tf, f"{lid}/")
            _tar_add_bytes(tf, f"{lid}/VERSION", b"1.0")
            v1: dict[str, Any] = {"id": lid, "created": CREATED}
            if prev:
                v1["parent"] = prev
            _tar_add_bytes(tf, f"{lid}/json", json.dumps(v1).encode())
            plain = Path(tmp) / f"{lid}.tar"
            _decompressed(image.blob_path(la.descriptor.digest), la.descriptor.media_type, plain)
            _tar_add_file(tf, f"{lid}/layer.tar", plain)
            plain.unlink()
            prev = lid
        _tar_add_bytes(tf, config_name, image.blob(image.config.digest))
        _tar_add_bytes(tf, "manifest.json", json.dumps(manifest).encode())
        _tar_add_bytes(tf, "repositories", json.dumps(repositories).encode())
    return path


# --- validation ---------------------------------------------------------------------------------


class LayoutError(AssertionError):
    pass


def validate_layout(root: str | os.PathLike[str]) -> list[Descriptor]:
    """Check an OCI layout: ``oci-layout`` version, ``index.json``, and every blob reachable from
    it present with the digest and size its descriptor says. Returns the index entries."""
    root = Path(root)
    try:
        layout = json.loads((root / "oci-layout").read_text())
    except (OSError, ValueError) as e:
        raise LayoutError(f"{root}: bad oci-layout: {e}") from e
    if layout.get("imageLayoutVersion") != OCI_LAYOUT_VERSION:
        raise LayoutError(f"{root}: imageLayoutVersion {layout.get('imageLayoutVersion')!r}")
    index = json.loads((root / "index.json").read_text())
    if index.get("schemaVersion") != 2:
        raise LayoutError(f"{root}: index.json schemaVersion {index.get('schemaVersion')!r}")
    entries = [Descriptor.from_json(m) for m in index.get("manifests", [])]

    def check(desc: Descriptor) -> bytes | None:
        algo, _, hexd = desc.digest.partition(":")
        p = root / "blobs" / algo / hexd
        if not p.is_file():
            raise LayoutError(f"{root}: blob {desc.digest} ({desc.media_type}) missing")
        h = hashlib.new(algo)
        size = 0
        with p.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
        if f"{algo}:{h.hexdigest()}" != desc.digest:
            raise LayoutError(f"{root}: blob {desc.digest} content has digest {h.hexdigest()}")
        if size != desc.size:
            raise LayoutError(f"{root}: blob {desc.digest} has size {size}, descriptor {desc.size}")
        if desc.media_type.endswith("json"):
            return p.read_bytes()
        return None

    def visit(desc: Descriptor) -> None:
        data = check(desc)
        if desc.media_type in (MT_OCI_INDEX, MT_DOCKER_MANIFEST_LIST):
            for m in json.loads(data or b"{}")["manifests"]:
                visit(Descriptor.from_json(m))
        elif desc.media_type in (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST):
            doc = json.loads(data or b"{}")
            cfg = Descriptor.from_json(doc["config"])
            cfg_doc = json.loads(check(cfg) or b"{}")
            layers = [Descriptor.from_json(x) for x in doc["layers"]]
            for la in layers:
                check(la)
            diff_ids = cfg_doc.get("rootfs", {}).get("diff_ids", [])
            if len(diff_ids) != len(layers):
                raise LayoutError(
                    f"{root}: manifest {desc.digest}: {len(layers)} layers, "
                    f"{len(diff_ids)} diff_ids"
                )

    for e in entries:
        visit(e)
    return entries


def validate_oci_archive(path: str | os.PathLike[str]) -> list[Descriptor]:
    """Extract an OCI archive to a temporary directory and :func:`validate_layout` it."""
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(path) as tf:
        extract_all(tf, tmp, trusted=False)
        return validate_layout(tmp)


def extract_all(tf: tarfile.TarFile, dest: str | os.PathLike[str], *, trusted: bool) -> None:
    """``tf.extractall`` with an extraction filter where this Python has them (3.11.4+; Debian
    12 ships 3.11.2): ``trusted`` keeps modes and ownership (a rootfs), else the "data" filter."""
    if hasattr(tarfile, "data_filter"):
        tf.extractall(dest, filter="fully_trusted" if trusted else "data")
    else:
        tf.extractall(dest)


# --- rootfs helpers -------------------------------------------------------------------------------


def iter_layer_members(image: Image, layer: Layer) -> Iterator[tarfile.TarInfo]:
    mt = layer.descriptor.media_type
    with image.blob_path(layer.descriptor.digest).open("rb") as f:
        if mt.endswith("zstd"):
            import zstandard

            stream: Any = zstandard.ZstdDecompressor().stream_reader(f)
        elif mt.endswith("gzip"):
            stream = gzip.GzipFile(fileobj=f)
        else:
            stream = f
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            yield from tf


def umoci_unpack(image: Image, bundle: str | os.PathLike[str]) -> Path:
    """Unpack with Debian's umoci (``umoci unpack --image layout:tag bundle``); returns the
    rootfs. Needs root. Uses the image's own layout (umoci takes a lock in it)."""
    subprocess.run(
        ["umoci", "unpack", "--image", f"{image.layout}:{image.tag}", str(bundle)],
        check=True,
        capture_output=True,
    )
    return Path(bundle) / "rootfs"


# --- cached ready-made builders ---------------------------------------------------------------

_SOURCE_KEY: str | None = None


def _source_key() -> str:
    """Changes whenever this module or pause.c changes, so stale caches are never used."""
    global _SOURCE_KEY
    if _SOURCE_KEY is None:
        h = hashlib.sha256()
        for p in (Path(__file__), HERE / "pause.c"):
            h.update(p.read_bytes())
        _SOURCE_KEY = h.hexdigest()[:12]
    return _SOURCE_KEY


def default_cache_dir() -> Path:
    env = os.environ.get("PYCONTAINERD_TEST_IMAGE_CACHE")
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"pycontainerd-test-images-{os.getuid()}"


def _cached(
    cache_dir: str | os.PathLike[str] | None,
    kind: str,
    params: Mapping[str, Any],
    build: Callable[[Path], Image],
) -> Image:
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = hashlib.sha256(
        json.dumps(
            {"kind": kind, "src": _source_key(), **params}, sort_keys=True, default=str
        ).encode()
    ).hexdigest()[:16]
    final = base / f"{kind}-{key}"
    meta = final / "image.json"
    if meta.is_file():
        return Image.from_json(json.loads(meta.read_text()), final / "layout")
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{kind}-"))
    try:
        img = build(tmp / "layout")
        (tmp / "image.json").write_text(json.dumps(img.to_json(), indent=2))
        try:
            tmp.rename(final)
        except OSError:  # built concurrently by someone else: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.debug("built %s image %s in %s", kind, img.name, final)
    return Image.from_json(json.loads(meta.read_text()), final / "layout")


BUSYBOX = "/bin/busybox"
BUSYBOX_APPLETS = (
    "sh",
    "ash",
    "echo",
    "cat",
    "ls",
    "sleep",
    "true",
    "false",
    "env",
    "id",
    "hostname",
    "wget",
    "nc",
    "top",
    "ps",
    "mkdir",
    "touch",
    "rm",
    "rmdir",
    "cp",
    "mv",
    "ln",
    "chmod",
    "chown",
    "grep",
    "sed",
    "awk",
    "head",
    "tail",
    "wc",
    "sort",
    "uniq",
    "printf",
    "test",
    "[",
    "kill",
    "mount",
    "umount",
    "ip",
    "ifconfig",
    "ping",
    "date",
    "uname",
    "whoami",
    "pwd",
    "readlink",
    "stat",
    "df",
    "du",
    "find",
    "xargs",
    "tee",
    "tr",
    "cut",
    "seq",
    "yes",
    "nslookup",
    "netstat",
    "dd",
    "sync",
    "which",
    "basename",
    "dirname",
    "expr",
    "md5sum",
    "sha256sum",
    "hexdump",
    "od",
    "free",
    "uptime",
    "dmesg",
    "httpd",
    "tar",
    "gzip",
    "timeout",
    "nproc",
    "mktemp",
    "realpath",
    "vi",
    "less",
    "more",
    "diff",
    "setsid",
    "usleep",
    "nsenter",
)
ETC_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
ETC_GROUP = "root:x:0:\nnobody:x:65534:\n"


def busybox_tree(busybox: str = BUSYBOX) -> dict[str, Entry]:
    """A minimal rootfs: static busybox, applet symlinks, passwd/group, /tmp."""
    data = Path(busybox).read_bytes()
    tree: dict[str, Entry] = {
        "bin": Dir(),
        "bin/busybox": File(data=data, mode=0o755),
        "etc": Dir(),
        "etc/passwd": ETC_PASSWD,
        "etc/group": ETC_GROUP,
        "tmp": Dir(mode=0o1777),
        "root": Dir(mode=0o700),
        "home": Dir(),
        "var": Dir(),
        "dev": Dir(),
        "proc": Dir(mode=0o555),
        "sys": Dir(mode=0o555),
        "usr": Dir(),
        "usr/bin": Dir(),
    }
    for applet in BUSYBOX_APPLETS:
        tree[f"bin/{applet}"] = Symlink("busybox")
    return tree


def busybox_image(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    name: str = "docker.io/library/busybox:latest",
    compression: str = "gzip",
    media_types: str = "oci",
    extra: Tree | None = None,
    config: Mapping[str, Any] | None = None,
) -> Image:
    """A runnable busybox image for the host platform. ``extra``: a second layer's tree (gives
    a different image digest); ``config``: the image config's ``config`` object."""

    def build(layout: Path) -> Image:
        trees: list[Tree] = [busybox_tree()]
        if extra:
            trees.append(extra)
        return build_image(
            layout, name, trees, config=config, compression=compression, media_types=media_types
        )

    params = {
        "name": normalize_name(name),
        "compression": compression,
        "media_types": media_types,
        "extra": _tree_key(extra),
        "config": config,
        "busybox": hashlib.sha256(Path(BUSYBOX).read_bytes()).hexdigest(),
    }
    return _cached(cache_dir, "busybox", params, build)


def pause_binary(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``tests/support/pause.c`` compiled with ``gcc -static -O2``, once per cache dir."""
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = base / f"pause-bin-{_source_key()}" / "pause"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".pause-{os.getpid()}")
    subprocess.run(
        ["gcc", "-static", "-O2", "-o", str(tmp), str(HERE / "pause.c")],
        check=True,
        capture_output=True,
    )
    subprocess.run(["strip", str(tmp)], check=False, capture_output=True)
    tmp.rename(out)
    return out


def pause_image(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    name: str = "registry.k8s.io/pause:3.10",
    compression: str = "gzip",
    media_types: str = "oci",
) -> Image:
    """A pause image like Kubernetes' (``/pause`` entrypoint, user 65535), under the name
    containerd's CRI uses as its default sandbox image."""
    binary = pause_binary(cache_dir)

    def build(layout: Path) -> Image:
        tree: Tree = {"pause": File(data=binary.read_bytes(), mode=0o755)}
        cfg = {"Env": [DEFAULT_PATH_ENV], "Entrypoint": ["/pause"], "User": "65535:65535"}
        return build_image(
            layout, name, [tree], config=cfg, compression=compression, media_types=media_types
        )

    params = {"name": normalize_name(name), "compression": compression, "media_types": media_types}
    return _cached(cache_dir, "pause", params, build)


def _tree_key(tree: Tree | None) -> str:
    if not tree:
        return ""
    h = hashlib.sha256()
    write_layer_tar(tree, _HashSink(h), compression="none")  # type: ignore[arg-type]
    return h.hexdigest()


class _HashSink:
    def __init__(self, h: Any) -> None:
        self._h = h

    def write(self, b: bytes) -> int:
        self._h.update(b)
        return len(b)

    def flush(self) -> None:
        pass


def layered_image(
    cache_dir: str | os.PathLike[str] | None,
    layers: Sequence[Tree],
    *,
    name: str = "docker.io/library/layered:latest",
    config: Mapping[str, Any] | None = None,
    compression: str = "gzip",
    media_types: str = "oci",
) -> Image:
    """An image with one layer per file tree, in order (lowest first). Use :func:`whiteout` and
    :func:`opaque` names with :data:`WHITEOUT` values to delete or hide lower content."""

    def build(layout: Path) -> Image:
        return build_image(
            layout, name, layers, config=config, compression=compression, media_types=media_types
        )

    params = {
        "name": normalize_name(name),
        "layers": [_tree_key(t) for t in layers],
        "config": config,
        "compression": compression,
        "media_types": media_types,
    }
    return _cached(cache_dir, "layered", params, build)


def multiplatform_image(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64", "linux/arm/v7"),
    name: str = "docker.io/library/multi:latest",
    media_types: str = "oci",
) -> Image:
    """An index with one manifest per platform. Each has a layer with ``/etc/platform`` (its
    platform string); the host platform's manifest also has the busybox layer, so it runs.
    ``Image.manifest`` is the host's manifest (or the first, if the host is not listed)."""
    host = format_platform(host_platform())

    def build(layout_dir: Path) -> Image:
        layout = OCILayout(layout_dir)
        descs: list[Descriptor] = []
        host_parts: tuple[Descriptor, Descriptor, tuple[Layer, ...]] | None = None
        first: tuple[Descriptor, Descriptor, tuple[Layer, ...]] | None = None
        for spec in platforms:
            plat = parse_platform(spec)
            layers: list[Layer] = []
            if format_platform(plat) == host:
                layers.append(layout.add_layer(busybox_tree(), media_types=media_types))
            layers.append(layout.add_layer({"etc/platform": spec + "\n"}, media_types=media_types))
            m, c = layout.add_manifest(layers, platform=plat, media_types=media_types)
            descs.append(m)
            parts = (m, c, tuple(layers))
            first = first or parts
            if format_platform(plat) == host:
                host_parts = parts
        index = layout.add_index(descs, media_types=media_types)
        layout.tag(index, name)
        layout.save()
        m, c, ls = host_parts or first  # type: ignore[misc]
        return Image(
            name=normalize_name(name),
            layout=layout.root,
            target=index,
            manifest=m,
            config=c,
            layers=ls,
            manifests=tuple(descs),
        )

    params = {
        "name": normalize_name(name),
        "platforms": list(platforms),
        "media_types": media_types,
        "host": host,
    }
    return _cached(cache_dir, "multi", params, build)


def large_image(
    cache_dir: str | os.PathLike[str] | None,
    layer_sizes: Sequence[int],
    *,
    compressible: bool = False,
    compression: str = "gzip",
    seed: int = 0,
    name: str = "docker.io/library/large:latest",
    level: int | None = 1,
) -> Image:
    """N layers, each one file ``/data/layer-NNN.bin`` of the given size (random, or 16-letter
    text that gzip shrinks by about 40%), for benchmarks. Built streaming; gzip level 1 by
    default (speed)."""

    def build(layout_dir: Path) -> Image:
        layout = OCILayout(layout_dir)
        layers = [
            layout.add_layer(
                {
                    f"data/layer-{i:03d}.bin": BigFile(
                        size=size, seed=seed + i, compressible=compressible
                    )
                },
                compression=compression,
                level=level,
            )
            for i, size in enumerate(layer_sizes)
        ]
        m, c = layout.add_manifest(layers, config={"Env": [DEFAULT_PATH_ENV]})
        layout.tag(m, name)
        layout.save()
        return Image(
            name=normalize_name(name),
            layout=layout.root,
            target=m,
            manifest=m,
            config=c,
            layers=tuple(layers),
        )

    params = {
        "name": normalize_name(name),
        "sizes": list(layer_sizes),
        "compressible": compressible,
        "compression": compression,
        "seed": seed,
        "level": level,
    }
    return _cached(cache_dir, "large", params, build)
