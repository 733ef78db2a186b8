"""An asyncio client for OCI distribution (v2) registries, after containerd's
``core/remotes/docker``: :class:`Resolver` (resolve references; make fetchers and pushers),
:class:`~pycontainerd.core.remotes.docker.fetcher.Fetcher`,
:class:`~pycontainerd.core.remotes.docker.pusher.Pusher`, and the bearer/basic
:class:`~pycontainerd.core.remotes.docker.auth.Authorizer`.

Typical use::

    async with Resolver(hosts=configure_hosts("/etc/pycontainerd/certs.d"),
                        credentials=lambda host: ("user", "secret")) as resolver:
        name, desc = await resolver.resolve("docker.io/library/busybox:latest")
        fetcher = await resolver.fetcher(name)
        async with await fetcher.fetch(desc) as stream:
            async for chunk in stream: ...
"""

from pycontainerd.core.remotes.docker.auth import Authorizer, Challenge, parse_www_authenticate
from pycontainerd.core.remotes.docker.fetcher import BlobStream, Fetcher
from pycontainerd.core.remotes.docker.pusher import Pusher, PushResult
from pycontainerd.core.remotes.docker.resolver import Resolver

__all__ = [
    "Authorizer",
    "BlobStream",
    "Challenge",
    "Fetcher",
    "PushResult",
    "Pusher",
    "Resolver",
    "parse_www_authenticate",
]
