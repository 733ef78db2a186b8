"""The local diff service: a :class:`pycontainerd.core.diff.Differ` that tries the configured
differs in order and uses the first that does not answer NotImplemented (containerd's
``plugins/services/diff/local.go``). In-process clients use it exactly like a differ."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.content import Descriptor
from pycontainerd.core.diff import ApplyConfig, DiffConfig, Differ
from pycontainerd.core.mount import Mount


@attrs.define(eq=False)
class DiffService:
    differs: list[Differ]
    sync_fs: bool = False

    @classmethod
    def from_differs(
        cls, loaded: Mapping[str, Any], order: Sequence[str], *, sync_fs: bool = False
    ) -> DiffService:
        """The differs named by ``order`` out of the ``loaded`` ones (ID -> instance)."""
        ordered: list[Differ] = []
        for name in order:
            d = loaded.get(name)
            if d is None:
                raise errdefs.NotFound(f"needed differ not loaded: {name}")
            if not isinstance(d, Differ):
                raise errdefs.InvalidArgument(
                    f"differ does not implement comparer and applier interface: {name}"
                )
            ordered.append(d)
        return cls(ordered, sync_fs=sync_fs)

    async def apply(
        self, desc: Descriptor, mounts: Sequence[Mount], config: ApplyConfig | None = None
    ) -> Descriptor:
        config = config or ApplyConfig()
        if self.sync_fs and not config.sync_fs:
            config = attrs.evolve(config, sync_fs=True)
        err: BaseException = errdefs.NotImplemented_("no differ configured")
        for d in self.differs:
            try:
                return await d.apply(desc, mounts, config)
            except errdefs.NotImplemented_ as e:
                err = e
        raise err

    async def compare(
        self, lower: Sequence[Mount], upper: Sequence[Mount], config: DiffConfig | None = None
    ) -> Descriptor:
        err: BaseException = errdefs.NotImplemented_("no differ configured")
        for d in self.differs:
            try:
                return await d.compare(lower, upper, config)
            except errdefs.NotImplemented_ as e:
                err = e
        raise err
