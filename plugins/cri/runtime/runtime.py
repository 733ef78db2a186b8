"""What ``io.containerd.cri.v1.runtime`` hands the CRI server: the runtime config (handlers,
CNI, security switches), the CRI's root and state directories, and the base OCI specs named by
runtime handlers (``base_runtime_spec``)."""

from __future__ import annotations

import json
import logging
from typing import Any

import attrs

from pycontainerd.core import durations, errdefs
from pycontainerd.plugins.cri.config import Runtime, RuntimeConfig

log = logging.getLogger(__name__)


@attrs.define(eq=False, kw_only=True)
class CRIRuntime:
    config: RuntimeConfig
    #: ``<root>/io.containerd.grpc.v1.cri`` and ``<state>/io.containerd.grpc.v1.cri``
    root_dir: str
    state_dir: str
    #: the daemon's root directory and gRPC address
    containerd_root_dir: str = ""
    containerd_endpoint: str = ""
    #: ``base_runtime_spec`` path -> the OCI spec it holds
    base_oci_specs: dict[str, dict[str, Any]] = attrs.Factory(dict)

    def runtime(self, handler: str) -> Runtime:
        """The runtime of a handler ("" = the default); NotFound naming the known ones."""
        return self.config.runtime(handler)


def validate(config: RuntimeConfig) -> list[str]:
    """Reject a config the CRI cannot work with; returns deprecation warnings."""
    default = config.containerd.default_runtime_name
    if default not in config.containerd.runtimes:
        raise errdefs.InvalidArgument(
            f"no corresponding runtime configured in `containerd.runtimes` for `containerd` "
            f'`default_runtime_name = "{default}"`'
        )
    for name, rt in config.containerd.runtimes.items():
        if not rt.runtime_type:
            raise errdefs.InvalidArgument(f"runtime {name!r}: runtime_type is required")
        if rt.sandboxer not in ("podsandbox", "shim", ""):
            log.info("cri: runtime %s uses sandboxer %s", name, rt.sandboxer)
        if rt.io_type not in ("", "fifo", "streaming"):
            raise errdefs.InvalidArgument(
                f"runtime {name!r}: io_type {rt.io_type!r} is not fifo or streaming"
            )
    try:
        durations.parse(config.drain_exec_sync_io_timeout)
    except errdefs.InvalidArgument as e:
        raise errdefs.InvalidArgument(f"drain_exec_sync_io_timeout: {e}") from None
    warnings: list[str] = []
    if config.cni.bin_dir:
        warnings.append(
            "io.containerd.deprecation/cri-cni-bin-dir: cni.bin_dir is deprecated, use bin_dirs"
        )
    return warnings


def load_base_specs(config: RuntimeConfig) -> dict[str, dict[str, Any]]:
    """Read every handler's ``base_runtime_spec`` once (InvalidArgument naming a bad file)."""
    specs: dict[str, dict[str, Any]] = {}
    for name, rt in config.containerd.runtimes.items():
        path = rt.base_runtime_spec
        if not path or path in specs:
            continue
        try:
            with open(path, "rb") as f:
                spec = json.load(f)
        except (OSError, ValueError) as e:
            raise errdefs.InvalidArgument(
                f"runtime {name!r}: failed to load base OCI spec from {path!r}: {e}"
            ) from None
        if not isinstance(spec, dict):
            raise errdefs.InvalidArgument(f"runtime {name!r}: {path!r} is not an OCI spec")
        specs[path] = spec
    return specs
