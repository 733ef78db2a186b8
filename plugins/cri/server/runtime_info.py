"""RuntimeService: Version, Status, RuntimeConfig and UpdateRuntimeConfig (containerd's
``internal/cri/server/{version,status,runtime_config_linux,update_runtime_config}.go``)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.plugins.cri import constants

log = logging.getLogger(__name__)


def _pb() -> Any:
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2

    return api_pb2


async def version(c: Any, request: Any, context: Any) -> Any:
    import pycontainerd

    return _pb().VersionResponse(
        version=constants.KUBE_API_VERSION,
        runtime_name=constants.RUNTIME_NAME,
        runtime_version=pycontainerd.__version__,
        runtime_api_version=constants.RUNTIME_API_VERSION,
    )


# --- Status ---------------------------------------------------------------------------


async def runtime_handlers(c: Any) -> list[Any]:
    """Every configured handler with its features, plus the default handler again under the
    empty name (kubelet's way of asking for the default)."""
    pb = _pb()
    features = await c.runtime_handler_features()
    out: list[Any] = []
    default = c.config.containerd.default_runtime_name
    for name in sorted(c.config.containerd.runtimes):
        f = features.get(name)
        h = pb.RuntimeHandler(name=name)
        if f is not None:
            h.features.CopyFrom(
                pb.RuntimeHandlerFeatures(
                    recursive_read_only_mounts=f.recursive_read_only_mounts,
                    user_namespaces=f.user_namespaces,
                )
            )
        out.append(h)
        if name == default:
            d = pb.RuntimeHandler()
            d.CopyFrom(h)
            d.name = ""
            out.append(d)
    return out


def deprecation_condition(c: Any) -> Any:
    """``ContainerdHasNoDeprecationWarnings``: false, with the warnings as a JSON object,
    while the daemon has deprecation warnings not listed in ``ignore_deprecation_warnings``."""
    pb = _pb()
    cond = pb.RuntimeCondition(type=constants.NO_DEPRECATION_WARNINGS, status=True)
    ignore = set(c.config.ignore_deprecation_warnings)
    warnings = c.warnings.warnings() if c.warnings is not None else []
    messages = {w.id: w.message for w in warnings if w.id not in ignore}
    if messages:
        cond.status = False
        cond.reason = constants.HAS_DEPRECATION_WARNINGS
        cond.message = json.dumps(messages, sort_keys=True)
    return cond


def _json_default(value: Any) -> Any:
    if attrs.has(type(value)):
        return attrs.asdict(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def verbose_info(c: Any, network: Any) -> dict[str, str]:
    config = {
        **attrs.asdict(c.config),
        "containerdRootDir": c.runtime.containerd_root_dir,
        "containerdEndpoint": c.runtime.containerd_endpoint,
        "rootDir": c.runtime.root_dir,
        "stateDir": c.runtime.state_dir,
    }
    info = {
        "config": json.dumps(config, default=_json_default, sort_keys=True),
        "python": json.dumps(platform.python_version()),
        "lastCNILoadStatus": "OK" if network.ready else network.message,
    }
    networks = [
        {"name": n.name, "cniVersion": n.cni_version, "source": n.source} for n in network.networks
    ]
    info["cniconfig"] = json.dumps(
        {
            "PluginDirs": list(c.config.cni.bin_dirs),
            "PluginConfDir": c.config.cni.conf_dir,
            "PluginMaxConfNum": c.config.cni.max_conf_num,
            "Networks": networks,
        }
    )
    return info


async def status(c: Any, request: Any, context: Any) -> Any:
    pb = _pb()
    runtime_cond = pb.RuntimeCondition(type=constants.RUNTIME_READY, status=True)
    network = await c.network_status()
    network_cond = pb.RuntimeCondition(type=constants.NETWORK_READY, status=network.ready)
    if not network.ready:
        network_cond.reason = constants.NETWORK_NOT_READY_REASON
        network_cond.message = f"Network plugin returns error: {network.message}"
    resp = pb.StatusResponse(
        status=pb.RuntimeStatus(conditions=[runtime_cond, network_cond, deprecation_condition(c)]),
        runtime_handlers=await runtime_handlers(c),
        features=pb.RuntimeFeatures(supplemental_groups_policy=True),
    )
    if request.verbose:
        resp.info.update(verbose_info(c, network))
    return resp


# --- RuntimeConfig ----------------------------------------------------------------------


def detect_cgroup_driver() -> str:
    """systemd when the host runs systemd on the unified hierarchy, else cgroupfs."""
    unified = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    systemd = os.path.isdir("/run/systemd/system")
    return "systemd" if unified and systemd else "cgroupfs"


def cgroup_driver(config: Any) -> str:
    """The driver of the first runc handler, default handler first, then by name
    (``SystemdCgroup`` in its options); detected from the host when there is none."""
    default = config.containerd.default_runtime_name
    for name in sorted(config.containerd.runtimes, key=lambda n: (n != default, n)):
        rt = config.containerd.runtimes[name]
        if rt.runtime_type in constants.RUNC_RUNTIME_TYPES:
            return "systemd" if rt.options.get("SystemdCgroup") else "cgroupfs"
    return detect_cgroup_driver()


async def runtime_config(c: Any, request: Any, context: Any) -> Any:
    pb = _pb()
    driver = pb.SYSTEMD if cgroup_driver(c.config) == "systemd" else pb.CGROUPFS
    return pb.RuntimeConfigResponse(linux=pb.LinuxRuntimeConfiguration(cgroup_driver=driver))


# --- UpdateRuntimeConfig ----------------------------------------------------------------


async def update_runtime_config(c: Any, request: Any, context: Any) -> Any:
    """Record the pod CIDRs; write the CNI config from ``cni.conf_template`` unless a network
    is configured already (or there is no template)."""
    from pycontainerd.core.cni import template

    pb = _pb()
    text = request.runtime_config.network_config.pod_cidr
    if not text:
        return pb.UpdateRuntimeConfigResponse()
    cidrs = [part.strip() for part in text.split(",")]
    template.routes_for(cidrs)  # InvalidArgument for a bad CIDR
    c.pod_cidrs = cidrs
    conf_template = c.config.cni.conf_template
    if not conf_template:
        log.info(
            "No cni config template is specified, wait for other system components to drop "
            "the config."
        )
        return pb.UpdateRuntimeConfigResponse()
    network = await c.network_status()
    if network.ready:
        log.info(
            "Network plugin is ready, skip generating cni config from template %r", conf_template
        )
        return pb.UpdateRuntimeConfigResponse()
    log.info("Generating cni config from template %r", conf_template)
    try:
        await asyncio.to_thread(
            template.write_conf_from_template, conf_template, c.config.cni.conf_dir, cidrs
        )
    except errdefs.ContainerdError as e:
        raise errdefs.from_code(e.code, f"failed to generate cni config: {e}") from e
    return pb.UpdateRuntimeConfigResponse()
