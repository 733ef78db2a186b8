"""NRI, the Node Resource Interface: external plugins that watch pod and container lifecycle
and adjust containers as they are created (containerd/nri, protocol ``nri.pkg.api.v1alpha1``).

Modules: :mod:`.api` (protos as ``pb``, service names, event masks, defaults), :mod:`.mux`
(the connection multiplexer), :mod:`.types` (pod/container values, OCI conversions),
:mod:`.adjustment` (merging plugin replies with conflict detection; applying to an OCI spec),
:mod:`.plugin` (one connected plugin), :mod:`.adaptation` (the :class:`NRI` object),
:mod:`.hookspecs`/:mod:`.hooks` (in-process pluggy hooks), :mod:`.stub` (write plugins).

The CRI plugin gets the instance with ``ic.get_by_id(types.NRI, "nri")`` (``None`` when the
plugin is disabled) and drives it::

    await nri.start(sync=list_pods_and_containers, update=apply_updates, evict=evict)
        # sync() -> (iterable[PodSandbox], iterable[Container]): the current state
        # update([pb.ContainerUpdate]) -> failed updates (apply Linux resources to containers)
        # evict([pb.ContainerEviction]) -> failed evictions (optional)
    await nri.run_pod_sandbox(pod)                    # after the sandbox started
    res = await nri.create_container(pod, ctr)        # ctr = Container.from_oci_spec(spec, ...)
    nri.apply_adjustment(spec, res.adjustment)        # before the container is created
    await nri.post_create_container(pod, ctr)         # after it is stored
    await nri.start_container(pod, ctr)               # before task start
    await nri.post_start_container(pod, ctr)          # after
    res = await nri.update_container(pod, ctr, resources)  # pb.LinuxResources in; out: the
        # resources to apply (None: unchanged); then after applying:
    await nri.post_update_container(pod, ctr)
    await nri.stop_container(pod, ctr)                # on stop, on exit, and on failed start
    await nri.remove_container(pod, ctr)
    await nri.stop_pod_sandbox(pod); await nri.remove_pod_sandbox(pod)
    await nri.synchronize()                           # re-send the current state to plugins
    await nri.close()                                 # the daemon does this at shutdown

``create_container`` raises ``errdefs.Conflict`` when two plugins set the same field (the
message names both); plugin errors propagate; a plugin that times out or dies is dropped and
the call proceeds without it. Updates/evictions plugins ask for other containers are handed
to ``update``/``evict`` (and returned for information), as containerd does. Stop and remove
are delivered once per container, as containerd tracks it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pycontainerd.core.nri.adaptation import NRI, Config, CreateContainerResult
    from pycontainerd.core.nri.adjustment import apply_adjustment
    from pycontainerd.core.nri.api import pb
    from pycontainerd.core.nri.types import Container, PodSandbox

__all__ = [
    "NRI",
    "Config",
    "Container",
    "CreateContainerResult",
    "PodSandbox",
    "apply_adjustment",
    "pb",
]

# Loaded on first use, so that importing a light submodule (``.config``) does not pull in
# protobuf and asyncio.
_WHERE = {
    "NRI": "adaptation",
    "Config": "adaptation",
    "CreateContainerResult": "adaptation",
    "apply_adjustment": "adjustment",
    "pb": "api",
    "Container": "types",
    "PodSandbox": "types",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
