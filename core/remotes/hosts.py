"""Per-registry host configuration in containerd's ``hosts.toml`` directory format.

Layout under a ``config_path`` directory (containerd's ``docs/hosts.md``)::

    <config_path>/<host>/hosts.toml          e.g. docker.io/, 127.0.0.1:5000/
    <config_path>/<host>_<port>_/hosts.toml  the same, for file systems without ':'
    <config_path>/_default/hosts.toml        for hosts without a directory of their own

A file lists mirrors as ``[host."<url>"]`` tables, tried in the order they appear, then the
upstream ``server`` (or the registry itself when there is no ``server``)::

    server = "https://registry-1.docker.io"
    [host."http://127.0.0.1:5000"]
      capabilities = ["pull", "resolve"]
      skip_verify = true
      ca = ["ca.pem"]                   # relative to the host directory
      client = [["cert.pem", "key.pem"]]
      header = { x-custom = ["a", "b"] }
      override_path = true              # the URL path is the API root as given (no /v2)

A host directory without ``hosts.toml`` may hold docker-style certificates: ``*.crt`` (CAs),
``*.cert`` + ``*.key`` (client pairs).

:func:`configure_hosts` turns this into a function from a registry host name (``docker.io``,
``127.0.0.1:5000``) to an ordered list of :class:`RegistryHost`. It reads files and builds TLS
contexts, so callers on the event loop run it in a thread (the resolver does).
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import os
import posixpath
import ssl
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs

log = logging.getLogger(__name__)

HOSTS_FILE = "hosts.toml"
DEFAULT_DIR = "_default"
DOCKER_HUB = "docker.io"
DOCKER_HUB_HOST = "registry-1.docker.io"


class Capabilities(enum.Flag):
    """What a host may be used for (containerd's HostCapabilities)."""

    NONE = 0
    PULL = enum.auto()
    RESOLVE = enum.auto()
    PUSH = enum.auto()
    REFERRERS = enum.auto()
    ALL = PULL | RESOLVE | PUSH | REFERRERS


_CAPABILITY_NAMES = {
    "pull": Capabilities.PULL,
    "resolve": Capabilities.RESOLVE,
    "push": Capabilities.PUSH,
    "referrers": Capabilities.REFERRERS,
}


@attrs.frozen(kw_only=True)
class TLSSettings:
    """Explicit TLS settings of a host; all empty means the system defaults."""

    skip_verify: bool | None = None
    #: CA certificate files (absolute paths)
    ca: tuple[str, ...] = ()
    #: (certificate, key) file pairs; key "" means the key is in the certificate file
    client: tuple[tuple[str, str], ...] = ()

    @property
    def explicit(self) -> bool:
        return self.skip_verify is not None or bool(self.ca) or bool(self.client)


@attrs.frozen(kw_only=True)
class RegistryHost:
    """One endpoint to try for a registry, in order."""

    scheme: str
    #: ``host[:port]`` of the endpoint
    host: str
    #: API root path, normally ``/v2``
    path: str = "/v2"
    capabilities: Capabilities = Capabilities.ALL
    tls: TLSSettings = TLSSettings()
    #: extra request headers (name, value), repeated names allowed
    headers: tuple[tuple[str, str], ...] = ()
    override_path: bool = False
    #: seconds, or None for the client default
    dial_timeout: float | None = None
    #: try HTTPS first and fall back to plain HTTP when the server speaks HTTP
    #: (containerd does this for http hosts that also carry TLS settings, e.g. localhost)
    http_fallback: bool = False
    #: built from ``tls`` when it is explicit; None means the default verification
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, eq=False, repr=False)

    def has(self, caps: Capabilities) -> bool:
        return (self.capabilities & caps) == caps

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"

    def url(self, *parts: str) -> str:
        """``base_url`` joined with path parts (each already escaped as needed); a trailing
        slash on the last part is kept (``blobs/uploads/`` is not ``blobs/uploads``)."""
        parts = tuple(p for p in parts if p)
        out = "/".join([self.base_url.rstrip("/"), *(p.strip("/") for p in parts)])
        return out + "/" if parts and parts[-1].endswith("/") else out


#: host name -> ordered endpoints
RegistryHosts = Callable[[str], list[RegistryHost]]


@attrs.define(kw_only=True)
class _HostConfig:
    scheme: str = ""
    host: str = ""
    path: str = ""
    capabilities: Capabilities = Capabilities.ALL
    tls: TLSSettings = TLSSettings()
    headers: tuple[tuple[str, str], ...] = ()
    override_path: bool = False
    dial_timeout: float | None = None


def is_localhost(host: str) -> bool:
    """True for ``localhost`` and loopback addresses, with or without a port."""
    name = _split_host_port(host)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _split_host_port(host: str) -> tuple[str, str]:
    if host.startswith("["):
        end = host.find("]")
        if end != -1:
            rest = host[end + 1 :]
            return host[1:end], rest[1:] if rest.startswith(":") else ""
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        return name, port
    return host, ""


def host_directory(host: str) -> str:
    """``host:port`` -> ``host_port_`` (the colon-free directory name containerd accepts)."""
    idx = host.rfind(":")
    if idx > 0:
        return f"{host[:idx]}_{host[idx + 1 :]}_"
    return host


def host_paths(root: str, host: str) -> list[str]:
    """Directories to look in for ``host``, in order of preference."""
    out = []
    alt = host_directory(host)
    if alt != host:
        out.append(os.path.join(root, alt))
    out += [os.path.join(root, host), os.path.join(root, DEFAULT_DIR)]
    return out


def host_dir_from_root(root: str) -> Callable[[str], str | None]:
    """A function from host name to its configuration directory under ``root`` (None when
    there is none, not even ``_default``)."""

    def find(host: str) -> str | None:
        for p in host_paths(root, host):
            if os.path.isdir(p):
                return p
        return None

    return find


def _abs(path: str, base: str) -> str:
    return path if os.path.isabs(path) else os.path.join(base, path)


def _strings(value: Any, what: str, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise errdefs.InvalidArgument(f"{where}: invalid value for {what!r}: want a string or list")


def _parse_host(server: str, cfg: Mapping[str, Any], base_dir: str, where: str) -> _HostConfig:
    known = {
        "capabilities",
        "ca",
        "client",
        "skip_verify",
        "header",
        "override_path",
        "dial_timeout",
    }
    for key in cfg:
        if key not in known and key not in ("server", "host"):
            log.warning("%s: unknown key %r ignored", where, key)
    out = _HostConfig()
    override = cfg.get("override_path", False)
    if not isinstance(override, bool):
        raise errdefs.InvalidArgument(f"{where}: override_path must be a boolean")
    out.override_path = override
    if server:
        if not server.startswith(("http://", "https://")):
            if "://" in server:
                raise errdefs.InvalidArgument(
                    f"{where}: unsupported scheme in {server!r}: want http or https"
                )
            server = "https://" + server
        u = urllib.parse.urlsplit(server)
        if not u.netloc:
            raise errdefs.InvalidArgument(f"{where}: invalid server address {server!r}")
        out.scheme, out.host = u.scheme, u.netloc
        path = u.path
        if path and path != "/":
            path = posixpath.normpath(path)
            if not path.endswith("/v2") and not override:
                path += "/v2"
        elif not override:
            path = "/v2"
        else:
            path = ""
        out.path = path
    caps = cfg.get("capabilities")
    if caps is not None:
        out.capabilities = Capabilities.NONE
        for c in _strings(caps, "capabilities", where):
            flag = _CAPABILITY_NAMES.get(c.lower())
            if flag is None:
                raise errdefs.InvalidArgument(f"{where}: unknown capability {c!r}")
            out.capabilities |= flag
    skip = cfg.get("skip_verify")
    if skip is not None and not isinstance(skip, bool):
        raise errdefs.InvalidArgument(f"{where}: skip_verify must be a boolean")
    ca: tuple[str, ...] = ()
    if cfg.get("ca") is not None:
        ca = tuple(_abs(p, base_dir) for p in _strings(cfg["ca"], "ca", where))
    client: list[tuple[str, str]] = []
    raw_client = cfg.get("client")
    if raw_client is not None:
        entries = [raw_client] if isinstance(raw_client, str) else raw_client
        if not isinstance(entries, list):
            raise errdefs.InvalidArgument(f"{where}: invalid value for 'client'")
        for entry in entries:
            if isinstance(entry, str):
                client.append((_abs(entry, base_dir), ""))
            elif (
                isinstance(entry, list)
                and len(entry) == 2
                and all(isinstance(x, str) for x in entry)
            ):
                client.append((_abs(entry[0], base_dir), _abs(entry[1], base_dir)))
            else:
                raise errdefs.InvalidArgument(
                    f"{where}: invalid client entry {entry!r}: want a path or [cert, key]"
                )
    out.tls = TLSSettings(skip_verify=skip, ca=ca, client=tuple(client))
    header = cfg.get("header")
    if header is not None:
        if not isinstance(header, dict):
            raise errdefs.InvalidArgument(f"{where}: header must be a table")
        pairs = []
        for name, value in header.items():
            for v in _strings(value, f"header {name}", where):
                pairs.append((str(name), v))
        out.headers = tuple(pairs)
    dial = cfg.get("dial_timeout")
    if dial is not None:
        from pycontainerd.core import durations

        try:
            out.dial_timeout = durations.parse(str(dial))
        except Exception as exc:
            raise errdefs.InvalidArgument(
                f"{where}: invalid dial_timeout {dial!r}: {exc}"
            ) from None
    return out


def parse_hosts_file(
    data: str | bytes, base_dir: str, filename: str = HOSTS_FILE
) -> list[_HostConfig]:
    """Parse a ``hosts.toml``: mirrors in file order, then the ``server`` entry (whose host
    is empty when the file names no server). InvalidArgument naming ``filename`` when the file
    is malformed."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise errdefs.InvalidArgument(f"failed to decode {filename}: {exc}") from None
    try:
        doc = tomllib.loads(data)
    except tomllib.TOMLDecodeError as exc:
        raise errdefs.InvalidArgument(f"failed to decode {filename}: {exc}") from None
    out: list[_HostConfig] = []
    hosts = doc.get("host", {})
    if not isinstance(hosts, dict):
        raise errdefs.InvalidArgument(f"{filename}: 'host' must be a table of tables")
    for name, cfg in hosts.items():
        if not isinstance(cfg, dict):
            raise errdefs.InvalidArgument(f"{filename}: host {name!r} must be a table")
        out.append(_parse_host(name, cfg, base_dir, f"{filename}: host {name!r}"))
    server = doc.get("server", "")
    if not isinstance(server, str):
        raise errdefs.InvalidArgument(f"{filename}: server must be a string")
    out.append(_parse_host(server, doc, base_dir, filename))
    return out


def _load_cert_files(directory: str) -> list[_HostConfig]:
    ca: list[str] = []
    client: list[tuple[str, str]] = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        names = []
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            continue
        if name.endswith(".crt"):
            ca.append(path)
        elif name.endswith(".cert"):
            key = os.path.join(directory, name[: -len(".cert")] + ".key")
            client.append((path, key if os.path.exists(key) else ""))
    tls = TLSSettings(ca=tuple(ca), client=tuple(client)) if (ca or client) else TLSSettings()
    return [_HostConfig(tls=tls)]


def load_host_dir(directory: str) -> list[_HostConfig]:
    """The host configs of one directory: its ``hosts.toml`` or, without one, its
    certificate files."""
    path = os.path.join(directory, HOSTS_FILE)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = b""
    if not data:
        return _load_cert_files(directory)
    return parse_hosts_file(data, directory, path)


def build_ssl_context(tls: TLSSettings, *, where: str = "") -> ssl.SSLContext:
    """An SSL context with the system CAs plus ``tls.ca``, client pairs loaded, and
    verification off when ``skip_verify``. InvalidArgument naming an unreadable file."""
    ctx = ssl.create_default_context()
    prefix = f"{where}: " if where else ""
    for ca in tls.ca:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise errdefs.InvalidArgument(f"{prefix}unable to load CA cert {ca!r}: {exc}") from None
    for cert, key in tls.client:
        try:
            ctx.load_cert_chain(cert, key or None)
        except (OSError, ssl.SSLError) as exc:
            raise errdefs.InvalidArgument(
                f"{prefix}unable to load client certificate {cert!r}: {exc}"
            ) from None
    if tls.skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def configure_hosts(
    config_path: str | None = None,
    *,
    default_scheme: str = "",
    host_dir: Callable[[str], str | None] | None = None,
) -> RegistryHosts:
    """A :data:`RegistryHosts` reading ``config_path`` (or ``host_dir``) on every call.

    Without configuration a registry is its own single endpoint: HTTPS, except for
    ``localhost``/loopback hosts with a port other than 443, which are tried over HTTPS with
    verification off and fall back to plain HTTP (as containerd); ``docker.io`` is
    ``registry-1.docker.io``. ``default_scheme`` ("http") forces the scheme of that default
    endpoint (``--plain-http``)."""
    if default_scheme not in ("", "http", "https"):
        raise errdefs.InvalidArgument(f"invalid default scheme {default_scheme!r}")
    finder = host_dir
    if finder is None and config_path:
        finder = host_dir_from_root(config_path)

    def hosts(host: str) -> list[RegistryHost]:
        configs: list[_HostConfig] = []
        directory = finder(host) if finder is not None else None
        if directory:
            log.debug("loading host directory %s for %s", directory, host)
            configs = load_host_dir(directory)
        if not configs:
            configs = [_HostConfig()]
        last = configs[-1]
        if not last.host:
            last.path = "" if last.override_path else "/v2"
            if host == DOCKER_HUB:
                last.scheme, last.host = "https", DOCKER_HUB_HOST
            elif is_localhost(host):
                last.host = host
                if default_scheme:
                    last.scheme = default_scheme
                else:
                    port = _split_host_port(host)[1]
                    last.scheme = "https" if port in ("", "443") else "http"
                    if port != "80" and last.tls.skip_verify is None:
                        last.tls = attrs.evolve(last.tls, skip_verify=True)
            else:
                last.host = host
                last.scheme = default_scheme or "https"
        out = []
        for cfg in configs:
            scheme, fallback = cfg.scheme, False
            if scheme == "http" and cfg.tls.explicit and _split_host_port(cfg.host)[1] != "80":
                scheme, fallback = "https", True
            ctx = None
            if cfg.tls.explicit:
                ctx = build_ssl_context(cfg.tls, where=directory or host)
            out.append(
                RegistryHost(
                    scheme=scheme,
                    host=cfg.host,
                    path=cfg.path,
                    capabilities=cfg.capabilities,
                    tls=cfg.tls,
                    headers=cfg.headers,
                    override_path=cfg.override_path,
                    dial_timeout=cfg.dial_timeout,
                    http_fallback=fallback,
                    ssl_context=ctx,
                )
            )
        return out

    return hosts


def static_hosts(hosts: Sequence[RegistryHost]) -> RegistryHosts:
    """The same endpoints for every registry (tests, and callers that know the endpoints)."""
    return lambda _host: list(hosts)
