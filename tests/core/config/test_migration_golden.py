"""A realistic containerd version-2 file migrates to version 4 exactly as checked in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import tomli

from pycontainerd.core.config import CURRENT_VERSION, dump, load, to_toml
from pycontainerd.core.plugin.registration import Registration
from pycontainerd.plugins.cri import config_migration

TESTDATA = Path(__file__).parent / "testdata"

#: Keys the migration renames on purpose (old key -> new key).
RENAMED = {
    "sandbox_image": "sandbox",
    "tcp_address": "address",
    "tcp_tls_cert": "tls_cert",
    "tcp_tls_key": "tls_key",
    "bin_dir": "bin_dirs",
    "sandbox_mode": "sandboxer",
}


@attrs.frozen(kw_only=True)
class GCConfig:
    pause_threshold: float = 0.02
    deletion_threshold: int = 0
    mutation_threshold: int = 100
    schedule_delay: str = "0ms"
    startup_delay: str = "100ms"


async def _init(ic: Any) -> None:
    return None


def registrations() -> list[Registration]:
    return [
        Registration(type="io.containerd.gc.v1", id="scheduler", init=_init, config=GCConfig),
        Registration(
            type="io.containerd.grpc.v1",
            id="cri",
            init=_init,
            config_migration=config_migration.migrate_cri,
        ),
    ]


def _leaves(value: Any, key: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, k)]
    if isinstance(value, list):
        return [(key, item) for item in value] or [(key, "<empty>")]
    return [(key, value)]


def test_v2_config_migrates_to_checked_in_v4_output():
    loaded = load(TESTDATA / "v2-containerd.toml")
    text = to_toml(dump(loaded, registrations()))
    assert text == (TESTDATA / "v2-containerd.migrated.toml").read_text()


def test_v2_migration_loses_no_value_of_the_input():
    source = tomli.loads((TESTDATA / "v2-containerd.toml").read_text())
    del source["version"]
    output = tomli.loads(to_toml(dump(load(TESTDATA / "v2-containerd.toml"), registrations())))
    found = set(map(repr, _leaves(output)))
    missing = [
        (key, value)
        for key, value in _leaves(source)
        if repr((key, value)) not in found and repr((RENAMED.get(key), value)) not in found
    ]
    assert missing == []
    assert output["version"] == CURRENT_VERSION


def test_v2_migration_splits_cri_and_moves_server_tables():
    plugins = dump(load(TESTDATA / "v2-containerd.toml"), registrations())["plugins"]
    assert set(plugins["io.containerd.grpc.v1.cri"]) == set(config_migration.SERVER_KEYS)
    images = plugins["io.containerd.cri.v1.images"]
    assert images["pinned_images"] == {"sandbox": "registry.k8s.io/pause:3.9"}
    assert images["registry"] == {"config_path": "/etc/containerd/certs.d"}
    assert images["snapshotter"] == "overlayfs"
    runtime = plugins["io.containerd.cri.v1.runtime"]
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["options"]["SystemdCgroup"] is True
    assert runc["sandboxer"] == "podsandbox"
    assert runtime["cni"]["bin_dirs"] == ["/opt/cni/bin"]
    assert "snapshotter" not in runtime["containerd"]
    assert plugins["io.containerd.server.v1.grpc"]["address"] == "/run/containerd/containerd.sock"
    assert plugins["io.containerd.server.v1.grpc-tcp"]["address"] == "0.0.0.0:10010"
    assert plugins["io.containerd.server.v1.ttrpc"]["address"] == (
        "/run/containerd/containerd.sock.ttrpc"
    )
    assert plugins["io.containerd.server.v1.debug"]["address"] == "/run/containerd/debug.sock"
    assert plugins["io.containerd.server.v1.metrics"] == {"address": "127.0.0.1:1338"}
