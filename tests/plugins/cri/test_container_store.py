"""Container store: names, id prefixes, state from times, metadata and status checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as pb
from pycontainerd.core import errdefs
from pycontainerd.plugins.cri.container.store import (
    Container,
    ContainerStore,
    Metadata,
    Status,
    StatusStorage,
    exit_reason,
    make_container_name,
)


def _meta(id_: str = "a" * 64) -> Metadata:
    config = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="c", attempt=2), labels={"x": "y"}
    )
    return Metadata(
        id=id_,
        name="c_p_ns_uid_2",
        sandbox_id="s" * 64,
        config=config,
        image_ref="sha256:abc",
        log_path="/l/c.log",
        stop_signal="SIGINT",
    )


def test_name_and_state() -> None:
    name = make_container_name(
        pb.ContainerMetadata(name="c", attempt=2),
        pb.PodSandboxMetadata(name="p", namespace="ns", uid="uid"),
    )
    assert name == "c_p_ns_uid_2"
    s = Status()
    assert s.state() == "CONTAINER_UNKNOWN"
    s.created_at = 1
    assert s.state() == "CONTAINER_CREATED"
    s.started_at = 2
    assert s.state() == "CONTAINER_RUNNING"
    s.finished_at = 3
    assert s.state() == "CONTAINER_EXITED"
    assert exit_reason(0, False) == "Completed"
    assert exit_reason(2, False) == "Error"
    assert exit_reason(137, True) == "OOMKilled"


def test_metadata_round_trip() -> None:
    m = Metadata.from_typed(_meta().to_typed())
    assert m.id == "a" * 64 and m.config.metadata.attempt == 2 and m.config.labels["x"] == "y"
    assert m.stop_signal == "SIGINT" and m.log_path == "/l/c.log"
    with pytest.raises(errdefs.InvalidArgument):
        Metadata.from_json({"Version": "v0"})


def test_status_checkpoint(tmp_path: Path) -> None:
    c = Container(metadata=_meta(), storage=StatusStorage(str(tmp_path / "c")))
    c.update(created_at=5, started_at=6, pid=42)
    c.update(finished_at=7, exit_code=3, reason="Error", pid=0)
    c.update_in_memory(removing=True)
    loaded = StatusStorage(str(tmp_path / "c")).load()
    assert (loaded.created_at, loaded.started_at, loaded.finished_at) == (5, 6, 7)
    assert loaded.exit_code == 3 and loaded.reason == "Error" and not loaded.removing
    with pytest.raises(errdefs.NotFound):
        StatusStorage(str(tmp_path / "none")).load()


def test_store_prefix_and_names() -> None:
    store = ContainerStore()
    store.add(Container(metadata=_meta("ab" + "0" * 62)))
    store.add(Container(metadata=_meta("ac" + "0" * 62)))
    assert store.get("ab").id.startswith("ab")
    with pytest.raises(errdefs.InvalidArgument):
        store.get("a")
    with pytest.raises(errdefs.NotFound):
        store.get("zz")
    store.names.reserve("n", "1")
    with pytest.raises(errdefs.AlreadyExists):
        store.names.reserve("n", "2")
    store.names.release_by_id("1")
    store.names.reserve("n", "2")
