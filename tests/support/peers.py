"""Where the real peers the integration tests drive live on this host (Debian 12 packages that
scripts/setup.sh installs): runc, containerd's ctr and shim, CNI plugins, umoci, busybox,
docker-registry. No pytest import at module level (bench/ scripts use this too)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
#: Debian's containernetworking-plugins install here.
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")

#: The Debian package that provides each binary (for skip/fail messages).
PACKAGES = {
    "runc": "runc",
    "ctr": "containerd",
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "docker-registry": "docker-registry",
    "umoci": "umoci",
    "busybox": "busybox-static",
    "gcc": "gcc",
    "ip": "iproute2",
}


def find_binary(name: str) -> str | None:
    """``name`` on PATH or in the sbin directories (root's PATH is not always set up)."""
    found = shutil.which(name)
    if found:
        return found
    for d in SBIN_DIRS:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


def cni_bin_dir() -> str | None:
    """The directory holding the CNI plugin binaries (bridge, loopback, host-local, ...)."""
    for d in CNI_BIN_DIRS:
        if os.access(os.path.join(d, "bridge"), os.X_OK):
            return d
    return None


def missing_message(name: str) -> str:
    pkg = PACKAGES.get(name)
    hint = f" (Debian package {pkg}; run scripts/setup.sh)" if pkg else " (run scripts/setup.sh)"
    return f"{name} not found{hint}"


def require_binary(name: str) -> str:
    """The path of ``name``. Missing: a skip on a developer's machine, a failure in CI (CI=true),
    where scripts/setup.sh must have installed it."""
    path = find_binary(name)
    if path:
        return path
    import pytest

    if os.environ.get("CI"):
        pytest.fail(missing_message(name) + "; CI must install it", pytrace=False)
    pytest.skip(missing_message(name))


def require_cni() -> Path:
    d = cni_bin_dir()
    if d:
        return Path(d)
    import pytest

    msg = "CNI plugins not found in " + ", ".join(CNI_BIN_DIRS) + " (containernetworking-plugins)"
    if os.environ.get("CI"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)
