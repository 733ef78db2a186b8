"""Image references as the CRI shows them: repo tags and repo digests of an image's records,
the ordering of references, and the digest and tag records a pull creates."""

from __future__ import annotations

from collections.abc import Iterable

from pycontainerd.core import errdefs, reference
from pycontainerd.core.content import digests


def is_digest(ref: str) -> bool:
    """``sha256:<hex>`` (an image ID record), not a repository reference."""
    try:
        digests.parse(ref)
    except errdefs.ContainerdError:
        return False
    return True


def _parse_any(ref: str) -> reference.Reference | None:
    """A named reference, or None for an ID (64 hex or ``sha256:...``) or a bad string."""
    if reference.is_identifier(ref) or is_digest(ref):
        return None
    try:
        return reference.parse_normalized(ref)
    except errdefs.InvalidArgument:
        return None


def repo_tags_and_digests(refs: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split an image's references into repo tags (``name:tag``) and repo digests
    (``name@sha256:...``); IDs are neither."""
    tags: list[str] = []
    digest_refs: list[str] = []
    for ref in refs:
        parsed = _parse_any(ref)
        if parsed is None:
            continue
        if parsed.digest:
            digest_refs.append(str(parsed))
        elif parsed.tag:
            tags.append(str(parsed))
    return tags, digest_refs


def _rank(ref: str) -> int:
    if is_digest(ref) or reference.is_identifier(ref):
        return 5
    parsed = _parse_any(ref)
    if parsed is None:
        return 6
    if parsed.tag and parsed.digest:
        return 1
    if parsed.tag:
        return 2
    if parsed.digest:
        return 3
    return 4


def sort_references(refs: Iterable[str]) -> list[str]:
    """Most informative first: name:tag@digest, name:tag, name@digest, name, digest, then
    anything unparsable; alphabetical within a kind. Duplicates are dropped."""
    return sorted(set(refs), key=lambda r: (_rank(r), r))


def repo_digest_and_tag(named: reference.Reference, target_digest: str) -> tuple[str, str]:
    """The digest record and the tag record a pull of ``named`` creates: ``name@<manifest
    digest>`` (or ``named`` itself when it has a digest) and ``name:tag`` (or "")."""
    repo_tag = str(named) if named.tag and not named.digest else ""
    repo_digest = str(named) if named.digest else f"{named.name}@{target_digest}"
    return repo_digest, repo_tag
