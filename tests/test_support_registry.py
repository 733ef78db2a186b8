"""The real registry the pull tests use: it starts, serves what was pushed, and enforces auth."""

from __future__ import annotations

import json

import images
import pytest
import registry as registry_support


def test_pushed_image_is_served_by_manifest_digest_with_docker_content_digest(registry, busybox):
    pushed = registry.push(busybox, repository="test/busybox", tag="v1")
    assert pushed.digest == busybox.manifest.digest
    client = registry.client()
    r = client.get_manifest("test/busybox", busybox.manifest.digest)
    assert r.status == 200
    assert r.header("Docker-Content-Digest") == busybox.manifest.digest
    assert r.header("Content-Type") == images.MT_OCI_MANIFEST
    assert r.body == busybox.blob(busybox.manifest.digest)
    by_tag = client.get_manifest("test/busybox", "v1", method="HEAD")
    assert by_tag.header("Docker-Content-Digest") == busybox.manifest.digest
    layer = busybox.layers[0].descriptor
    blob = client.get_blob("test/busybox", layer.digest)
    assert (blob.status, registry_support.digest_of(blob.body)) == (200, layer.digest)


def test_unknown_manifest_is_404(registry):
    r = registry.client().get_manifest("test/nothing", "latest")
    assert r.status == 404


def test_multiplatform_index_and_its_manifests_are_pushed(registry, image_cache):
    img = images.multiplatform_image(image_cache, platforms=("linux/amd64", "linux/arm64"))
    registry.push(img, repository="test/multi")
    client = registry.client()
    r = client.get_manifest("test/multi", "latest")
    assert r.header("Docker-Content-Digest") == img.digest
    assert r.header("Content-Type") == images.MT_OCI_INDEX
    for m in json.loads(r.body)["manifests"]:
        assert client.get_manifest("test/multi", m["digest"]).status == 200


def test_push_layout_pushes_every_named_image_of_a_layout(registry, tmp_path):
    layout = images.OCILayout(tmp_path / "layout")
    layer = layout.add_layer({"hello": "world\n"})
    m, _ = layout.add_manifest([layer], config={"Cmd": ["/hello"]})
    layout.tag(m, "example.com/one:a")
    layout.tag(m, "example.com/two:b")
    layout.save()
    pushed = registry_support.push_layout(registry.client(), layout.root)
    assert [d.digest for d in pushed] == [m.digest, m.digest]
    assert registry.client().tags("one") == ["a"]
    assert registry.client().tags("two") == ["b"]


def test_access_log_counts_requests_and_blob_bytes_served(registry_factory, busybox):
    reg = registry_factory()
    reg.push(busybox)
    before = reg.blob_bytes_served()
    layer = busybox.layers[0].descriptor
    assert reg.client().get_blob("library/busybox", layer.digest).status == 200
    # the access line is written after the response is sent: wait for it
    entries = reg.wait_for_log(
        lambda es: any(e.method == "GET" and layer.digest in e.path for e in es)
    )
    assert any(e.method == "PUT" and "/manifests/latest" in e.path for e in entries)
    assert reg.blob_bytes_served() - before == layer.size


def test_basic_auth_refuses_a_wrong_password_with_401(registry_factory, busybox):
    reg = registry_factory(auth="basic", username="alice", password="s3cret")
    reg.push(busybox)
    assert reg.client().get_manifest("library/busybox", "latest").status == 200
    wrong = reg.client(password="wrong")
    r = wrong.get_manifest("library/busybox", "latest")
    assert r.status == 401
    assert r.header("WWW-Authenticate").startswith("Basic ")
    anonymous = registry_support.RegistryClient(host=reg.host)
    assert anonymous.get_manifest("library/busybox", "latest").status == 401


def test_token_auth_serves_only_with_a_token_from_the_realm(registry_factory, busybox):
    reg = registry_factory(auth="token", username="bob", password="pw")
    reg.push(busybox)
    r = registry_support.RegistryClient(host=reg.host).get_manifest("library/busybox", "latest")
    assert r.status == 401
    challenge = r.header("WWW-Authenticate")
    assert challenge.startswith("Bearer ")
    assert f'realm="{reg.token_server.realm}"' in challenge
    assert 'scope="repository:library/busybox:pull"' in challenge
    ok = reg.client().get_manifest("library/busybox", "latest")
    assert (ok.status, ok.header("Docker-Content-Digest")) == (200, busybox.digest)
    refused = reg.client(password="nope").get_manifest("library/busybox", "latest")
    assert refused.status == 401
    assert any(not q["ok"] for q in reg.token_server.requests)


def test_registry_refuses_an_unknown_auth_mode(tmp_path):
    with pytest.raises(ValueError):
        registry_support.Registry(tmp_path, auth="digest")
