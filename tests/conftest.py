"""Top-level test configuration: tests/support on sys.path, the ``root`` marker, and the shared
fixtures every integration test stands on (test images, a real registry).

Helpers import as plain modules: ``import images``, ``import registry``, ``import peers``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SUPPORT = Path(__file__).resolve().parent / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

import images  # noqa: E402
import peers  # noqa: E402
import registry as registry_support  # noqa: E402


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Tests marked root skip when not root, except in CI, which runs as root and must run them.
    if item.get_closest_marker("root") and os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("needs root")


@pytest.fixture(scope="session")
def image_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A per-session directory where built test images (and the pause binary) are cached."""
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="session")
def busybox(image_cache: Path) -> images.Image:
    """docker.io/library/busybox:latest for the host platform, in an OCI layout."""
    return images.busybox_image(image_cache)


@pytest.fixture(scope="session")
def pause(image_cache: Path) -> images.Image:
    """registry.k8s.io/pause:3.10 built from tests/support/pause.c."""
    peers.require_binary("gcc")
    return images.pause_image(image_cache)


@pytest.fixture(scope="session")
def registry_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., registry_support.Registry]]:
    """``registry_factory(auth="none"|"basic"|"token", username=..., password=...)`` starts
    another docker-registry; all are stopped at the end of the session."""
    started: list[registry_support.Registry] = []

    def start(**kw: object) -> registry_support.Registry:
        peers.require_binary("docker-registry")
        if kw.get("auth") == "token":
            peers.require_binary("openssl")
        if kw.get("auth") == "basic":
            try:
                registry_support.bcrypt_hash("probe")
            except registry_support.HtpasswdUnavailable as e:
                pytest.skip(str(e))
        reg = registry_support.Registry(tmp_path_factory.mktemp("registry"), **kw)  # type: ignore[arg-type]
        started.append(reg)
        return reg.start()

    yield start
    for reg in reversed(started):
        reg.stop()


@pytest.fixture(scope="session")
def registry(
    registry_factory: Callable[..., registry_support.Registry],
) -> registry_support.Registry:
    """A docker-registry without auth on 127.0.0.1 (``registry.host``, ``registry.push(image)``)."""
    return registry_factory()
