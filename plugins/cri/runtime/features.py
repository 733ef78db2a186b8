"""What each runtime handler supports, for ``Status``'s runtime handlers (containerd asks the
shim, which runs ``runc features``): recursive read-only mounts (runc knows the ``rro`` mount
option and the kernel has ``mount_setattr``, 5.12+) and user namespaces (the ``user``
namespace and idmapped mounts)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
from typing import Any

import attrs

from pycontainerd.plugins.cri import constants
from pycontainerd.plugins.cri.config import Runtime

log = logging.getLogger(__name__)

FEATURES_TIMEOUT = 10.0


@attrs.frozen(kw_only=True)
class HandlerFeatures:
    recursive_read_only_mounts: bool = False
    user_namespaces: bool = False


def kernel_supports_rro(release: str | None = None) -> bool:
    """``mount_setattr(2)`` with ``MOUNT_ATTR_RDONLY`` recursively: Linux 5.12 and later."""
    text = release if release is not None else os.uname().release
    m = re.match(r"(\d+)\.(\d+)", text)
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (5, 12)


def from_runc_features(raw: dict[str, Any], *, kernel_rro: bool) -> HandlerFeatures:
    """The CRI features in the JSON of ``runc features``."""
    rro = "rro" in (raw.get("mountOptions") or []) and kernel_rro
    linux = raw.get("linux") or {}
    userns = "user" in (linux.get("namespaces") or [])
    idmap = ((linux.get("mountExtensions") or {}).get("idmap") or {}).get("enabled") is True
    return HandlerFeatures(recursive_read_only_mounts=rro, user_namespaces=userns and idmap)


def runc_binary(runtime: Runtime) -> str:
    name = str(runtime.options.get("BinaryName") or "runc")
    return shutil.which(name) or name


async def introspect(runtime: Runtime) -> HandlerFeatures | None:
    """The features of one handler; None when they cannot be known (not a runc runtime, or
    ``runc features`` failed)."""
    if runtime.runtime_type not in constants.RUNC_RUNTIME_TYPES:
        return None
    binary = runc_binary(runtime)
    try:
        proc = await asyncio.create_subprocess_exec(
            binary,
            "features",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), FEATURES_TIMEOUT)
    except (OSError, TimeoutError) as e:
        log.debug("cri: %s features: %s", binary, e)
        return None
    if proc.returncode != 0:
        log.debug("cri: %s features failed: %s", binary, err.decode(errors="replace").strip())
        return None
    try:
        raw = json.loads(out)
    except ValueError:
        return None
    return from_runc_features(
        raw if isinstance(raw, dict) else {}, kernel_rro=kernel_supports_rro()
    )
