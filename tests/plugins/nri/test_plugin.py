"""io.containerd.nri.v1.nri: registration, containerd's config keys and defaults, and the
instance it builds running a pre-installed plugin."""

from __future__ import annotations

import nritest
import pytest

from pycontainerd.core.config.codec import decode_plugin_config
from pycontainerd.core.nri import NRI, Container, PodSandbox
from pycontainerd.core.plugin import InitContext, SkipPlugin, types
from pycontainerd.core.plugin.context import PluginSet
from pycontainerd.plugins.nri import plugin


def test_registration_and_defaults_match_containerd():
    [reg] = plugin.pycontainerd_registrations()
    assert reg.uri == "io.containerd.nri.v1.nri" and reg.type == types.NRI
    cfg, _ = decode_plugin_config(plugin.Config, {}, reg.uri)
    assert attrs_dict(cfg) == {
        "disable": False,
        "socket_path": "/var/run/nri/nri.sock",
        "plugin_path": "/opt/nri/plugins",
        "plugin_config_path": "/etc/nri/conf.d",
        "plugin_registration_timeout": "5s",
        "plugin_request_timeout": "2s",
        "disable_connections": False,
        "default_validator": {
            "enable": False,
            "reject_oci_hook_adjustment": False,
            "reject_runtime_default_seccomp_adjustment": False,
            "reject_unconfined_seccomp_adjustment": False,
            "reject_custom_seccomp_adjustment": False,
            "reject_namespace_adjustment": False,
            "reject_sysctl_adjustment": False,
            "required_plugins": [],
            "tolerate_missing_plugins_annotation": "",
        },
    }


def attrs_dict(cfg) -> dict:
    import attrs

    return attrs.asdict(cfg)


async def _init(raw: dict):
    [reg] = plugin.pycontainerd_registrations()
    cfg, _ = decode_plugin_config(plugin.Config, raw, reg.uri)
    ic = InitContext(registration=reg, config=cfg, properties={}, plugins=PluginSet())
    return await reg.init(ic)


async def test_disabled_plugin_is_skipped():
    with pytest.raises(SkipPlugin):
        await _init({"disable": True})


async def test_instance_runs_a_preinstalled_plugin_with_configured_paths(tmp_path):
    plugins, conf = tmp_path / "plugins", tmp_path / "conf.d"
    plugins.mkdir()
    conf.mkdir()
    log = tmp_path / "log.jsonl"
    nritest.install(plugins, conf, "10-sample", {"log": str(log), "adjust": {"env": {"S": "1"}}})
    nri = await _init(
        {
            "socket_path": str(tmp_path / "nri.sock"),
            "plugin_path": str(plugins),
            "plugin_config_path": str(conf),
            "plugin_request_timeout": "1500ms",
        }
    )
    assert isinstance(nri, NRI)
    assert nri.config.request_timeout == 1.5 and nri.config.registration_timeout == 5.0
    try:
        await nri.start()
        assert [p.name for p in nri.plugins] == ["10-sample"]
        res = await nri.create_container(PodSandbox(id="p"), Container(id="c", pod_sandbox_id="p"))
        assert [(e.key, e.value) for e in res.adjustment.env] == [("S", "1")]
        assert (tmp_path / "nri.sock").exists()
    finally:
        await nri.close()
    assert not (tmp_path / "nri.sock").exists()
