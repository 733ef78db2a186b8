"""Registration of ``io.containerd.metadata.v1.bolt`` (the ID is containerd's, kept so that
configs carry over; the store is SQLite)."""

from __future__ import annotations

import logging
import os
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types
from pycontainerd.core.plugin.context import PluginNotFound

log = logging.getLogger(__name__)

POLICIES = ("shared", "isolated")


def _policy(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    if value not in POLICIES:
        raise ValueError(f"{attr.name} must be shared or isolated, not {value!r}")


@attrs.define(kw_only=True)
class Config:
    #: "shared": a blob in the backend is visible to a namespace once it writes it again;
    #: "isolated": every namespace must provide the data itself
    content_sharing_policy: str = attrs.field(default="shared", validator=_policy)
    #: do not fsync the database on commit (faster, not crash-safe for the host)
    no_sync: bool = False


async def _init(ic: InitContext) -> Any:
    from pycontainerd.core.metadata.metadata import Metadata

    config: Config = ic.config
    if config.content_sharing_policy not in POLICIES:
        raise errdefs.InvalidArgument(
            f"unknown content_sharing_policy {config.content_sharing_policy!r}: "
            "want shared or isolated"
        )
    content = ic.get_single(types.CONTENT)
    snapshotters = ic.get_by_type(types.SNAPSHOTTER)
    try:
        exchange = ic.get_single(types.EVENT)
    except PluginNotFound:
        log.warning("no event exchange: metadata events will not be published")
        publisher = None
    else:
        from pycontainerd.core.events.convert import ProtoPublisher

        # The stores publish attrs payloads; subscribers get containerd's packed proto events.
        publisher = ProtoPublisher(exchange)
    path = os.path.join(ic.root, "meta.db")
    md = await Metadata.open(
        path,
        content=content,
        snapshotters=snapshotters,
        shared_content=config.content_sharing_policy == "shared",
        no_sync=config.no_sync,
        publisher=publisher,
    )
    ic.meta.exports["path"] = path
    return md


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [
        Registration(
            type=types.METADATA,
            id="bolt",
            requires=(types.CONTENT, types.EVENT, types.SNAPSHOTTER),
            config=Config,
            init=_init,
        )
    ]
