"""Fetching from and pushing to image registries (containerd's ``core/remotes``).

- :mod:`~pycontainerd.core.remotes.hosts`: ``hosts.toml`` per-registry configuration ->
  ordered :class:`~pycontainerd.core.remotes.hosts.RegistryHost` endpoints.
- :mod:`~pycontainerd.core.remotes.docker`: an asyncio OCI distribution (v2) client:
  ``Resolver`` (resolve a reference), ``Fetcher`` (manifests and blobs, ``Range`` resume),
  ``Pusher`` (blobs with mount/upload, manifests), bearer/basic authorisation.
- :mod:`~pycontainerd.core.remotes.handlers`: walking an image graph (children, platform
  filtering) and fetching blobs into a content store with resume and digest checks.

aiohttp is imported only where a request is made, never at import of this package.
"""

from pycontainerd.core.remotes.hosts import (
    Capabilities,
    RegistryHost,
    RegistryHosts,
    TLSSettings,
    configure_hosts,
)

__all__ = ["Capabilities", "RegistryHost", "RegistryHosts", "TLSSettings", "configure_hosts"]
