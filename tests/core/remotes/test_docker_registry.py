"""The registry client against a real docker-registry (distribution 2.8) on 127.0.0.1:
push, resolve by tag and digest, fetch into a LocalStore, platform selection, basic and token
auth, Range resume, corrupted blobs, mirrors from hosts.toml."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import attrs
import images
import pytest
import registry as registry_support
from aiohttp import web

from pycontainerd.core import errdefs, platforms
from pycontainerd.core.content import Descriptor, digests
from pycontainerd.core.remotes import handlers
from pycontainerd.core.remotes.docker import PushResult, Resolver
from pycontainerd.core.remotes.hosts import configure_hosts
from pycontainerd.plugins.content.local import LocalStore

pytestmark = pytest.mark.integration


def desc_of(d: images.Descriptor) -> Descriptor:
    return Descriptor.from_dict(d.to_json())


async def push_with_pusher(
    resolver: Resolver,
    image: images.Image,
    ref: str,
    *,
    chunk_size: int = 0,
    mount_from: tuple[str, ...] = (),
) -> dict[str, PushResult]:
    """Push every blob of a layout image with our Pusher (children first), the root by tag."""
    pusher = await resolver.pusher(ref)
    tag = ref.rsplit(":", 1)[1]
    results = {}
    for d in image.blobs():
        desc = desc_of(d)
        path = image.blob_path(d.digest)

        def source(path: Path = path) -> AsyncIterator[bytes]:
            async def gen() -> AsyncIterator[bytes]:
                with path.open("rb") as f:
                    while chunk := await asyncio.to_thread(f.read, 256 << 10):
                        yield chunk

            return gen()

        results[d.digest] = await pusher.push(
            desc,
            source,
            tag=tag if d.digest == image.target.digest else None,
            chunk_size=chunk_size,
            mount_from=mount_from,
        )
    return results


@pytest.fixture
async def store(tmp_path: Path) -> LocalStore:
    return await LocalStore.open(str(tmp_path / "content"))


@pytest.fixture
async def resolver() -> AsyncIterator[Resolver]:
    async with Resolver() as r:
        yield r


async def test_push_then_resolve_by_tag_and_digest_and_fetch_into_store(
    registry: registry_support.Registry,
    busybox: images.Image,
    resolver: Resolver,
    store: LocalStore,
) -> None:
    ref = registry.ref("pushed/busybox", "v1")
    results = await push_with_pusher(resolver, busybox, ref)
    assert set(results.values()) == {PushResult.UPLOADED}

    # the registry agrees, through an independent client
    got = registry.client().get_manifest("pushed/busybox", "v1")
    assert got.status == 200
    assert got.header("Docker-Content-Digest") == busybox.target.digest

    name, desc = await resolver.resolve(ref)
    assert name == ref
    assert (desc.digest, desc.size, desc.media_type) == (
        busybox.target.digest,
        busybox.target.size,
        busybox.target.media_type,
    )
    by_digest = f"{registry.host}/pushed/busybox@{busybox.target.digest}"
    name2, desc2 = await resolver.resolve(by_digest)
    assert name2 == by_digest
    assert desc2.digest == desc.digest and desc2.size == desc.size

    fetcher = await resolver.fetcher(name)
    tracker = handlers.ProgressTracker()
    visited = await handlers.fetch_image(fetcher, store, desc, progress=tracker)
    expected = {busybox.manifest.digest, busybox.config.digest} | {
        la.descriptor.digest for la in busybox.layers
    }
    assert {d.digest for d in visited} == expected
    for dgst in expected:
        info = await store.info(dgst)
        data = await (await store.reader_at(Descriptor(digest=dgst))).read_at(0, info.size)
        assert digests.from_bytes(data) == dgst
        assert data == busybox.blob(dgst)
    assert (
        tracker.done_bytes
        == tracker.total_bytes
        == sum(busybox.blob_path(d).stat().st_size for d in expected)
    )

    # pushing again finds everything in place (HEAD) and uploads nothing new
    before = len([e for e in registry.access_log() if e.method == "PATCH" or e.method == "POST"])
    again = await push_with_pusher(resolver, busybox, ref)
    assert [r for d, r in again.items() if d != busybox.target.digest] == [PushResult.EXISTS] * (
        len(again) - 1
    )
    after = len([e for e in registry.access_log() if e.method == "PATCH" or e.method == "POST"])
    assert after == before


async def test_chunked_upload_and_cross_repository_mount(
    registry: registry_support.Registry, busybox: images.Image, resolver: Resolver
) -> None:
    ref = registry.ref("chunked/busybox", "c1")
    results = await push_with_pusher(resolver, busybox, ref, chunk_size=300 << 10)
    assert set(results.values()) == {PushResult.UPLOADED}
    patches = [
        e for e in registry.access_log() if e.method == "PATCH" and "chunked/busybox" in e.path
    ]
    layer_size = busybox.layers[0].descriptor.size
    assert len(patches) >= -(-layer_size // (300 << 10))
    assert registry.client().get_manifest("chunked/busybox", "c1").status == 200

    mounted = await push_with_pusher(
        resolver, busybox, registry.ref("mounted/busybox", "m1"), mount_from=("chunked/busybox",)
    )
    blob_results = [r for d, r in mounted.items() if d not in (busybox.target.digest,)]
    assert blob_results and set(blob_results) == {PushResult.MOUNTED}
    mounts = [e for e in registry.access_log() if e.method == "POST" and "mount=" in e.path]
    assert mounts and all(e.status == 201 for e in mounts)
    r = registry.client().get_blob("mounted/busybox", busybox.layers[0].descriptor.digest)
    assert r.status == 200 and digests.from_bytes(r.body) == busybox.layers[0].descriptor.digest


async def test_resolve_errors_are_categorised(
    registry: registry_support.Registry, busybox: images.Image, resolver: Resolver
) -> None:
    registry.push(busybox, repository="errs/busybox", tag="present")
    with pytest.raises(errdefs.NotFound):
        await resolver.resolve(registry.ref("errs/busybox", "absent"))
    with pytest.raises(errdefs.NotFound):
        await resolver.resolve(registry.ref("no/such/repo", "latest"))
    with pytest.raises(errdefs.NotFound):
        await resolver.resolve(f"{registry.host}/errs/busybox@sha256:" + "0" * 64)
    with pytest.raises(errdefs.InvalidArgument):
        await resolver.resolve(f"{registry.host}/Errs/busybox:x")
    fetcher = await resolver.fetcher(registry.ref("errs/busybox", "present"))
    with pytest.raises(errdefs.NotFound):
        await fetcher.fetch(Descriptor(digest="sha256:" + "1" * 64, size=3))


async def test_multi_platform_index_selects_the_host_platform(
    registry: registry_support.Registry,
    image_cache: Path,
    resolver: Resolver,
    store: LocalStore,
) -> None:
    multi = images.multiplatform_image(
        image_cache, platforms=("linux/s390x", "linux/amd64", "linux/arm64", "linux/arm/v7")
    )
    registry.push(multi, repository="multi/app", tag="v1")
    name, desc = await resolver.resolve(registry.ref("multi/app", "v1"))
    assert desc.media_type == images.MT_OCI_INDEX
    assert desc.digest == multi.target.digest
    fetcher = await resolver.fetcher(name)

    host = platforms.format(platforms.default_spec())
    visited = await handlers.fetch_image(fetcher, store, desc)
    manifests = [d for d in visited if d.media_type == images.MT_OCI_MANIFEST]
    assert len(manifests) == 1
    assert manifests[0].platform is not None
    assert platforms.format(platforms.normalize(manifests[0].platform)) == platforms.format(
        platforms.normalize(platforms.parse(host))
    )
    assert manifests[0].digest == multi.manifest.digest
    # the host manifest's layers and config are in the store, another platform's are not
    assert (await store.info(multi.config.digest)).size == multi.config.size
    other = next(m for m in multi.manifests if m.digest != multi.manifest.digest)
    with pytest.raises(errdefs.NotFound):
        await store.info(other.digest)

    # an explicit platform, then all of them
    arm = await handlers.fetch_image(
        fetcher, store, desc, platform=platforms.only(platforms.parse("linux/arm/v7"))
    )
    assert [platforms.format(d.platform) for d in arm if d.platform] == ["linux/arm/v7"]
    everything = await handlers.fetch_image(
        fetcher, store, desc, platform=platforms.ALL, limit_manifests=0
    )
    assert {d.digest for d in everything if d.platform} == {m.digest for m in multi.manifests}
    with pytest.raises(errdefs.NotFound, match="no manifest for platform"):
        await handlers.fetch_image(
            fetcher, store, desc, platform=platforms.only(platforms.parse("windows/amd64"))
        )


async def test_basic_auth_right_and_wrong_password(
    registry_factory: Callable[..., registry_support.Registry],
    busybox: images.Image,
    store: LocalStore,
) -> None:
    reg = registry_factory(auth="basic", username="alice", password="s3cret")
    reg.push(busybox, repository="private/busybox", tag="v1")
    ref = reg.ref("private/busybox", "v1")
    asked: list[str] = []
    n_before = len(reg.access_log())

    def good(host: str) -> tuple[str, str]:
        asked.append(host)
        return "alice", "s3cret"

    async with Resolver(credentials=good) as r:
        name, desc = await r.resolve(ref)
        assert desc.digest == busybox.target.digest
        await handlers.fetch_image(await r.fetcher(name), store, desc)
    assert asked == [reg.host]
    assert (await store.info(busybox.layers[0].descriptor.digest)).size > 0
    # one challenge; after it every request carried the credentials unasked
    statuses = [e.status for e in reg.access_log()[n_before:]]
    assert statuses.count(401) == 1 and statuses[0] == 401
    assert set(statuses[1:]) == {200}

    async with Resolver(credentials=lambda host: ("alice", "wrong")) as r:
        with pytest.raises(errdefs.Unauthenticated) as info:
            await r.resolve(ref)
    # the registry's own error code and message are carried
    assert "UNAUTHORIZED" in str(info.value)
    assert "authentication required" in str(info.value)

    async with Resolver() as r:
        with pytest.raises(errdefs.Unauthenticated, match="no basic auth credentials"):
            await r.resolve(ref)

    async def async_creds(host: str) -> tuple[str, str]:
        return "alice", "s3cret"

    async with Resolver(credentials=async_creds) as r:
        pusher = await r.pusher(reg.ref("private/other", "t"))
        config = desc_of(busybox.config)
        assert await pusher.push(config, busybox.blob(config.digest)) == PushResult.UPLOADED


async def test_bearer_token_flow_with_caching_per_scope(
    registry_factory: Callable[..., registry_support.Registry],
    busybox: images.Image,
    store: LocalStore,
) -> None:
    reg = registry_factory(auth="token", username="bob", password="pw")
    reg.push(busybox, repository="tok/busybox", tag="v1")
    ts = reg.token_server
    assert ts is not None
    ts.requests.clear()
    ref = reg.ref("tok/busybox", "v1")
    async with Resolver(credentials=lambda host: ("bob", "pw")) as r:
        name, desc = await r.resolve(ref)
        await handlers.fetch_image(await r.fetcher(name), store, desc)
        # one token for repository:tok/busybox:pull served the resolve and every blob
        assert len([q for q in ts.requests if q["ok"]]) == 1
        assert ts.requests[-1]["query"]["scope"] == ["repository:tok/busybox:pull"]
        assert ts.requests[-1]["query"]["service"] == [ts.service]
        # a push needs a new scope, so a new token
        pusher = await r.pusher(reg.ref("tok/pushed", "p"))
        config = desc_of(busybox.config)
        assert await pusher.push(config, busybox.blob(config.digest)) == PushResult.UPLOADED
        scopes = [q["query"].get("scope") for q in ts.requests if q["ok"]]
        assert any(s and "repository:tok/pushed:pull,push" in s for s in scopes)
    assert (await store.info(busybox.config.digest)).size == busybox.config.size

    async with Resolver(credentials=lambda host: ("bob", "nope")) as r:
        with pytest.raises(errdefs.Unauthenticated, match="failed to fetch"):
            await r.resolve(ref)
    async with Resolver() as r:
        with pytest.raises(errdefs.Unauthenticated, match="anonymous token"):
            await r.resolve(ref)


def _blob_data_path(reg: registry_support.Registry, dgst: str) -> Path:
    hexd = dgst.split(":", 1)[1]
    return reg.storage_dir / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


async def test_resume_fetches_only_the_remainder(
    registry: registry_support.Registry,
    image_cache: Path,
    resolver: Resolver,
    store: LocalStore,
) -> None:
    big = images.large_image(image_cache, [6 << 20], name="docker.io/library/resume:latest")
    registry.push(big, repository="resume/big", tag="v1")
    name, _ = await resolver.resolve(registry.ref("resume/big", "v1"))
    fetcher = await resolver.fetcher(name)
    layer = desc_of(big.layers[0].descriptor)
    ref = handlers.ref_key(layer)

    # first attempt: cancelled once a third of the blob is in the ingest
    task: asyncio.Task[bool] | None = None

    def stop_early(desc: Descriptor, offset: int, total: int) -> None:
        if offset >= total // 3 and task is not None:
            task.cancel()

    task = asyncio.create_task(handlers.fetch_to_store(fetcher, store, layer, progress=stop_early))
    with pytest.raises(asyncio.CancelledError):
        await task
    status = await store.status(ref)
    partial = status.offset
    assert layer.size // 3 <= partial < layer.size
    with pytest.raises(errdefs.NotFound):
        await store.info(layer.digest)

    # second attempt resumes with Range: the registry serves only what is missing
    n_before = len(registry.access_log())
    seen: list[int] = []
    committed = await handlers.fetch_to_store(
        fetcher, store, layer, progress=lambda d, o, t: seen.append(o)
    )
    assert committed
    assert seen[0] == partial and seen[-1] == layer.size
    gets = [
        e for e in registry.access_log()[n_before:] if e.method == "GET" and layer.digest in e.path
    ]
    assert [(e.status, e.size) for e in gets] == [(206, layer.size - partial)]
    info = await store.info(layer.digest)
    assert info.size == layer.size
    assert await store.list_statuses() == []

    # fetch from an explicit offset gives exactly the tail
    async with await fetcher.fetch(layer, offset=layer.size - 10) as stream:
        tail = b"".join([c async for c in stream])
    assert tail == big.blob(layer.digest)[-10:]
    with pytest.raises(errdefs.OutOfRange):
        await fetcher.fetch(layer, offset=layer.size + 1)


async def test_corrupted_blob_is_a_digest_error_and_nothing_is_committed(
    registry_factory: Callable[..., registry_support.Registry],
    busybox: images.Image,
    store: LocalStore,
) -> None:
    reg = registry_factory()
    reg.push(busybox, repository="bad/busybox", tag="v1")
    layer = desc_of(busybox.layers[0].descriptor)
    path = _blob_data_path(reg, layer.digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    path.write_bytes(bytes(data))
    actual = digests.from_bytes(bytes(data))

    async with Resolver() as r:
        name, desc = await r.resolve(reg.ref("bad/busybox", "v1"))
        with pytest.raises(errdefs.FailedPrecondition) as info:
            await handlers.fetch_image(await r.fetcher(name), store, desc)
    msg = str(info.value)
    assert layer.digest in msg and actual in msg
    with pytest.raises(errdefs.NotFound):
        await store.info(layer.digest)
    # the bad ingest was aborted, not kept; a sibling fetch cancelled by the failure (the
    # config, when it had not finished) may keep its ingest for a later resume, by design
    refs = [st.ref for st in await store.list_statuses()]
    assert not [r for r in refs if layer.digest in r], refs


async def test_mirrors_from_hosts_toml_in_order_with_fallback(
    registry: registry_support.Registry,
    registry_factory: Callable[..., registry_support.Registry],
    busybox: images.Image,
    tmp_path: Path,
    store: LocalStore,
) -> None:
    upstream = registry_factory()
    upstream.push(busybox, repository="mirrored/busybox", tag="v1")
    upstream.push(busybox, repository="mirrored/busybox", tag="only-upstream")
    # the mirror holds the image under the same path, with a tag of its own
    registry.push(busybox, repository="mirrored/busybox", tag="v1")
    dead = registry_support.free_port()
    d = tmp_path / "certs.d" / upstream.host
    d.mkdir(parents=True)
    (d / "hosts.toml").write_text(
        f'server = "http://{upstream.host}"\n\n'
        f'[host."http://127.0.0.1:{dead}"]\n  capabilities = ["pull", "resolve"]\n\n'
        f'[host."http://{registry.host}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    hosts = configure_hosts(str(tmp_path / "certs.d"))
    n_mirror = len(registry.access_log())
    n_upstream = len(upstream.access_log())
    async with Resolver(hosts=hosts) as r:
        name, desc = await r.resolve(upstream.ref("mirrored/busybox", "v1"))
        assert desc.digest == busybox.target.digest
        await handlers.fetch_image(await r.fetcher(name), store, desc)
        # the dead mirror was skipped, the live one served everything, upstream nothing
        mirror_log = registry.access_log()[n_mirror:]
        assert mirror_log and all(f"ns={upstream.host}" in e.path for e in mirror_log)
        assert {e.status for e in mirror_log} == {200}
        assert upstream.access_log()[n_upstream:] == []

        # a tag only upstream has: the mirror says 404, the server answers
        _, desc2 = await r.resolve(upstream.ref("mirrored/busybox", "only-upstream"))
        assert desc2.digest == busybox.target.digest
        assert [e.status for e in upstream.access_log()[n_upstream:]] == [200]


async def test_plain_http_default_scheme_and_head_fallback_to_get(
    registry: registry_support.Registry, busybox: images.Image
) -> None:
    registry.push(busybox, repository="plain/busybox", tag="v1")
    async with Resolver(hosts=configure_hosts(default_scheme="http")) as r:
        n = len(registry.access_log())
        _, desc = await r.resolve(registry.ref("plain/busybox", "v1"))
        assert desc.digest == busybox.target.digest
        assert [e.method for e in registry.access_log()[n:]] == ["HEAD"]
    # a manifest fetched whole equals the layout's bytes
    async with Resolver() as r:
        f = await r.fetcher(registry.ref("plain/busybox", "v1"))
        stream = await f.fetch(desc)
        data = await stream.read_all()
        assert data == busybox.blob(desc.digest)
        assert json.loads(data)["config"]["digest"] == busybox.config.digest


@attrs.define(eq=False)
class OAuthTokenServer(registry_support.TokenServer):
    """The support token server's keys and JWT signing, served by an aiohttp app in the
    test's loop that also speaks the OAuth2 form POST (password and refresh_token grants)."""

    oauth_realm: str = ""
    refresh_tokens: set[str] = attrs.Factory(set)
    log: list[dict[str, str]] = attrs.Factory(list)

    @property
    def realm(self) -> str:
        return self.oauth_realm

    def _access(self, scopes: list[str]) -> list[dict[str, object]]:
        out = []
        for scope in " ".join(scopes).split():
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            out.append({"type": kind, "name": name, "actions": actions.split(",")})
        return out

    async def handle(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            form = await request.post()
            entry = {k: str(v) for k, v in form.items()}
            entry["method"] = "POST"
            self.log.append(entry)
            grant = form.get("grant_type")
            if grant == "password":
                ok = form.get("username") == self.username and form.get("password") == self.password
            elif grant == "refresh_token":
                ok = form.get("refresh_token") in self.refresh_tokens
            else:
                ok = False
            if not ok:
                return web.json_response({"error": "invalid_grant"}, status=401)
            scopes = [str(form.get("scope", ""))]
            offline = form.get("access_type") == "offline"
        else:
            self.log.append({"method": "GET", **request.query})
            auth = request.headers.get("Authorization", "")
            want = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            if auth != want:
                return web.json_response({"details": "bad credentials"}, status=401)
            scopes = request.query.getall("scope", [])
            offline = False
        token = await asyncio.to_thread(self.sign, self.username, self._access(scopes))
        body: dict[str, object] = {"access_token": token, "token": token, "expires_in": 300}
        if offline:
            rt = f"refresh-{uuid.uuid4().hex}"
            self.refresh_tokens.add(rt)
            body["refresh_token"] = rt
        return web.json_response(body)


@pytest.fixture
async def oauth_registry(
    registry_factory: Callable[..., registry_support.Registry], tmp_path: Path
) -> AsyncIterator[tuple[registry_support.Registry, OAuthTokenServer]]:
    ts = OAuthTokenServer(tmp_path / "oauth", username="carol", password="pw")
    await asyncio.to_thread(ts.start)  # keys and certificate (its own HTTP server is unused)
    app = web.Application()
    app.router.add_route("*", "/token", ts.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ts.oauth_realm = f"http://127.0.0.1:{port}/token"
    reg = await asyncio.to_thread(
        registry_factory, auth="token", username="carol", password="pw", token_server=ts
    )
    try:
        yield reg, ts
    finally:
        await runner.cleanup()


async def test_oauth_post_password_grant_then_refresh_token(
    oauth_registry: tuple[registry_support.Registry, OAuthTokenServer],
    busybox: images.Image,
) -> None:
    reg, ts = oauth_registry
    await asyncio.to_thread(reg.push, busybox, "oauth/a", "v1")
    await asyncio.to_thread(reg.push, busybox, "oauth/b", "v1")
    ts.log.clear()
    async with Resolver(credentials=lambda h: ("carol", "pw"), fetch_refresh_token=True) as r:
        _, desc = await r.resolve(reg.ref("oauth/a", "v1"))
        assert desc.digest == busybox.target.digest
        _, desc = await r.resolve(reg.ref("oauth/b", "v1"))
        assert desc.digest == busybox.target.digest
    assert [(e["method"], e["grant_type"]) for e in ts.log] == [
        ("POST", "password"),
        ("POST", "refresh_token"),
    ]
    first, second = ts.log
    assert first["username"] == "carol" and first["access_type"] == "offline"
    assert first["scope"] == "repository:oauth/a:pull"
    assert first["service"] == ts.service and first["client_id"]
    assert second["refresh_token"] in ts.refresh_tokens
    assert "repository:oauth/b:pull" in second["scope"]

    # an identity token (empty username) goes straight to the refresh_token grant
    identity = next(iter(ts.refresh_tokens))
    ts.log.clear()
    async with Resolver(credentials=lambda h: ("", identity)) as r:
        await r.resolve(reg.ref("oauth/a", "v1"))
    assert [(e["method"], e.get("grant_type")) for e in ts.log] == [("POST", "refresh_token")]

    # a wrong password: the POST is refused, the GET fallback too -> Unauthenticated
    ts.log.clear()
    async with Resolver(credentials=lambda h: ("carol", "bad")) as r:
        with pytest.raises(errdefs.Unauthenticated, match="bad credentials"):
            await r.resolve(reg.ref("oauth/a", "v1"))
    assert [e["method"] for e in ts.log] == ["POST", "GET"]


async def test_redirects_are_followed_for_manifests_and_blobs(
    registry: registry_support.Registry, busybox: images.Image, store: LocalStore
) -> None:
    """A front that redirects every request to the real registry (as registries redirect
    blob GETs to storage): resolve and fetch work through it."""
    registry.push(busybox, repository="redir/busybox", tag="v1")
    seen: list[tuple[str, str, str]] = []

    async def front(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, request.headers.get("Authorization", "")))
        if request.path == "/v2/" or "Authorization" not in request.headers:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="front"'})
        raise web.HTTPTemporaryRedirect(f"{registry.url}{request.path_qs}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", front)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        n = len(registry.access_log())
        async with Resolver(
            hosts=configure_hosts(default_scheme="http"), credentials=lambda h: ("u", "p")
        ) as r:
            name, desc = await r.resolve(f"127.0.0.1:{port}/redir/busybox:v1")
            assert desc.digest == busybox.target.digest
            await handlers.fetch_image(await r.fetcher(name), store, desc)
        assert (await store.info(busybox.layers[0].descriptor.digest)).size > 0
        served = [(e.method, e.status) for e in registry.access_log()[n:]]
        assert ("HEAD", 200) in served and served.count(("GET", 200)) == 3
        assert all(a.startswith("Basic ") for _, _, a in seen[1:])
    finally:
        await runner.cleanup()


async def test_redirect_to_another_host_drops_the_credentials() -> None:
    data = b"blob bytes served from storage"
    dgst = digests.from_bytes(data)
    storage_auth: list[str] = []

    async def storage(request: web.Request) -> web.Response:
        storage_auth.append(request.headers.get("Authorization", ""))
        return web.Response(body=data, content_type="application/octet-stream")

    async def front(request: web.Request) -> web.Response:
        if "Authorization" not in request.headers:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        raise web.HTTPTemporaryRedirect(f"http://localhost:{storage_port}/signed?x=1")

    runners = []
    ports = []
    for handler in (storage, front):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    storage_port, front_port = ports
    try:
        async with Resolver(
            hosts=configure_hosts(default_scheme="http"), credentials=lambda h: ("u", "p")
        ) as r:
            f = await r.fetcher(f"127.0.0.1:{front_port}/repo:t")
            stream = await f.fetch(Descriptor(digest=dgst, size=len(data)))
            assert await stream.read_all() == data
        assert storage_auth == [""]
    finally:
        for runner in runners:
            await runner.cleanup()
