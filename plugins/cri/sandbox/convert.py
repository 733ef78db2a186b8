"""Sandboxes as CRI messages (``PodSandboxStatus``, ``PodSandbox``), list filters, and the
CNI arguments of a pod (labels, port mappings, DNS, capabilities)."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from pycontainerd.plugins.cri.sandbox import annotations as ann
from pycontainerd.plugins.cri.sandbox.store import Sandbox, State

if TYPE_CHECKING:  # core.cni (its config/types/libcni modules) loads on the first pod network
    from pycontainerd.core.cni import DNSConfig, PortMapping


def _pb() -> Any:
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2

    return api_pb2


def unix_nano(dt: datetime.datetime | None) -> int:
    if dt is None:
        return 0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.UTC)
    delta = dt - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def cri_state(state: State) -> int:
    """READY, or NOTREADY for every other state (UNKNOWN included)."""
    pb = _pb()
    return int(pb.SANDBOX_READY if state is State.READY else pb.SANDBOX_NOTREADY)


def to_cri_status(sandbox: Sandbox, ip: str, additional_ips: list[str]) -> Any:
    pb = _pb()
    md = sandbox.metadata
    config = md.config
    status = pb.PodSandboxStatus(
        id=md.id,
        metadata=config.metadata,
        state=cri_state(sandbox.state),
        created_at=unix_nano(sandbox.status.created_at),
        network=pb.PodSandboxNetworkStatus(
            ip=ip, additional_ips=[pb.PodIP(ip=a) for a in additional_ips]
        ),
        linux=pb.LinuxPodSandboxStatus(
            namespaces=pb.Namespace(options=config.linux.security_context.namespace_options)
        ),
        labels=dict(config.labels),
        annotations=dict(config.annotations),
        runtime_handler=md.runtime_handler,
    )
    return status


def to_cri_sandbox(sandbox: Sandbox) -> Any:
    pb = _pb()
    md = sandbox.metadata
    return pb.PodSandbox(
        id=md.id,
        metadata=md.config.metadata,
        state=cri_state(sandbox.state),
        created_at=unix_nano(sandbox.status.created_at),
        labels=dict(md.config.labels),
        annotations=dict(md.config.annotations),
        runtime_handler=md.runtime_handler,
    )


def matches(sandbox: Sandbox, flt: Any) -> bool:
    """Whether a ``PodSandboxFilter`` selects ``sandbox`` (id: exact or prefix; state;
    every label of the selector equal)."""
    if flt is None:
        return True
    if flt.id and not sandbox.id.startswith(flt.id):
        return False
    if flt.HasField("state") and cri_state(sandbox.state) != flt.state.state:
        return False
    labels = sandbox.config.labels
    return all(labels.get(k) == v for k, v in flt.label_selector.items())


def cni_port_mappings(config: Any) -> list[PortMapping]:
    """The pod's port mappings with a host port (others are not forwarded)."""
    from pycontainerd.core.cni import PortMapping

    out = []
    for p in config.port_mappings:
        if p.host_port <= 0:
            continue
        out.append(
            PortMapping(
                host_port=int(p.host_port),
                container_port=int(p.container_port),
                protocol=_pb().Protocol.Name(p.protocol).lower(),
                host_ip=p.host_ip,
            )
        )
    return out


def cni_dns(config: Any) -> DNSConfig | None:
    if not config.HasField("dns_config"):
        return None
    from pycontainerd.core.cni import DNSConfig

    d = config.dns_config
    return DNSConfig(servers=list(d.servers), searches=list(d.searches), options=list(d.options))


def cni_args(sandbox_id: str, config: Any) -> dict[str, Any]:
    """Keyword arguments of ``core.cni.CNI.setup``/``remove`` for a pod."""
    from pycontainerd.core.cni import pod_labels

    md = config.metadata
    caps: dict[str, Any] = {ann.POD_ANNOTATIONS: dict(config.annotations)}
    if config.linux.cgroup_parent:
        caps["cgroupPath"] = config.linux.cgroup_parent
    return {
        "labels": pod_labels(sandbox_id, md.name, md.namespace, md.uid),
        "port_mappings": cni_port_mappings(config),
        "dns": cni_dns(config),
        "capabilities": caps,
    }
