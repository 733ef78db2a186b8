"""The content store contract (containerd's ``core/content``): value types, protocols,
digest helpers, filter adaptors, read/write helpers and a reusable conformance suite
(:mod:`pycontainerd.core.content.testsuite`, imported only by tests)."""

from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.content.types import (
    Info,
    InfoProvider,
    Ingester,
    IngestManager,
    Manager,
    Provider,
    ReaderAt,
    Status,
    Store,
    Writer,
)

__all__ = [
    "Descriptor",
    "Info",
    "InfoProvider",
    "IngestManager",
    "Ingester",
    "Manager",
    "Provider",
    "ReaderAt",
    "Status",
    "Store",
    "Writer",
]
