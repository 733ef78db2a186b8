"""The local content store (``io.containerd.content.v1.content``): blobs on disk."""

from pycontainerd.plugins.content.local.store import LabelStore, LocalStore, MemoryLabelStore

__all__ = ["LabelStore", "LocalStore", "MemoryLabelStore"]
