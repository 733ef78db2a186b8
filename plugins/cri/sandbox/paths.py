"""Where a sandbox's files live (containerd's ``getSandboxRootDir`` & co): persistent files
under ``<cri root>/sandboxes/<id>``, volatile ones (the ``/dev/shm`` tmpfs) under
``<cri state>/sandboxes/<id>``. Containers of the pod bind-mount ``hostname``, ``hosts``,
``resolv.conf`` and ``shm`` from here."""

from __future__ import annotations

import os

import attrs

DEV_SHM = "/dev/shm"
ETC_HOSTS = "/etc/hosts"
RESOLV_CONF = "/etc/resolv.conf"
ETC_HOSTNAME = "/etc/hostname"


@attrs.frozen
class SandboxPaths:
    """Paths of sandbox ``id`` under the CRI's root and state directories."""

    root_dir: str
    state_dir: str
    id: str

    @property
    def root(self) -> str:
        return os.path.join(self.root_dir, "sandboxes", self.id)

    @property
    def volatile_root(self) -> str:
        return os.path.join(self.state_dir, "sandboxes", self.id)

    @property
    def hostname(self) -> str:
        return os.path.join(self.root, "hostname")

    @property
    def hosts(self) -> str:
        return os.path.join(self.root, "hosts")

    @property
    def resolv_conf(self) -> str:
        return os.path.join(self.root, "resolv.conf")

    @property
    def shm(self) -> str:
        return os.path.join(self.volatile_root, "shm")
