"""In-process NRI hooks: the same events external NRI plugins get, as pluggy hooks.

Implement them in any plugin module (built-in, or a third party's ``pycontainerd.plugins``
entry point) with the usual marker::

    from pycontainerd.core.plugin import hookimpl
    from pycontainerd.core.nri.api import pb

    NRI_PLUGIN_INDEX = "20"          # optional: ordering among NRI plugins (default "00")
    NRI_PLUGIN_NAME = "my-adjuster"  # optional: the name in logs and conflicts

    @hookimpl
    def pycontainerd_nri_create_container(pod, container):
        adj = pb.ContainerAdjustment()
        adj.env.add(key="HELLO", value="world")
        return adj

Each module is one NRI plugin named ``<index>-<name>``, ordered with the external and
pre-installed plugins by index; its adjustments are merged and checked for conflicts exactly
like theirs. ``pod`` and ``container`` are the NRI protos (``api.pb.PodSandbox``,
``api.pb.Container``). A hook may be ``async`` (bounded by the request timeout; a hook that
exceeds it is dropped) or plain (it runs on the event loop: keep it quick). Raising an error
fails the CRI call, as an external plugin's error does.
"""

from __future__ import annotations

from typing import Any

from pycontainerd.core.plugin.hookspecs import hookspec

#: hook name -> the NRI RPC it stands for.
HOOKS = {
    "pycontainerd_nri_synchronize": "Synchronize",
    "pycontainerd_nri_run_pod_sandbox": "RunPodSandbox",
    "pycontainerd_nri_stop_pod_sandbox": "StopPodSandbox",
    "pycontainerd_nri_remove_pod_sandbox": "RemovePodSandbox",
    "pycontainerd_nri_update_pod_sandbox": "UpdatePodSandbox",
    "pycontainerd_nri_post_update_pod_sandbox": "PostUpdatePodSandbox",
    "pycontainerd_nri_create_container": "CreateContainer",
    "pycontainerd_nri_post_create_container": "PostCreateContainer",
    "pycontainerd_nri_start_container": "StartContainer",
    "pycontainerd_nri_post_start_container": "PostStartContainer",
    "pycontainerd_nri_update_container": "UpdateContainer",
    "pycontainerd_nri_post_update_container": "PostUpdateContainer",
    "pycontainerd_nri_stop_container": "StopContainer",
    "pycontainerd_nri_remove_container": "RemoveContainer",
    "pycontainerd_nri_validate_container_adjustment": "ValidateContainerAdjustment",
}


@hookspec
def pycontainerd_nri_synchronize(pods: list[Any], containers: list[Any]) -> Any:
    """Existing pods and containers when NRI starts; may return ``ContainerUpdate``s."""


@hookspec
def pycontainerd_nri_run_pod_sandbox(pod: Any) -> None:
    """A pod sandbox was started."""


@hookspec
def pycontainerd_nri_stop_pod_sandbox(pod: Any) -> None:
    """A pod sandbox is being stopped."""


@hookspec
def pycontainerd_nri_remove_pod_sandbox(pod: Any) -> None:
    """A pod sandbox was removed."""


@hookspec
def pycontainerd_nri_create_container(pod: Any, container: Any) -> Any:
    """A container is being created: return a ``ContainerAdjustment`` (or a
    ``CreateContainerResponse``, or ``(adjustment, [ContainerUpdate...])``), or None."""


@hookspec
def pycontainerd_nri_post_create_container(pod: Any, container: Any) -> None:
    """A container was created."""


@hookspec
def pycontainerd_nri_start_container(pod: Any, container: Any) -> None:
    """A container is about to start."""


@hookspec
def pycontainerd_nri_post_start_container(pod: Any, container: Any) -> None:
    """A container started."""


@hookspec
def pycontainerd_nri_update_container(pod: Any, container: Any, resources: Any) -> Any:
    """A container's resources are being updated: may return ``ContainerUpdate``s."""


@hookspec
def pycontainerd_nri_post_update_container(pod: Any, container: Any) -> None:
    """A container's resources were updated."""


@hookspec
def pycontainerd_nri_stop_container(pod: Any, container: Any) -> Any:
    """A container stopped: may return ``ContainerUpdate``s for other containers."""


@hookspec
def pycontainerd_nri_remove_container(pod: Any, container: Any) -> None:
    """A container was removed."""


@hookspec
def pycontainerd_nri_update_pod_sandbox(pod: Any, overhead: Any, resources: Any) -> None:
    """A pod's resources are being updated (``overhead``/``resources``: ``LinuxResources``);
    raising fails the update."""


@hookspec
def pycontainerd_nri_post_update_pod_sandbox(pod: Any) -> None:
    """A pod's resources were updated."""


@hookspec
def pycontainerd_nri_validate_container_adjustment(request: Any) -> Any:
    """Judge the merged adjustment of a container being created
    (``request``: a ``ValidateContainerAdjustmentRequest`` with the adjustment, who set
    which field, and the plugins that took part). Return None to accept; a reason (str) or a
    ``ValidateContainerAdjustmentResponse`` with ``reject`` set, or raising, refuses the
    container."""
