"""A real OCI registry for tests: Debian's ``docker-registry`` (distribution 2.8) on loopback.

- :class:`Registry` writes a config (filesystem storage in a work dir, ``127.0.0.1:<free port>``,
  optional htpasswd basic auth or token auth), starts ``docker-registry serve``, waits until
  ``/v2/`` answers, and stops it. Its access log (Apache combined format) goes to a file that
  :meth:`Registry.access_log` parses, so tests can count requests and bytes served.
- :class:`TokenServer`: a token realm (RS256 JWTs signed with ``openssl``, certificate chain in
  the ``x5c`` header) for ``auth="token"``.
- :class:`RegistryClient`: a small OCI distribution client on ``http.client`` (basic and bearer
  auth), with :meth:`~RegistryClient.push_image` / :func:`push_layout` (blobs by monolithic
  POST+PUT upload, manifests by PUT) and fetch helpers.

No pytest import here; fixtures live in tests/conftest.py.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import http.server
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import images

log = logging.getLogger(__name__)

REGISTRY_BINARY = "/usr/bin/docker-registry"
MANIFEST_ACCEPT = ", ".join(
    [
        images.MT_OCI_INDEX,
        images.MT_OCI_MANIFEST,
        images.MT_DOCKER_MANIFEST_LIST,
        images.MT_DOCKER_MANIFEST,
    ]
)


class RegistryError(RuntimeError):
    pass


class HtpasswdUnavailable(RuntimeError):
    """No way to make a bcrypt htpasswd entry on this host (no bcrypt, crypt or htpasswd)."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the registry if the test process dies without stopping it."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def registry_binary() -> str | None:
    """The docker-registry binary, or None when it is not installed."""
    if os.access(REGISTRY_BINARY, os.X_OK):
        return REGISTRY_BINARY
    return shutil.which("docker-registry")


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for an htpasswd file (distribution accepts only bcrypt).

    Tries the ``bcrypt`` module, then the stdlib ``crypt`` module (glibc's libxcrypt does
    bcrypt on Debian 12; the module exists up to Python 3.12), then ``htpasswd -B``.
    """
    try:
        import bcrypt  # type: ignore[import-not-found]

        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    except ImportError:
        pass
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # type: ignore[import-not-found]

        if crypt.METHOD_BLOWFISH in crypt.methods:
            h = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 5))
            if h and h.startswith("$2"):
                return str(h)
    except ImportError:
        pass
    htpasswd = shutil.which("htpasswd")
    if htpasswd:
        out = subprocess.run(
            [htpasswd, "-nbB", "-C", "5", "u", password],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return out.split(":", 1)[1]
    raise HtpasswdUnavailable(
        "no bcrypt implementation: install the 'bcrypt' package or apache2-utils"
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@attrs.define(eq=False)
class AccessLogEntry:
    method: str
    path: str
    status: int
    size: int
    user: str
    user_agent: str


_ACCESS_RE = re.compile(
    r'^(?P<ip>\S+) \S+ (?P<user>\S+) \[[^\]]+\] "(?P<method>\S+) (?P<path>\S+) [^"]*" '
    r'(?P<status>\d{3}) (?P<size>\d+|-) "[^"]*" "(?P<ua>[^"]*)"'
)


# --- token auth -------------------------------------------------------------------------------


@attrs.define(eq=False)
class TokenServer:
    """A token realm for distribution's token auth. Grants what the scope asks to a client that
    presents the right basic credentials; refuses others with 401. Counts requests."""

    workdir: Path
    username: str
    password: str
    service: str = "pycontainerd-test-registry"
    issuer: str = "pycontainerd-test-issuer"
    #: bearer token lifetime in seconds
    expires_in: int = 300
    port: int = 0
    requests: list[dict[str, Any]] = attrs.Factory(list)
    _server: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _x5c: str = ""

    @property
    def cert_path(self) -> Path:
        return self.workdir / "token-cert.pem"

    @property
    def key_path(self) -> Path:
        return self.workdir / "token-key.pem"

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=pycontainerd-test-token",
                "-keyout",
                str(self.key_path),
                "-out",
                str(self.cert_path),
            ],
            check=True,
            capture_output=True,
        )
        pem = self.cert_path.read_text()
        body = pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
        self._x5c = "".join(body.split())
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("token server: " + fmt, *args)

            def do_GET(self) -> None:
                owner._handle(self)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="token-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def sign(self, subject: str, access: Sequence[Mapping[str, Any]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": list(access),
        }
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key_path)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return signing_input + "." + _b64url(sig)

    def _handle(self, req: http.server.BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(req.path)
        query = urllib.parse.parse_qs(url.query)
        user = ""
        auth = req.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            ok = user == self.username and pw == self.password
        else:
            ok = False
        self.requests.append({"path": url.path, "query": query, "user": user, "ok": ok})
        if url.path != "/token" or not ok:
            req.send_response(401 if url.path == "/token" else 404)
            req.send_header("WWW-Authenticate", 'Basic realm="token"')
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        access = []
        for scope in query.get("scope", []):
            for one in scope.split(" "):
                parts = one.split(":")
                if len(parts) >= 3:
                    access.append(
                        {
                            "type": parts[0],
                            "name": ":".join(parts[1:-1]),
                            "actions": parts[-1].split(","),
                        }
                    )
        token = self.sign(user, access)
        body = json.dumps(
            {"token": token, "access_token": token, "expires_in": self.expires_in}
        ).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)


# --- the registry -------------------------------------------------------------------------------


@attrs.define(eq=False)
class Registry:
    """``docker-registry serve`` on 127.0.0.1. ``auth``: ``"none"``, ``"basic"`` (htpasswd)
    or ``"token"`` (a :class:`TokenServer` realm; the token server checks the credentials)."""

    workdir: Path = attrs.field(converter=Path)
    auth: str = attrs.field(
        default="none", validator=attrs.validators.in_(("none", "basic", "token"))
    )
    username: str = "testuser"
    password: str = "testpassword"
    port: int = 0
    binary: str = ""
    proc: subprocess.Popen[bytes] | None = None
    token_server: TokenServer | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: the registry host part of image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def storage_dir(self) -> Path:
        return self.workdir / "storage"

    @property
    def access_log_path(self) -> Path:
        return self.workdir / "access.log"

    @property
    def log_path(self) -> Path:
        return self.workdir / "registry.log"

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yml"

    def ref(self, repository: str, tag: str = "latest") -> str:
        """``127.0.0.1:<port>/<repository>:<tag>``."""
        return f"{self.host}/{repository}:{tag}"

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  formatter: text",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage_dir}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            f"  secret: {uuid.uuid4().hex}",
        ]
        if self.auth == "basic":
            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text(f"{self.username}:{bcrypt_hash(self.password)}\n")
            lines += [
                "auth:",
                "  htpasswd:",
                "    realm: pycontainerd-test",
                f"    path: {htpasswd}",
            ]
        elif self.auth == "token":
            assert self.token_server is not None
            ts = self.token_server
            lines += [
                "auth:",
                "  token:",
                f"    realm: {ts.realm}",
                f"    service: {ts.service}",
                f"    issuer: {ts.issuer}",
                f"    rootcertbundle: {ts.cert_path}",
            ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 20.0) -> Registry:
        self.binary = self.binary or registry_binary() or ""
        if not self.binary:
            raise RegistryError("docker-registry is not installed (Debian package docker-registry)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage_dir.mkdir(exist_ok=True)
        if self.auth == "token" and self.token_server is None:
            self.token_server = TokenServer(
                self.workdir / "token", username=self.username, password=self.password
            )
            self.token_server.start()
        last_error = ""
        for _attempt in range(3):
            if not self.port or _attempt:
                self.port = free_port()
            self.config_path.write_text(self._config())
            with self.access_log_path.open("ab") as out, self.log_path.open("ab") as err:
                self.proc = subprocess.Popen(
                    [self.binary, "serve", str(self.config_path)],
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    cwd=self.workdir,
                    preexec_fn=_die_with_parent,
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                with contextlib.suppress(OSError, http.client.HTTPException):
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                    try:
                        conn.request("GET", "/v2/")
                        status = conn.getresponse().status
                    finally:
                        conn.close()
                    if status in (200, 401):
                        log.info("registry %s started (auth=%s)", self.url, self.auth)
                        return self
                time.sleep(0.05)
            last_error = self.log_tail()
            self._kill()
        raise RegistryError(f"docker-registry did not start on {self.url}: {last_error}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        self._kill()
        if self.token_server is not None:
            self.token_server.stop()

    def __enter__(self) -> Registry:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def access_log(self) -> list[AccessLogEntry]:
        """Parsed access-log lines so far (one per completed request)."""
        out: list[AccessLogEntry] = []
        try:
            text = self.access_log_path.read_text(errors="replace")
        except OSError:
            return out
        for line in text.splitlines():
            m = _ACCESS_RE.match(line)
            if m:
                out.append(
                    AccessLogEntry(
                        method=m["method"],
                        path=m["path"],
                        status=int(m["status"]),
                        size=0 if m["size"] == "-" else int(m["size"]),
                        user=m["user"],
                        user_agent=m["ua"],
                    )
                )
        return out

    def wait_for_log(
        self, predicate: Callable[[list[AccessLogEntry]], bool], timeout: float = 5.0
    ) -> list[AccessLogEntry]:
        """Poll the access log until ``predicate(entries)`` holds. The registry writes a line
        after the response is sent, so a client may see the response before its line."""
        deadline = time.monotonic() + timeout
        while True:
            entries = self.access_log()
            if predicate(entries) or time.monotonic() > deadline:
                return entries
            time.sleep(0.02)

    def blob_bytes_served(self) -> int:
        """Bytes of blob bodies the registry sent (successful ``GET .../blobs/...``)."""
        return sum(
            e.size
            for e in self.access_log()
            if e.method == "GET" and "/blobs/sha256:" in e.path and e.status in (200, 206)
        )

    def client(self, username: str | None = None, password: str | None = None) -> RegistryClient:
        """A client; with auth, it uses this registry's credentials unless given others."""
        if self.auth != "none":
            username = self.username if username is None else username
            password = self.password if password is None else password
        return RegistryClient(host=self.host, username=username, password=password)

    def push(
        self, image: images.Image, repository: str | None = None, tag: str | None = None
    ) -> images.Descriptor:
        """Push an image built by :mod:`images` (see :meth:`RegistryClient.push_image`)."""
        return self.client().push_image(image, repository=repository, tag=tag)


def repository_of(name: str) -> str:
    """The registry path of an image name: ``docker.io/library/busybox:latest`` ->
    ``library/busybox``."""
    repo = images.ref_repository(name)
    first, _, rest = repo.partition("/")
    return rest if ("." in first or ":" in first or first == "localhost") and rest else repo


# --- a small distribution client ----------------------------------------------------------------


@attrs.define(eq=False)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return ""


@attrs.define(eq=False)
class RegistryClient:
    host: str
    username: str | None = None
    password: str | None = None
    _tokens: dict[str, str] = attrs.Factory(dict)

    def _basic(self) -> str:
        raw = f"{self.username or ''}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _raw(
        self, method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> Response:
        u = urllib.parse.urlsplit(url if "://" in url else f"http://{self.host}{url}")
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        try:
            path = u.path + (("?" + u.query) if u.query else "")
            conn.request(method, path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            data = resp.read()
            return Response(status=resp.status, headers=dict(resp.getheaders()), body=data)
        finally:
            conn.close()

    def _token(self, challenge: str) -> str | None:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm")
        key = params.get("scope", "")
        if key in self._tokens:
            return self._tokens[key]
        q = urllib.parse.urlencode({k: v for k, v in params.items() if k in ("service", "scope")})
        headers = {"Authorization": self._basic()} if self.username is not None else {}
        r = self._raw("GET", realm + "?" + q, headers=headers)
        if r.status != 200:
            log.debug("token request to %s refused: %s", realm, r.status)
            return None
        doc = json.loads(r.body)
        token = doc.get("token") or doc["access_token"]
        self._tokens[key] = token
        return str(token)

    def request(
        self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> Response:
        """One request, answering a 401 challenge (Basic or Bearer) once. ``body`` may be bytes
        or a file object (give Content-Length then)."""
        hdrs = dict(headers or {})
        resp = self._raw(method, path, body, hdrs)
        if resp.status != 401:
            return resp
        challenge = resp.header("WWW-Authenticate")
        if challenge.startswith("Bearer "):
            token = self._token(challenge)
            if token is None:
                return resp
            hdrs["Authorization"] = "Bearer " + token
        elif self.username is not None:
            hdrs["Authorization"] = self._basic()
        else:
            return resp
        if hasattr(body, "seek"):
            body.seek(0)
        return self._raw(method, path, body, hdrs)

    # -- blobs --

    def blob_exists(self, repository: str, digest: str) -> bool:
        return self.request("HEAD", f"/v2/{repository}/blobs/{digest}").status == 200

    def push_blob(self, repository: str, digest: str, source: bytes | Path) -> None:
        """Monolithic upload: ``POST .../blobs/uploads/`` then ``PUT <location>&digest=``."""
        r = self.request(
            "POST", f"/v2/{repository}/blobs/uploads/", headers={"Content-Length": "0"}
        )
        if r.status != 202:
            raise RegistryError(f"start upload of {digest} to {repository}: {r.status} {r.body!r}")
        location = r.header("Location")
        sep = "&" if "?" in location else "?"
        url = f"{location}{sep}digest={urllib.parse.quote(digest)}"
        if isinstance(source, Path):
            size = source.stat().st_size
            with source.open("rb") as f:
                r = self.request(
                    "PUT",
                    url,
                    body=f,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(size),
                    },
                )
        else:
            r = self.request(
                "PUT",
                url,
                body=source,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(len(source)),
                },
            )
        if r.status != 201:
            raise RegistryError(f"upload of {digest} to {repository}: {r.status} {r.body!r}")

    def get_blob(self, repository: str, digest: str) -> Response:
        r = self.request("GET", f"/v2/{repository}/blobs/{digest}")
        if r.status in (301, 302, 307):
            r = self._raw("GET", r.header("Location"))
        return r

    # -- manifests --

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        r = self.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            body=data,
            headers={"Content-Type": media_type, "Content-Length": str(len(data))},
        )
        if r.status != 201:
            raise RegistryError(
                f"put manifest {repository}:{reference}: {r.status} {r.body[:500]!r}"
            )
        return r.header("Docker-Content-Digest")

    def get_manifest(
        self, repository: str, reference: str, accept: str = MANIFEST_ACCEPT, method: str = "GET"
    ) -> Response:
        return self.request(
            method, f"/v2/{repository}/manifests/{reference}", headers={"Accept": accept}
        )

    def tags(self, repository: str) -> list[str]:
        r = self.request("GET", f"/v2/{repository}/tags/list")
        if r.status != 200:
            raise RegistryError(f"list tags of {repository}: {r.status}")
        return list(json.loads(r.body).get("tags") or [])

    # -- images --

    def push_image(
        self, image: images.Image, repository: str | None = None, tag: str | None = None
    ) -> images.Descriptor:
        """Push every blob of ``image`` (skipping ones present), child manifests by digest, then
        the target under ``tag``. Defaults: the image's own repository path and tag."""
        repository = repository or repository_of(image.name)
        tag = tag or image.tag
        for desc in image.blobs():
            if desc.digest == image.target.digest:
                continue
            if desc.media_type in (
                images.MT_OCI_MANIFEST,
                images.MT_DOCKER_MANIFEST,
                images.MT_OCI_INDEX,
                images.MT_DOCKER_MANIFEST_LIST,
            ):
                self.put_manifest(repository, desc.digest, image.blob(desc.digest), desc.media_type)
            elif not self.blob_exists(repository, desc.digest):
                self.push_blob(repository, desc.digest, image.blob_path(desc.digest))
        got = self.put_manifest(
            repository, tag, image.blob(image.target.digest), image.target.media_type
        )
        if got and got != image.target.digest:
            raise RegistryError(f"registry stored {got}, expected {image.target.digest}")
        return image.target


def _layout_images(layout_dir: Path) -> Iterator[images.Image]:
    index = json.loads((layout_dir / "index.json").read_text())
    for entry in index.get("manifests", []):
        desc = images.Descriptor.from_json(entry)
        ann = desc.annotations
        name = ann.get(images.ANNOTATION_IMAGE_NAME) or ann.get(images.ANNOTATION_REF_NAME)
        if not name:
            continue
        yield images.Image(
            name=images.normalize_name(name),
            layout=layout_dir,
            target=desc,
            manifest=desc,
            config=desc,
            layers=(),
        )


def push_layout(
    client: RegistryClient, layout_dir: str | os.PathLike[str], repository: str | None = None
) -> list[images.Descriptor]:
    """Push every named image of an OCI layout (``index.json`` entries with an
    ``io.containerd.image.name`` or ref.name annotation); returns the pushed targets."""
    return [
        client.push_image(img, repository=repository) for img in _layout_images(Path(layout_dir))
    ]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
