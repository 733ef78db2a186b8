"""Validating merged adjustments (ValidateContainerAdjustment, the default validator) and the
pod-sandbox update events, with real plugin processes where a plugin is involved."""

from __future__ import annotations

import types as pytypes

import nritest
import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.nri import Container, PodSandbox, hooks
from pycontainerd.core.nri.adjustment import CreateResult, Owners
from pycontainerd.core.nri.api import pb
from pycontainerd.core.nri.config import DefaultValidatorConfig
from pycontainerd.core.nri.validator import (
    DefaultValidator,
    ValidationError,
    default_validator,
    effective_annotation,
)
from pycontainerd.core.plugin import hookimpl

POD = PodSandbox(id="pod1", name="web", namespace="default", uid="u1")
events, wait_for = nritest.events, nritest.wait_for


def install(paths, name: str, settings: dict):
    return nritest.install(paths.plugins, paths.conf, name, settings)


ENV = pb.Field.Value("Env")
HOOKS = pb.Field.Value("OciHooks")
MEM = pb.Field.Value("MemLimit")


# -- who set what


def test_owners_become_nri_owning_plugins_simple_compound_and_accumulated_hooks():
    req = pb.CreateContainerRequest(container=pb.Container(id="c1"))
    result = CreateResult(req)
    a = pb.ContainerAdjustment()
    a.env.add(key="A", value="1")
    a.linux.resources.memory.limit.value = 1 << 20
    a.hooks.prestart.add(path="/bin/a")
    result.apply_adjustment(a, "10-a")
    b = pb.ContainerAdjustment()
    b.env.add(key="B", value="2")
    b.hooks.poststop.add(path="/bin/b")
    result.apply_adjustment(b, "20-b")
    owners = result.owners.to_proto("c1").owners["c1"]
    assert dict(owners.compound[ENV].owners) == {"A": "10-a", "B": "20-b"}
    assert owners.simple[MEM] == "10-a"
    assert owners.simple[HOOKS] == "10-a,20-b"
    assert list(Owners().to_proto().owners) == []


# -- the default validator (pure policy)


def _request(**kw) -> pb.ValidateContainerAdjustmentRequest:
    req = pb.ValidateContainerAdjustmentRequest(
        pod=pb.PodSandbox(id="p", name="web"),
        container=pb.Container(id="c1", name="app"),
        adjust=pb.ContainerAdjustment(),
        plugins=[pb.PluginInstance(name="logger", index="10")],
    )
    for k, v in kw.items():
        getattr(req, k).CopyFrom(v) if hasattr(v, "CopyFrom") else setattr(req, k, v)
    return req


def _owned(req, *, simple=None, compound=None):
    fo = req.owners.owners["c1"]
    for field, plugin in (simple or {}).items():
        fo.simple[pb.Field.Value(field)] = plugin
    for field, keys in (compound or {}).items():
        fo.compound[pb.Field.Value(field)].owners.update(keys)
    return req


def _refused(cfg: DefaultValidatorConfig, req) -> str:
    with pytest.raises(ValidationError) as e:
        DefaultValidator(cfg).validate(req)
    return str(e.value)


def test_default_validator_accepts_anything_it_is_not_told_to_refuse():
    req = _owned(_request(), simple={"OciHooks": "10-a", "SeccompPolicy": "10-a"})
    DefaultValidator(DefaultValidatorConfig(enable=True)).validate(req)


def test_default_validator_refuses_hook_injection_naming_the_plugins():
    cfg = DefaultValidatorConfig(enable=True, reject_oci_hook_adjustment=True)
    one = _owned(_request(), simple={"OciHooks": "10-a"})
    assert _refused(cfg, one) == (
        'validation error: plugin "10-a" attempted restricted OCI hook injection'
    )
    two = _owned(_request(), simple={"OciHooks": "10-a,20-b"})
    assert 'plugins "10-a,20-b"' in _refused(cfg, two)
    DefaultValidator(cfg).validate(_request())  # nobody injected hooks


@pytest.mark.parametrize(
    ("profile", "flag", "word"),
    [
        (None, "reject_unconfined_seccomp_adjustment", "unconfined"),
        (pb.SecurityProfile.UNCONFINED, "reject_unconfined_seccomp_adjustment", "unconfined"),
        (
            pb.SecurityProfile.RUNTIME_DEFAULT,
            "reject_runtime_default_seccomp_adjustment",
            "runtime default",
        ),
        (pb.SecurityProfile.LOCALHOST, "reject_custom_seccomp_adjustment", "custom"),
    ],
)
def test_default_validator_seccomp_rules_follow_the_requested_profile(profile, flag, word):
    req = _owned(_request(), simple={"SeccompPolicy": "10-a"})
    if profile is not None:
        req.container.linux.seccomp_profile.profile_type = profile
    assert f"restricted {word} seccomp" in _refused(
        DefaultValidatorConfig(enable=True, **{flag: True}), req
    )
    others = {
        f: True
        for f in (
            "reject_unconfined_seccomp_adjustment",
            "reject_runtime_default_seccomp_adjustment",
            "reject_custom_seccomp_adjustment",
        )
        if f != flag
    }
    DefaultValidator(DefaultValidatorConfig(enable=True, **others)).validate(req)


def test_default_validator_namespace_and_sysctl_rules():
    req = _owned(_request(), compound={"Namespace": {"network": "10-a"}})
    cfg = DefaultValidatorConfig(enable=True, reject_namespace_adjustment=True)
    assert _refused(cfg, req) == (
        'validation error: attempted restricted namespace adjustment by plugin(s) "10-a" '
        '(namespace "network")'
    )
    req = _owned(_request(), compound={"Sysctl": {"net.core.somaxconn": "20-b"}})
    req.adjust.linux.sysctl["net.core.somaxconn"] = "1024"
    cfg = DefaultValidatorConfig(enable=True, reject_sysctl_adjustment=True)
    assert _refused(cfg, req).endswith("sysctl adjustment by plugin(s) 20-b")


def test_required_plugins_from_config_and_pod_annotations():
    cfg = DefaultValidatorConfig(enable=True, required_plugins=["logger"])
    DefaultValidator(cfg).validate(_request())  # present by name
    cfg = DefaultValidatorConfig(enable=True, required_plugins=["10-logger", "90-audit"])
    assert _refused(cfg, _request()) == 'validation error: required plugin "90-audit" not present'

    cfg = DefaultValidatorConfig(enable=True, tolerate_missing_plugins_annotation="tolerate")
    req = _request()
    req.pod.annotations["required-plugins.noderesource.dev/container.app"] = "- a\n- 20-b\n"
    req.pod.annotations["required-plugins.noderesource.dev/pod"] = "[logger]"
    assert _refused(cfg, req) == 'validation error: required plugins "a,20-b" not present'
    req.pod.annotations["tolerate/container.app"] = "true"
    DefaultValidator(cfg).validate(req)
    req.pod.annotations["tolerate/container.app"] = "maybe"
    assert "invalid tolerate annotation" in _refused(cfg, req)

    other = _request()
    other.pod.annotations["required-plugins.noderesource.dev"] = "oops: {"
    assert "invalid required-plugins.noderesource.dev annotation" in _refused(
        DefaultValidatorConfig(enable=True), other
    )


def test_effective_annotation_prefers_the_container_then_the_pod():
    pod = pb.PodSandbox()
    assert effective_annotation(pod, "k", "app") is None
    pod.annotations["k"] = "bare"
    assert effective_annotation(pod, "k", "app") == "bare"
    pod.annotations["k/pod"] = "pod"
    assert effective_annotation(pod, "k", "app") == "pod"
    pod.annotations["k/container.app"] = "ctr"
    assert effective_annotation(pod, "k", "app") == "ctr"
    assert effective_annotation(pod, "k", "other") == "pod"


def test_default_validator_is_a_builtin_plugin_only_when_enabled():
    assert default_validator(None) is None
    assert default_validator(DefaultValidatorConfig()) is None
    p = default_validator(DefaultValidatorConfig(enable=True))
    assert p.name == "00-default-validator" and p.kind == "builtin"
    assert list(p.handlers) == ["ValidateContainerAdjustment"]


# -- validation in the adaptation, with plugin processes


async def test_an_external_validator_sees_the_merged_adjustment_and_can_refuse(paths, make_nri):
    install(paths, "10-adj", {"adjust": {"env": {"A": "1"}}})
    log = paths.root / "val.jsonl"
    install(paths, "90-val", {"log": str(log), "validate": {"require_env": "B"}})
    nri = await make_nri()
    assert [p.name for p in nri.plugins] == ["10-adj", "90-val"]
    with pytest.raises(errdefs.FailedPrecondition) as e:
        await nri.create_container(POD, Container(id="c1", pod_sandbox_id="pod1", name="app"))
    assert str(e.value) == (
        'validator "90-val" rejected container adjustment, reason: env B is required'
    )
    seen = [x for x in events(log) if x["event"] == "ValidateContainerAdjustment"][0]
    assert seen["plugins"] == ["10-adj", "90-val"]
    assert seen["env"] == ["A=1"] and seen["env_owners"] == {"A": "10-adj"}
    assert [p.name for p in nri.plugins] == ["10-adj", "90-val"]  # a refusal drops nobody


async def test_a_validator_that_accepts_lets_the_container_through(paths, make_nri):
    install(paths, "10-adj", {"adjust": {"env": {"B": "1"}}})
    install(paths, "90-val", {"validate": {"require_env": "B"}})
    nri = await make_nri()
    res = await nri.create_container(POD, Container(id="c1", pod_sandbox_id="pod1"))
    assert [(e.key, e.value) for e in res.adjustment.env] == [("B", "1")]


async def test_default_validator_refuses_a_plugins_hooks_and_requires_plugins(paths, make_nri):
    install(paths, "10-hooker", {"adjust": {"hooks": True}})
    strict = default_validator(
        DefaultValidatorConfig(
            enable=True, reject_oci_hook_adjustment=True, required_plugins=["hooker"]
        )
    )
    nri = await make_nri(builtin=[strict])
    assert [p.name for p in nri.plugins] == ["00-default-validator", "10-hooker"]
    with pytest.raises(errdefs.FailedPrecondition) as e:
        await nri.create_container(POD, Container(id="c1", pod_sandbox_id="pod1"))
    assert 'validator "00-default-validator" rejected container adjustment, reason: ' in str(
        e.value
    )
    assert 'plugin "10-hooker" attempted restricted OCI hook injection' in str(e.value)


async def test_a_required_plugin_that_is_gone_blocks_creation(paths, make_nri):
    needs = default_validator(DefaultValidatorConfig(enable=True, required_plugins=["audit"]))
    nri = await make_nri(builtin=[needs])
    with pytest.raises(errdefs.FailedPrecondition, match='required plugin "audit" not present'):
        await nri.create_container(POD, Container(id="c1", pod_sandbox_id="pod1"))


async def test_in_process_validator_and_pod_update_hooks(paths, make_nri):
    mod = pytypes.ModuleType("policy")
    mod.NRI_PLUGIN_INDEX = "05"
    seen: list = []

    @hookimpl
    def pycontainerd_nri_validate_container_adjustment(request):
        seen.append(("validate", request.container.id))
        return "no thanks" if request.container.name == "bad" else None

    @hookimpl
    async def pycontainerd_nri_update_pod_sandbox(pod, overhead, resources):
        seen.append(("update", pod.id, resources.memory.limit.value))

    @hookimpl
    def pycontainerd_nri_post_update_pod_sandbox(pod):
        seen.append(("post-update", pod.id))

    for name in dir():
        if name.startswith("pycontainerd_nri_"):
            setattr(mod, name, locals()[name])
    builtin = hooks.builtin_plugins(hooks.load(autoload=False, extra=[mod]))
    nri = await make_nri(builtin=builtin)
    await nri.create_container(POD, Container(id="ok", pod_sandbox_id="pod1", name="good"))
    with pytest.raises(errdefs.FailedPrecondition, match="05-policy.*no thanks"):
        await nri.create_container(POD, Container(id="no", pod_sandbox_id="pod1", name="bad"))
    res = pb.LinuxResources()
    res.memory.limit.value = 256 << 20
    await nri.update_pod_sandbox(POD, None, res)
    await nri.post_update_pod_sandbox(POD)
    assert seen == [
        ("validate", "ok"),
        ("validate", "no"),
        ("update", "pod1", 256 << 20),
        ("post-update", "pod1"),
    ]


async def test_pod_sandbox_updates_reach_a_plugin_process(paths, make_nri):
    log = paths.root / "upd.jsonl"
    install(paths, "10-watch", {"log": str(log)})
    nri = await make_nri()
    overhead, res = pb.LinuxResources(), pb.LinuxResources()
    overhead.cpu.shares.value = 10
    res.memory.limit.value = 128 << 20
    await nri.update_pod_sandbox(PodSandbox(id="pod1", name="web"), overhead, res)
    await nri.post_update_pod_sandbox(PodSandbox(id="pod1", name="web"))
    await wait_for(lambda: events(log)[-1]["event"] == "PostUpdatePodSandbox")
    got = [e for e in events(log) if "Update" in e["event"]]
    assert got[0] == {
        **got[0],
        "event": "UpdatePodSandbox",
        "pod": "pod1",
        "memory_limit": 128 << 20,
        "overhead_cpu_shares": 10,
    }
    assert got[1]["event"] == "PostUpdatePodSandbox"
