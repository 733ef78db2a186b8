"""Image references, parsed and normalised as docker's reference library does.

A reference names a repository (``domain/path``) and optionally a tag and a digest:
``127.0.0.1:5000/team/app:v1``, ``docker.io/library/busybox@sha256:...``.

:func:`parse_normalized` applies docker's short-name rules (``busybox`` ->
``docker.io/library/busybox``; ``index.docker.io`` -> ``docker.io``); :func:`parse_docker_ref`
additionally defaults the tag to ``latest`` and, when both a tag and a digest are given, keeps
only the digest (what containerd's CRI does). :func:`parse` is strict: the string must already
be fully qualified. Malformed input raises :class:`~pycontainerd.core.errdefs.InvalidArgument`.
"""

from __future__ import annotations

import re

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.content import digests

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
#: Longest allowed ``domain/path`` (distribution's NameTotalLengthMax).
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = r"(?:" + _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*|" + _IPV6 + r")"
_DOMAIN = _HOST + r"(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE_RE = re.compile(
    r"^(?:(?P<domain>" + _DOMAIN + r")/)?(?P<path>" + _REMOTE_NAME + r")"
    r"(?::(?P<tag>" + _TAG + r"))?(?:@(?P<digest>" + _DIGEST + r"))?$"
)
_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{64}$")
_TAG_RE = re.compile(r"^" + _TAG + r"$")
_DIGEST_RE = re.compile(r"^" + _DIGEST + r"$")


@attrs.frozen(kw_only=True)
class Reference:
    """A parsed reference. ``domain`` is empty only for references parsed without
    normalisation that had none."""

    domain: str = ""
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """``domain/path`` (the repository, without tag or digest)."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def object(self) -> str:
        """What follows the name: ``tag``, ``@digest`` or ``tag@digest`` (containerd's
        reference.Spec ``Object``)."""
        out = self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    @property
    def hostname(self) -> str:
        """The registry host of the name, as used for ``hosts.toml`` lookups (``docker.io``
        for Docker Hub; port kept)."""
        return self.domain

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.match(tag):
            raise errdefs.InvalidArgument(f"invalid tag format {tag!r}")
        return attrs.evolve(self, tag=tag)

    def with_digest(self, digest: str) -> Reference:
        if not _DIGEST_RE.match(digest):
            raise errdefs.InvalidArgument(f"invalid digest format {digest!r}")
        return attrs.evolve(self, digest=digest)

    def familiar(self) -> str:
        """The short form docker shows: ``docker.io/library/busybox:latest`` ->
        ``busybox:latest``; other registries are left as they are."""
        path = self.path
        name = self.name
        if self.domain == DEFAULT_DOMAIN:
            name = path
            short = path.removeprefix(OFFICIAL_REPO_PREFIX)
            if short != path and "/" not in short:
                name = short
        out = name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out


def parse(ref: str) -> Reference:
    """Parse ``ref`` strictly (no normalisation): ``[domain/]path[:tag][@digest]``."""
    if not isinstance(ref, str) or not ref:
        raise errdefs.InvalidArgument("invalid reference format: empty reference")
    m = _REFERENCE_RE.match(ref)
    if m is None:
        # Uppercase in the repository is the commonest mistake; say so.
        lowered = _REFERENCE_RE.match(ref.lower())
        if lowered is not None:
            raise errdefs.InvalidArgument(
                f"invalid reference format {ref!r}: repository name must be lowercase"
            )
        raise errdefs.InvalidArgument(f"invalid reference format {ref!r}")
    domain = m["domain"] or ""
    path = m["path"]
    name_len = len(domain) + 1 + len(path) if domain else len(path)
    if name_len > NAME_TOTAL_LENGTH_MAX:
        raise errdefs.InvalidArgument(
            f"invalid reference format {ref!r}: repository name must not be more than "
            f"{NAME_TOTAL_LENGTH_MAX} characters"
        )
    digest = m["digest"] or ""
    if digest:
        _check_digest(ref, digest)
    return Reference(domain=domain, path=path, tag=m["tag"] or "", digest=digest)


def _check_digest(ref: str, digest: str) -> None:
    try:
        digests.parse(digest)
    except errdefs.InvalidArgument as exc:
        raise errdefs.InvalidArgument(f"invalid reference format {ref!r}: {exc}") from None


def split_docker_domain(name: str) -> tuple[str, str]:
    """Split a repository name into (domain, path) with docker's defaults."""
    first, sep, rest = name.partition("/")
    if not sep:
        domain, path = DEFAULT_DOMAIN, name
    elif first == "localhost" or "." in first or ":" in first or first.lower() != first:
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    return domain, path


def parse_normalized(ref: str) -> Reference:
    """Parse a possibly short reference into its fully qualified form (no tag added)."""
    if not isinstance(ref, str) or not ref:
        raise errdefs.InvalidArgument("invalid reference format: empty reference")
    if _IDENTIFIER_RE.match(ref):
        raise errdefs.InvalidArgument(
            f"invalid repository name {ref!r}: cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = split_docker_domain(ref)
    remote = remainder.partition("@")[0].partition(":")[0]
    if remote.lower() != remote:
        raise errdefs.InvalidArgument(
            f"invalid reference format {ref!r}: repository name ({remote}) must be lowercase"
        )
    return parse(f"{domain}/{remainder}")


def parse_docker_ref(ref: str) -> Reference:
    """Normalise as docker and CRI do: tag ``latest`` when there is neither tag nor digest;
    with both, the tag is dropped (the digest decides)."""
    r = parse_normalized(ref)
    if r.digest:
        return attrs.evolve(r, tag="")
    if not r.tag:
        return attrs.evolve(r, tag=DEFAULT_TAG)
    return r


def normalize(ref: str) -> str:
    """``busybox`` -> ``docker.io/library/busybox:latest`` (string form of
    :func:`parse_docker_ref`)."""
    return str(parse_docker_ref(ref))


def is_identifier(s: str) -> bool:
    """True for a bare 64-hex image ID (what CRI accepts in place of a name)."""
    return bool(_IDENTIFIER_RE.match(s))
