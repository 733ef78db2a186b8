"""StopContainer is idempotent: a container id that is not (or no longer) there is not an
error, as in containerd 2.x (critest: Idempotence StopContainer should not return an error if
not found); an empty id is still invalid; a kill that races the task's exit is no error."""

from __future__ import annotations

import asyncio

import pytest

from pycontainerd.core import errdefs
from pycontainerd.plugins.cri.container import service
from pycontainerd.plugins.cri.container.service import ContainerManager
from pycontainerd.plugins.cri.container.store import Container, Metadata, Status


def test_stop_unknown_container_is_not_an_error() -> None:
    manager = ContainerManager(c=None)
    assert asyncio.run(manager.stop("b7cb09d2-99d9-4896-8bd9-eab58f4cf3ae", 0)) is None


def test_stop_empty_id_is_invalid() -> None:
    manager = ContainerManager(c=None)
    with pytest.raises(errdefs.InvalidArgument):
        asyncio.run(manager.stop("", 0))


def _running_container() -> Container:
    md = Metadata(id="c" * 64, name="n", sandbox_id="s" * 64, config=None)
    return Container(metadata=md, status=Status(created_at=1, started_at=2))


def test_stop_kill_racing_the_exit_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """RemoveContainer of a container whose task is exiting: the kill fails with UNAVAILABLE
    (the shim connection closed as the exit monitor deleted the task); once the monitor has
    recorded the exit, the stop succeeds (critest: Image Identifier Consistency)."""
    manager = ContainerManager(c=None)
    container = _running_container()
    manager.store.add(container)

    async def tasks(self: ContainerManager, method: str, request: object) -> None:
        assert method == "kill"
        asyncio.get_running_loop().call_later(0.05, container.stopped.set)
        raise errdefs.Unavailable("ttrpc: client closed")

    monkeypatch.setattr(ContainerManager, "_tasks", tasks)  # slotted class
    asyncio.run(manager.stop(container.id, 0))
    assert container.stopped.is_set()


def test_stop_kill_unavailable_without_exit_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    manager = ContainerManager(c=None)
    container = _running_container()
    manager.store.add(container)

    async def tasks(self: ContainerManager, method: str, request: object) -> None:
        raise errdefs.Unavailable("ttrpc: client closed")

    monkeypatch.setattr(ContainerManager, "_tasks", tasks)  # slotted class
    monkeypatch.setattr(service, "KILL_RACE_GRACE", 0.05)
    with pytest.raises(errdefs.Unavailable):
        asyncio.run(manager.stop(container.id, 0))
