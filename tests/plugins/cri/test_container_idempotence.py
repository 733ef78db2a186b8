"""StopContainer is idempotent: a container id that is not (or no longer) there is not an
error, as in containerd 2.x (critest: Idempotence StopContainer should not return an error if
not found); an empty id is still invalid."""

from __future__ import annotations

import asyncio

import pytest

from pycontainerd.core import errdefs
from pycontainerd.plugins.cri.container.service import ContainerManager


def test_stop_unknown_container_is_not_an_error() -> None:
    manager = ContainerManager(c=None)
    assert asyncio.run(manager.stop("b7cb09d2-99d9-4896-8bd9-eab58f4cf3ae", 0)) is None


def test_stop_empty_id_is_invalid() -> None:
    manager = ContainerManager(c=None)
    with pytest.raises(errdefs.InvalidArgument):
        asyncio.run(manager.stop("", 0))
