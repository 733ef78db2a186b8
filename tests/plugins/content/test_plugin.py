from __future__ import annotations

import os

from pycontainerd.core.content import Descriptor, Store, digests
from pycontainerd.core.content.helpers import read_blob, write_blob
from pycontainerd.core.plugin import InitContext, Registration, types
from pycontainerd.core.plugin.context import PluginSet
from pycontainerd.plugins.content.local import plugin


def _registration() -> Registration:
    regs = plugin.pycontainerd_registrations()
    assert len(regs) == 1
    return regs[0]


def test_registers_content_plugin_with_containerd_type_and_id() -> None:
    reg = _registration()
    assert reg.uri == "io.containerd.content.v1.content"
    assert reg.type == types.CONTENT
    assert reg.requires == ()
    reg.validate()


async def test_init_creates_store_at_plugin_root_and_exports_it(tmp_path) -> None:
    root = str(tmp_path / "io.containerd.content.v1.content")
    reg = _registration()
    ic = InitContext(
        registration=reg,
        config=None,
        properties={
            types.PROPERTY_ROOT_DIR: root,
            types.PROPERTY_STATE_DIR: str(tmp_path / "state"),
        },
        plugins=PluginSet(),
    )
    store = await reg.init(ic)
    assert isinstance(store, Store)
    assert ic.meta.exports == {"root": root}
    assert os.path.isdir(os.path.join(root, "blobs"))
    assert os.path.isdir(os.path.join(root, "ingest"))
    dgst = digests.from_bytes(b"hello")
    await write_blob(store, "r", b"hello", dgst)
    assert os.path.isfile(os.path.join(root, "blobs", "sha256", dgst.split(":")[1]))
    assert await read_blob(store, Descriptor(digest=dgst, size=5)) == b"hello"
