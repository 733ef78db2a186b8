"""A registry as a transfer source or destination (containerd's
``core/transfer/registry.OCIRegistry``): a reference, and how to reach and authenticate to its
registry (headers, a ``hosts.toml`` directory, a default scheme, a credentials callback)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from pycontainerd.core.content.descriptor import Descriptor
    from pycontainerd.core.remotes.docker import Fetcher, Pusher, Resolver
    from pycontainerd.core.remotes.docker.auth import Credentials


@attrs.define(eq=False, kw_only=True)
class OCIRegistry:
    """``reference`` (``host/repo:tag`` or ``@digest``) in a registry. ``host_dir`` is a
    ``hosts.toml`` config directory ("" = the service's ``config_path``), ``default_scheme``
    "http" forces plain HTTP for registries without configuration (``--plain-http``);
    ``credentials(host) -> (user, secret)`` is asked when the registry challenges."""

    reference: str
    headers: Mapping[str, str] = attrs.Factory(dict)
    host_dir: str = ""
    default_scheme: str = ""
    credentials: Credentials | None = None
    #: the config directory used when ``host_dir`` is empty (set by the transfer service)
    default_host_dir: str = ""
    _resolver: Resolver | None = None

    def __str__(self) -> str:
        return f"OCI Registry ({self.reference})"

    @property
    def resolver(self) -> Resolver:
        if self._resolver is None:
            from pycontainerd.core.remotes.docker import Resolver
            from pycontainerd.core.remotes.hosts import configure_hosts

            hosts = configure_hosts(
                self.host_dir or self.default_host_dir or None,
                default_scheme=self.default_scheme,
            )
            self._resolver = Resolver(
                hosts=hosts, credentials=self.credentials, headers=dict(self.headers)
            )
        return self._resolver

    async def resolve(self) -> tuple[str, Descriptor]:
        return await self.resolver.resolve(self.reference)

    async def fetcher(self, ref: str) -> Fetcher:
        return await self.resolver.fetcher(ref)

    async def pusher(self, desc: Descriptor) -> Pusher:
        return await self.resolver.pusher(self.reference)

    async def close(self) -> None:
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None
