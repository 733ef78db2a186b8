"""hosts.toml directory configuration: endpoint order, capabilities, schemes, TLS, headers,
paths, defaults, and errors that name the file."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.remotes.hosts import (
    Capabilities,
    configure_hosts,
    host_paths,
    is_localhost,
    parse_hosts_file,
)


def write(root: Path, host_dir: str, text: str) -> Path:
    d = root / host_dir
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts.toml").write_text(text)
    return d


def test_mirrors_in_file_order_then_server(tmp_path: Path) -> None:
    write(
        tmp_path,
        "docker.io",
        """
server = "https://registry-1.docker.io"

[host."https://mirror-b.example.com"]
  capabilities = ["pull", "resolve"]

[host."http://mirror-a.example.com:5000"]
  capabilities = ["pull"]

[host."https://push.example.com/sub/path"]
  capabilities = ["push"]
""",
    )
    hosts = configure_hosts(str(tmp_path))("docker.io")
    assert [(h.scheme, h.host, h.path) for h in hosts] == [
        ("https", "mirror-b.example.com", "/v2"),
        ("http", "mirror-a.example.com:5000", "/v2"),
        ("https", "push.example.com", "/sub/path/v2"),
        ("https", "registry-1.docker.io", "/v2"),
    ]
    assert hosts[0].capabilities == Capabilities.PULL | Capabilities.RESOLVE
    assert hosts[1].capabilities == Capabilities.PULL
    assert hosts[2].capabilities == Capabilities.PUSH
    assert hosts[3].capabilities == Capabilities.ALL
    assert not hosts[1].has(Capabilities.RESOLVE)
    assert hosts[0].url("library/busybox", "manifests", "latest") == (
        "https://mirror-b.example.com/v2/library/busybox/manifests/latest"
    )


def test_no_server_means_the_registry_itself(tmp_path: Path) -> None:
    write(tmp_path, "quay.io", '[host."https://m.example.com"]\n')
    hosts = configure_hosts(str(tmp_path))("quay.io")
    assert [(h.scheme, h.host) for h in hosts] == [
        ("https", "m.example.com"),
        ("https", "quay.io"),
    ]


def test_docker_io_default_is_registry_1() -> None:
    hosts = configure_hosts()("docker.io")
    assert [(h.scheme, h.host, h.path) for h in hosts] == [("https", "registry-1.docker.io", "/v2")]
    assert hosts[0].capabilities == Capabilities.ALL


@pytest.mark.parametrize(
    ("host", "scheme", "fallback", "skip_verify"),
    [
        ("127.0.0.1:5000", "https", True, True),  # HTTPS first, plain HTTP fallback
        ("localhost:5000", "https", True, True),
        ("[::1]:5000", "https", True, True),
        ("localhost", "https", False, True),
        ("localhost:443", "https", False, True),
        ("127.0.0.1:80", "http", False, None),
        ("registry.example.com:5000", "https", False, None),
    ],
)
def test_defaults_without_config(
    host: str, scheme: str, fallback: bool, skip_verify: bool | None
) -> None:
    (h,) = configure_hosts()(host)
    assert (h.scheme, h.host, h.http_fallback, h.tls.skip_verify) == (
        scheme,
        host,
        fallback,
        skip_verify,
    )


def test_default_scheme_forces_plain_http() -> None:
    (h,) = configure_hosts(default_scheme="http")("127.0.0.1:5000")
    assert (h.scheme, h.http_fallback) == ("http", False)
    (h,) = configure_hosts(default_scheme="http")("registry.example.com")
    assert h.scheme == "http"
    with pytest.raises(errdefs.InvalidArgument):
        configure_hosts(default_scheme="ftp")


def test_host_port_directory_forms(tmp_path: Path) -> None:
    assert host_paths("/r", "h:5000") == ["/r/h_5000_", "/r/h:5000", "/r/_default"]
    write(tmp_path, "reg.example.com_5000_", 'server = "http://reg.example.com:5000"\n')
    (h,) = configure_hosts(str(tmp_path))("reg.example.com:5000")
    assert (h.scheme, h.host) == ("http", "reg.example.com:5000")


def test_default_directory_applies_to_unlisted_hosts(tmp_path: Path) -> None:
    write(tmp_path, "_default", '[host."https://catch-all.example.com"]\ncapabilities=["pull"]\n')
    write(tmp_path, "own.example.com", 'server = "https://own.example.com"\n')
    hosts = configure_hosts(str(tmp_path))("other.example.com")
    assert [h.host for h in hosts] == ["catch-all.example.com", "other.example.com"]
    hosts = configure_hosts(str(tmp_path))("own.example.com")
    assert [h.host for h in hosts] == ["own.example.com"]


def test_override_path_keeps_the_path(tmp_path: Path) -> None:
    write(
        tmp_path,
        "r.example.com",
        """
[host."https://proxy.example.com/custom/api"]
  override_path = true
[host."https://proxy2.example.com/prefix"]
[host."https://proxy3.example.com/already/v2/"]
""",
    )
    hosts = configure_hosts(str(tmp_path))("r.example.com")
    assert [h.path for h in hosts[:3]] == ["/custom/api", "/prefix/v2", "/already/v2"]
    assert hosts[0].override_path and not hosts[1].override_path
    assert hosts[0].url("repo", "manifests", "t") == (
        "https://proxy.example.com/custom/api/repo/manifests/t"
    )


def test_headers_single_and_repeated(tmp_path: Path) -> None:
    write(
        tmp_path,
        "r.example.com",
        """
server = "https://r.example.com"
[header]
  x-custom-1 = "v1"
  x-custom-2 = ["a", "b"]
""",
    )
    (h,) = configure_hosts(str(tmp_path))("r.example.com")
    assert h.headers == (("x-custom-1", "v1"), ("x-custom-2", "a"), ("x-custom-2", "b"))


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    return d / "cert.pem", d / "key.pem"


def test_tls_settings_ca_client_skip_verify(tmp_path: Path, cert_pair: tuple[Path, Path]) -> None:
    cert, key = cert_pair
    d = write(
        tmp_path,
        "secure.example.com",
        f"""
server = "https://secure.example.com"
ca = "ca.pem"
client = [["{cert}", "{key}"]]

[host."https://insecure.example.com"]
  skip_verify = true

[host."https://cas.example.com"]
  ca = ["{cert}", "ca.pem"]
  client = "combined.pem"
""",
    )
    (d / "ca.pem").write_bytes(cert.read_bytes())
    (d / "combined.pem").write_bytes(cert.read_bytes() + key.read_bytes())
    insecure, cas, server = configure_hosts(str(tmp_path))("secure.example.com")
    assert insecure.tls.skip_verify is True
    assert insecure.ssl_context is not None
    assert insecure.ssl_context.verify_mode == ssl.CERT_NONE
    assert cas.tls.ca == (str(cert), str(d / "ca.pem"))
    assert cas.tls.client == ((str(d / "combined.pem"), ""),)
    assert server.tls.ca == (str(d / "ca.pem"),)
    assert server.tls.client == ((str(cert), str(key)),)
    assert server.ssl_context is not None
    assert server.ssl_context.verify_mode == ssl.CERT_REQUIRED


def test_http_host_with_tls_settings_tries_https_first(tmp_path: Path) -> None:
    write(tmp_path, "r.example.com", 'server = "http://r.example.com:5000"\nskip_verify = true\n')
    (h,) = configure_hosts(str(tmp_path))("r.example.com")
    assert (h.scheme, h.http_fallback) == ("https", True)


def test_docker_style_cert_directory(tmp_path: Path, cert_pair: tuple[Path, Path]) -> None:
    cert, key = cert_pair
    d = tmp_path / "r.example.com"
    d.mkdir()
    (d / "ca.crt").write_bytes(cert.read_bytes())
    (d / "client.cert").write_bytes(cert.read_bytes())
    (d / "client.key").write_bytes(key.read_bytes())
    (h,) = configure_hosts(str(tmp_path))("r.example.com")
    assert h.tls.ca == (str(d / "ca.crt"),)
    assert h.tls.client == ((str(d / "client.cert"), str(d / "client.key")),)
    assert (h.scheme, h.host) == ("https", "r.example.com")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("server = ", "failed to decode"),
        ('[host."https://m"]\ncapabilities = ["pull", "fly"]\n', "unknown capability 'fly'"),
        ('server = "ftp://x"\n', "unsupported scheme"),
        ('[host."https://m"]\nskip_verify = "yes"\n', "skip_verify must be a boolean"),
        ("ca = 5\n", "'ca'"),
        ('client = [["only-one"]]\n', "invalid client entry"),
        ("[header]\nx = 1\n", "header x"),
        ("server = 3\n", "server must be a string"),
        ('host = "x"\n', "'host' must be a table"),
        ('dial_timeout = "soon"\n', "dial_timeout"),
    ],
)
def test_malformed_files_are_invalid_argument_naming_the_file(
    tmp_path: Path, text: str, match: str
) -> None:
    write(tmp_path, "bad.example.com", text)
    with pytest.raises(errdefs.InvalidArgument, match=match) as info:
        configure_hosts(str(tmp_path))("bad.example.com")
    assert str(tmp_path / "bad.example.com" / "hosts.toml") in str(info.value)


def test_missing_ca_file_names_it(tmp_path: Path) -> None:
    write(tmp_path, "r.example.com", 'ca = "nope.pem"\n')
    with pytest.raises(errdefs.InvalidArgument, match="nope.pem"):
        configure_hosts(str(tmp_path))("r.example.com")


def test_dial_timeout_parsed() -> None:
    (h,) = [c for c in parse_hosts_file('server = "https://x"\ndial_timeout = "1.5s"\n', "/b", "f")]
    assert h.dial_timeout == 1.5


def test_is_localhost() -> None:
    assert is_localhost("localhost:5000")
    assert is_localhost("127.0.0.2")
    assert is_localhost("[::1]:80")
    assert not is_localhost("registry.example.com:5000")
    assert not is_localhost("10.0.0.1:5000")
