"""Registration of ``io.containerd.differ.v1.walking`` (requires metadata: it reads and writes
layers through the namespaced content store)."""

from __future__ import annotations

from typing import Any

from pycontainerd.core.plugin import InitContext, Registration, hookimpl, types


async def _init(ic: InitContext) -> Any:
    from pycontainerd.core import errdefs, platforms
    from pycontainerd.plugins.diff.walking.differ import WalkingDiff

    md = ic.get_single(types.METADATA)
    if md.content_store is None:
        raise errdefs.FailedPrecondition("metadata has no content store")
    ic.meta.platforms.append(platforms.default_spec())
    return WalkingDiff(md.content_store)


@hookimpl
def pycontainerd_registrations() -> list[Registration]:
    return [Registration(type=types.DIFF, id="walking", requires=(types.METADATA,), init=_init)]
