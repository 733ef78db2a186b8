"""RuntimeService basics over an in-process daemon: Version, Status (network readiness from
the CNI conf dir, deprecations, handlers, verbose info), RuntimeConfig, UpdateRuntimeConfig,
and UNIMPLEMENTED for what is not built yet."""

from __future__ import annotations

import json
import os
from typing import Any

import grpc
import pytest
from cri import pb

import pycontainerd
from pycontainerd.core import errdefs
from pycontainerd.plugins.cri import server
from pycontainerd.plugins.cri.config import ContainerdConfig, Runtime, RuntimeConfig
from pycontainerd.plugins.cri.server import runtime_info

CONFLIST = {
    "cniVersion": "1.0.0",
    "name": "test-net",
    "plugins": [{"type": "bridge", "bridge": "cni0"}],
}


def conditions(resp: Any) -> dict[str, Any]:
    return {c.type: c for c in resp.status.conditions}


async def test_version(cri_daemon):
    v = await cri_daemon.cri.version()
    assert (v.version, v.runtime_name, v.runtime_api_version) == ("0.1.0", "pycontainerd", "v1")
    assert v.runtime_version == pycontainerd.__version__


async def test_status_network_follows_the_cni_conf_dir(cri_daemon):
    conds = conditions(await cri_daemon.cri.status())
    assert conds["RuntimeReady"].status
    assert not conds["NetworkReady"].status
    assert conds["NetworkReady"].reason == "NetworkPluginNotReady"
    assert "cni plugin not initialized" in conds["NetworkReady"].message
    conf_dir = os.path.join(cri_daemon.base, "net.d")
    os.makedirs(conf_dir, exist_ok=True)
    with open(os.path.join(conf_dir, "10-test.conflist"), "w") as f:
        json.dump(CONFLIST, f)
    conds = conditions(await cri_daemon.cri.status())
    assert conds["NetworkReady"].status and not conds["NetworkReady"].reason


async def test_status_lists_handlers_with_the_default_again_unnamed(cri_daemon):
    resp = await cri_daemon.cri.status()
    names = [h.name for h in resp.runtime_handlers]
    assert names == ["runc", ""]
    assert resp.runtime_handlers[0].features == resp.runtime_handlers[1].features
    assert resp.features.supplemental_groups_policy


async def test_status_verbose_info(cri_daemon):
    resp = await cri_daemon.cri.status(verbose=True)
    config = json.loads(resp.info["config"])
    assert config["containerd"]["default_runtime_name"] == "runc"
    assert config["rootDir"].endswith("io.containerd.grpc.v1.cri")
    assert json.loads(resp.info["cniconfig"])["PluginConfDir"].endswith("net.d")
    assert "lastCNILoadStatus" in resp.info
    assert not (await cri_daemon.cri.status()).info


async def test_deprecation_warnings_condition(cri_daemon):
    warnings = cri_daemon.instance("io.containerd.warning.v1.deprecations")
    warnings.emit("io.containerd.deprecation/test", "something old")
    cond = conditions(await cri_daemon.cri.status())["ContainerdHasNoDeprecationWarnings"]
    assert not cond.status and cond.reason == "ContainerdHasDeprecationWarnings"
    assert json.loads(cond.message) == {"io.containerd.deprecation/test": "something old"}
    cri_daemon.service.config.ignore_deprecation_warnings.append("io.containerd.deprecation/test")
    cond = conditions(await cri_daemon.cri.status())["ContainerdHasNoDeprecationWarnings"]
    assert cond.status


async def test_runtime_config_is_cgroupfs_without_systemd_cgroup(cri_daemon):
    resp = await cri_daemon.cri.runtime.RuntimeConfig(pb.RuntimeConfigRequest())
    assert resp.linux.cgroup_driver == pb.CGROUPFS


def test_cgroup_driver_follows_the_default_runc_handler_first():
    def cfg(default: str, **runtimes: Runtime) -> RuntimeConfig:
        return RuntimeConfig(
            containerd=ContainerdConfig(default_runtime_name=default, runtimes=dict(runtimes))
        )

    systemd = Runtime(options={"SystemdCgroup": True})
    plain = Runtime(options={})
    kata = Runtime(runtime_type="io.containerd.kata.v2", options={"SystemdCgroup": True})
    assert runtime_info.cgroup_driver(cfg("b", a=plain, b=systemd)) == "systemd"
    assert runtime_info.cgroup_driver(cfg("b", a=systemd, b=plain)) == "cgroupfs"
    assert runtime_info.cgroup_driver(cfg("k", k=kata, z=systemd)) == "systemd"
    only_kata = cfg("k", k=kata)
    assert runtime_info.cgroup_driver(only_kata) == runtime_info.detect_cgroup_driver()


async def test_update_runtime_config_without_template_only_records_the_cidrs(cri_daemon):
    await cri_daemon.cri.runtime.UpdateRuntimeConfig(_update("10.88.0.0/16, fd00::/64"))
    assert cri_daemon.service.pod_cidrs == ["10.88.0.0/16", "fd00::/64"]
    assert not os.path.exists(os.path.join(cri_daemon.base, "net.d"))
    await cri_daemon.cri.runtime.UpdateRuntimeConfig(_update(""))
    assert cri_daemon.service.pod_cidrs == ["10.88.0.0/16", "fd00::/64"]


async def test_update_runtime_config_rejects_a_bad_cidr(cri_daemon):
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await cri_daemon.cri.runtime.UpdateRuntimeConfig(_update("10.88.0.0/99"))
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _update(cidr: str) -> Any:
    return pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr=cidr))
    )


async def test_methods_without_a_handler_are_unimplemented_by_name(cri_daemon):
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2

    implemented = server.find_handlers(server.RUNTIME_SERVICE, server.RUNTIME_HANDLER_MODULES)
    methods = api_pb2.DESCRIPTOR.services_by_name[server.RUNTIME_SERVICE].methods
    missing = [m for m in methods if m.name not in implemented]
    # (today every method has a handler; the check guards methods a newer cri-api adds)
    for m in missing:
        call = getattr(cri_daemon.cri.runtime, m.name)
        request = getattr(pb, m.input_type.name)()
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            if m.server_streaming:
                async for _ in call(request):
                    pass
            else:
                await call(request)
        assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED, m.name
        assert f"RuntimeService.{m.name}" in ei.value.details()


def test_rpcs_map_to_snake_case_handler_names():
    assert server.snake_case("ImageFsInfo") == "image_fs_info"
    assert server.snake_case("ListPodSandboxStats") == "list_pod_sandbox_stats"
    found = server.find_handlers(server.RUNTIME_SERVICE, server.RUNTIME_HANDLER_MODULES)
    assert {"Version", "Status", "RuntimeConfig", "UpdateRuntimeConfig"} <= set(found)
    found = server.find_handlers(server.IMAGE_SERVICE, server.IMAGE_HANDLER_MODULES)
    assert set(found) == {
        "ListImages",
        "StreamImages",
        "ImageStatus",
        "PullImage",
        "RemoveImage",
        "ImageFsInfo",
    }


def test_a_method_handled_twice_is_refused():
    modules = ["pycontainerd.plugins.cri.server.runtime_info"] * 2
    with pytest.raises(errdefs.AlreadyExists, match="RuntimeService.Version"):
        server.find_handlers(server.RUNTIME_SERVICE, modules)
