from __future__ import annotations

import types

import attrs

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as pb
from pycontainerd.core import errdefs
from pycontainerd.plugins.cri.container.service import ContainerManager
from pycontainerd.plugins.cri.container.store import Container, Metadata, Status
from pycontainerd.plugins.cri.images.store import Image


class _Images:
    def __init__(self) -> None:
        self.images: dict[str, Image] = {}

    def get_image(self, ref: str) -> Image:
        try:
            return self.images[ref]
        except KeyError:
            raise errdefs.NotFound(ref) from None


def _manager() -> tuple[ContainerManager, _Images]:
    images = _Images()
    return ContainerManager(c=types.SimpleNamespace(images=images)), images


def _container(i: int) -> Container:
    config = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=f"c{i}"),
        image=pb.ImageSpec(image="sha256:" + "a" * 64),
        labels={"n": str(i)},
        annotations={"a": "b"},
    )
    md = Metadata(
        id=f"{i:064x}",
        name=f"c{i}",
        sandbox_id="s" * 64,
        config=config,
        image_ref="sha256:" + "a" * 64,
    )
    return Container(metadata=md, status=Status(created_at=10 + i))


def _listed(m: ContainerManager) -> list[pb.Container]:
    return list(pb.ListContainersResponse.FromString(m.listed(m.list())).containers)


def test_listed_entries_equal_to_listed_messages_and_follow_status_and_image_changes():
    m, images = _manager()
    for i in range(3):
        m.store.add(_container(i))
    assert _listed(m) == [m.to_listed(c) for c in m.store.list()]
    c0 = m.store.get(f"{0:064x}")
    c0.update_in_memory(started_at=99)
    assert _listed(m)[0].state == pb.CONTAINER_RUNNING
    images.images["sha256:" + "a" * 64] = Image(
        id="sha256:" + "a" * 64, references=("docker.io/library/x:1",)
    )
    assert {c.image.image for c in _listed(m)} == {"docker.io/library/x:1"}
    images.images["sha256:" + "a" * 64] = attrs.evolve(
        images.images["sha256:" + "a" * 64], references=("docker.io/library/y:2",)
    )
    assert {c.image.image for c in _listed(m)} == {"docker.io/library/y:2"}
    m.store.delete(c0.id)
    assert [c.id for c in _listed(m)] == [f"{i:064x}" for i in (1, 2)]
