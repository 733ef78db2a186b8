"""The container code's view of pod sandboxes: a small adapter over the sandbox store of
:mod:`pycontainerd.plugins.cri.sandbox` (held by the CRI service), so container code needs only
what it reads: id, config, runtime handler, state, pause pid, netns path and sandbox paths."""

from __future__ import annotations

from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.plugins.cri.sandbox.paths import SandboxPaths

READY = "SANDBOX_READY"


@attrs.frozen(kw_only=True)
class SandboxView:
    id: str
    name: str
    #: runtime.v1.PodSandboxConfig
    config: Any
    runtime_handler: str
    state: str
    pid: int
    netns_path: str
    paths: SandboxPaths | None

    @property
    def ready(self) -> bool:
        return self.state == READY


def _store(c: Any) -> Any:
    store = getattr(getattr(c, "sandboxes", None), "store", None)
    if store is None:
        raise errdefs.FailedPrecondition("cri: the sandbox store is not available")
    return store


def _state(sb: Any) -> str:
    state = getattr(sb.status, "state", "")
    return str(getattr(state, "value", state))


def view(c: Any, sb: Any) -> SandboxView:
    paths = None
    runtime = getattr(c, "runtime", None)
    if runtime is not None and getattr(runtime, "root_dir", ""):
        paths = SandboxPaths(runtime.root_dir, runtime.state_dir, sb.id)
    md = sb.metadata
    return SandboxView(
        id=sb.id,
        name=md.name,
        config=md.config,
        runtime_handler=md.runtime_handler,
        state=_state(sb),
        pid=int(getattr(sb.status, "pid", 0) or 0),
        netns_path=md.netns_path,
        paths=paths,
    )


def get(c: Any, sandbox_id: str) -> SandboxView:
    """The sandbox ``sandbox_id`` (a unique prefix works); NotFound naming it."""
    try:
        sb = _store(c).get(sandbox_id)
    except errdefs.NotFound:
        raise errdefs.NotFound(f"failed to find sandbox id {sandbox_id!r}: not found") from None
    return view(c, sb)


def find(c: Any, sandbox_id: str) -> SandboxView | None:
    try:
        return get(c, sandbox_id)
    except errdefs.ContainerdError:
        return None
