"""Event payloads the metadata stores publish, field for field as containerd's
``containerd.events`` messages (``/namespaces/*``, ``/images/*``, ``/containers/*``,
``/content/delete``, ``/snapshot/*``). Plain attrs values for now; the gRPC events service
converts them to the proto messages (the class name is the message name).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

TOPIC_NAMESPACE_CREATE = "/namespaces/create"
TOPIC_NAMESPACE_UPDATE = "/namespaces/update"
TOPIC_NAMESPACE_DELETE = "/namespaces/delete"
TOPIC_IMAGE_CREATE = "/images/create"
TOPIC_IMAGE_UPDATE = "/images/update"
TOPIC_IMAGE_DELETE = "/images/delete"
TOPIC_CONTAINER_CREATE = "/containers/create"
TOPIC_CONTAINER_UPDATE = "/containers/update"
TOPIC_CONTAINER_DELETE = "/containers/delete"
TOPIC_CONTENT_CREATE = "/content/create"
TOPIC_CONTENT_DELETE = "/content/delete"
TOPIC_SNAPSHOT_PREPARE = "/snapshot/prepare"
TOPIC_SNAPSHOT_COMMIT = "/snapshot/commit"
TOPIC_SNAPSHOT_REMOVE = "/snapshot/remove"


@attrs.frozen(kw_only=True)
class NamespaceCreate:
    name: str
    labels: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class NamespaceUpdate:
    name: str
    labels: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class NamespaceDelete:
    name: str


@attrs.frozen(kw_only=True)
class ImageCreate:
    name: str
    labels: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ImageUpdate:
    name: str
    labels: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ImageDelete:
    name: str


@attrs.frozen(kw_only=True)
class ContainerRuntime:
    name: str
    options: tuple[str, bytes] | None = None


@attrs.frozen(kw_only=True)
class ContainerCreate:
    id: str
    image: str = ""
    runtime: ContainerRuntime


@attrs.frozen(kw_only=True)
class ContainerUpdate:
    id: str
    image: str = ""
    labels: Mapping[str, str] = attrs.field(factory=dict)
    snapshot_key: str = ""


@attrs.frozen(kw_only=True)
class ContainerDelete:
    id: str


@attrs.frozen(kw_only=True)
class ContentCreate:
    digest: str
    size: int


@attrs.frozen(kw_only=True)
class ContentDelete:
    digest: str


@attrs.frozen(kw_only=True)
class SnapshotPrepare:
    key: str
    parent: str = ""
    snapshotter: str = ""


@attrs.frozen(kw_only=True)
class SnapshotCommit:
    key: str
    name: str
    snapshotter: str = ""


@attrs.frozen(kw_only=True)
class SnapshotRemove:
    key: str
    snapshotter: str = ""
