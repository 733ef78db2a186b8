"""A sandbox's files (containerd's ``setupSandboxFiles``/``cleanupSandboxFiles``):
``hostname``, ``hosts`` (the host's), ``resolv.conf`` (from the DNS config, else the host's)
in the sandbox root, and a ``/dev/shm`` tmpfs in the volatile root unless the pod shares the
host's IPC namespace. Blocking; callers run these in a thread."""

from __future__ import annotations

import errno
import os
import shutil
import socket
from collections.abc import Sequence
from typing import Any

from pycontainerd.core import errdefs
from pycontainerd.plugins.cri.podsandbox.spec import DEFAULT_SHM_SIZE
from pycontainerd.plugins.cri.sandbox.paths import DEV_SHM, ETC_HOSTS, RESOLV_CONF, SandboxPaths

MAX_DNS_SEARCHES = 32
_NODE = 2


def parse_dns_options(
    servers: Sequence[str], searches: Sequence[str], options: Sequence[str]
) -> str:
    """resolv.conf content for a pod's DNS config ("" when it says nothing)."""
    if len(searches) > MAX_DNS_SEARCHES:
        raise errdefs.InvalidArgument(
            f"dns config has {len(searches)} search domains, more than {MAX_DNS_SEARCHES}"
        )
    out = ""
    if searches:
        out += "search " + " ".join(searches) + "\n"
    if servers:
        out += "".join(f"nameserver {s}\n" for s in servers)
    if options:
        out += "options " + " ".join(options) + "\n"
    return out


def _write(path: str, data: str, mode: int = 0o644) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _copy(src: str, dst: str, mode: int = 0o644) -> None:
    shutil.copyfile(src, dst)
    os.chmod(dst, mode)


def make_dirs(paths: SandboxPaths) -> None:
    os.makedirs(paths.root, mode=0o755, exist_ok=True)
    os.makedirs(paths.volatile_root, mode=0o755, exist_ok=True)


def setup(paths: SandboxPaths, config: Any) -> None:
    """Write hostname, hosts and resolv.conf, and mount the pod's /dev/shm."""
    hostname = config.hostname or socket.gethostname()
    try:
        _write(paths.hostname, hostname + "\n")
    except OSError as e:
        raise errdefs.Internal(f"failed to write hostname to {paths.hostname!r}: {e}") from e
    try:
        _copy(ETC_HOSTS, paths.hosts)
    except OSError as e:
        raise errdefs.Internal(f"failed to generate sandbox hosts file {paths.hosts!r}: {e}") from e
    if config.HasField("dns_config"):
        dns = config.dns_config
        content = parse_dns_options(list(dns.servers), list(dns.searches), list(dns.options))
        try:
            _write(paths.resolv_conf, content)
        except OSError as e:
            raise errdefs.Internal(
                f"failed to write resolv content to {paths.resolv_conf!r}: {e}"
            ) from e
    else:
        try:
            _copy(RESOLV_CONF, paths.resolv_conf)
        except OSError as e:
            raise errdefs.Internal(
                f"failed to copy host's resolv.conf to {paths.resolv_conf!r}: {e}"
            ) from e
    if int(config.linux.security_context.namespace_options.ipc) == _NODE:
        if not os.path.exists(DEV_SHM):
            raise errdefs.FailedPrecondition(f"host {DEV_SHM!r} is not available for host ipc")
        return
    from pycontainerd.core.mount import Mount, linux

    os.makedirs(paths.shm, mode=0o700, exist_ok=True)
    try:
        linux.mount_at(
            Mount(
                type="tmpfs",
                source="shm",
                options=("nodev", "noexec", "nosuid", f"mode=1777,size={DEFAULT_SHM_SIZE}"),
            ),
            paths.shm,
        )
    except (OSError, errdefs.ContainerdError) as e:
        raise errdefs.Internal(f"failed to mount sandbox shm at {paths.shm!r}: {e}") from e


def unmount_shm(paths: SandboxPaths) -> None:
    """Unmount the pod's /dev/shm (absent or not mounted is fine)."""
    from pycontainerd.core.mount import linux

    if not os.path.lexists(paths.shm):
        return
    try:
        linux.unmount_all(paths.shm, linux.MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.EINVAL):
            raise errdefs.Internal(f"failed to unmount {paths.shm!r}: {e}") from e


def remove(paths: SandboxPaths) -> None:
    """Unmount and delete both sandbox directories."""
    unmount_shm(paths)
    for d in (paths.volatile_root, paths.root):
        try:
            shutil.rmtree(d)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise errdefs.Internal(f"failed to remove sandbox directory {d!r}: {e}") from e
