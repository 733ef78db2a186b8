from __future__ import annotations

import pytest

from pycontainerd.core import namespaces
from pycontainerd.core.metadata.db import DB


@pytest.fixture
async def db(tmp_path):
    d = await DB.open(str(tmp_path / "meta.db"))
    try:
        yield d
    finally:
        await d.close()


@pytest.fixture
def ns():
    with namespaces.use("testing"):
        yield "testing"


class RecordingPublisher:
    def __init__(self) -> None:
        self.events: list[tuple[str | None, str, object]] = []

    async def publish(self, topic: str, event: object) -> None:
        self.events.append((namespaces.get(), topic, event))


@pytest.fixture
def publisher(db):
    p = RecordingPublisher()
    db.publisher = p
    return p
