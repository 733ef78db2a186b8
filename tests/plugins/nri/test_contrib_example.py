"""contrib/nri-example runs as a pre-installed plugin and adjusts containers."""

from __future__ import annotations

import sys
from pathlib import Path

from pycontainerd.core.nri import NRI, Config, Container, PodSandbox

EXAMPLE = Path(__file__).resolve().parents[3] / "contrib" / "nri-example" / "nri_example.py"


async def test_contrib_example_as_a_preinstalled_plugin(tmp_path):
    plugins, conf = tmp_path / "plugins", tmp_path / "conf.d"
    plugins.mkdir()
    conf.mkdir()
    exe = plugins / "50-example"
    exe.write_text(f"#!{sys.executable}\n" + EXAMPLE.read_text().split("\n", 1)[1])
    exe.chmod(0o755)
    (conf / "50-example.conf").write_text('{"env": {"GREETING": "hello"}}')
    nri = NRI(
        Config(
            socket_path=str(tmp_path / "nri.sock"),
            plugin_path=str(plugins),
            plugin_config_path=str(conf),
        )
    )
    await nri.start()
    try:
        pod = PodSandbox(
            id="p", name="web", annotations={"nri-example.pycontainerd.io/memory-limit": "33554432"}
        )
        res = await nri.create_container(pod, Container(id="c", pod_sandbox_id="p"))
        adj = res.adjustment
        assert {e.key: e.value for e in adj.env} == {"NRI_EXAMPLE": "1", "GREETING": "hello"}
        assert adj.annotations["nri-example.pycontainerd.io/seen"] == "true"
        assert adj.linux.resources.memory.limit.value == 32 << 20
    finally:
        await nri.close()
