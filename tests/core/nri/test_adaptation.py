"""The NRI adaptation with real plugin processes (the stub-based test plugin) over the NRI
socket and launched from the plugin directory."""

from __future__ import annotations

import asyncio
import json
import os
import time
import types as pytypes
from pathlib import Path

import nritest
import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.metrics import render as render_metrics
from pycontainerd.core.nri import NRI, Config, Container, PodSandbox, apply_adjustment, hooks
from pycontainerd.core.nri.api import pb
from pycontainerd.core.plugin import hookimpl

POD = PodSandbox(id="pod1", name="web", namespace="default", uid="u1")
EXISTING = Container(id="c0", pod_sandbox_id="pod1", name="old", state="running")
events, wait_for = nritest.events, nritest.wait_for


def install(paths, name: str, settings: dict) -> Path:
    return nritest.install(paths.plugins, paths.conf, name, settings)


def spec() -> dict:
    return {"process": {"args": ["sh"], "env": ["PATH=/bin"]}, "mounts": [], "linux": {}}


ADJUST = {
    "env": {"NRI_INJECTED": "yes"},
    "annotations": {"nri.test/adjusted": "true"},
    "mounts": [
        {"destination": "/nri", "source": "/tmp", "type": "bind", "options": ["rbind", "ro"]}
    ],
    "memory_limit": 64 << 20,
}


def assert_adjusted(s: dict) -> None:
    assert "NRI_INJECTED=yes" in s["process"]["env"]
    assert s["annotations"]["nri.test/adjusted"] == "true"
    assert {
        "destination": "/nri",
        "source": "/tmp",
        "type": "bind",
        "options": ["rbind", "ro"],
    } in s["mounts"]
    assert s["linux"]["resources"]["memory"]["limit"] == 64 << 20


async def test_external_plugin_registers_syncs_and_adjusts_a_container(paths, make_nri, external):
    nri = await make_nri()
    log = paths.root / "ext.jsonl"
    await external(log=str(log), index="10", name="ext", adjust=ADJUST)
    await wait_for(lambda: [p.name for p in nri.plugins] == ["10-ext"])
    assert nri.plugins[0].kind == "external"
    got = events(log)
    assert got[0]["event"] == "Configure" and got[0]["runtime"] == "pycontainerd"
    assert got[1] == {**got[1], "event": "Synchronize", "pods": ["pod1"], "containers": ["c0"]}

    await nri.run_pod_sandbox(POD)
    s = spec()
    ctr = Container.from_oci_spec(s, id="c1", pod_sandbox_id="pod1", name="app")
    res = await nri.create_container(POD, ctr)
    apply_adjustment(s, res.adjustment)
    assert_adjusted(s)
    await nri.post_create_container(POD, ctr)
    await nri.start_container(POD, ctr)
    await nri.post_start_container(POD, ctr)
    await nri.stop_container(POD, ctr)
    await nri.remove_container(POD, ctr)
    await nri.stop_pod_sandbox(POD)
    await nri.remove_pod_sandbox(POD)
    names = [e["event"] for e in events(log)][2:]
    assert names == [
        "RunPodSandbox",
        "CreateContainer",
        "PostCreateContainer",
        "StartContainer",
        "PostStartContainer",
        "StopContainer",
        "RemoveContainer",
        "StopPodSandbox",
        "RemovePodSandbox",
    ]
    await nri.close()
    await wait_for(lambda: events(log)[-1]["event"] == "Shutdown")


async def test_preinstalled_plugin_is_launched_with_fd3_and_config(paths, make_nri):
    log = paths.root / "pre.jsonl"
    install(paths, "05-pre", {"log": str(log), "adjust": ADJUST})
    (paths.plugins / "not-a-plugin").write_text("x")  # no NN- prefix: ignored
    (paths.plugins / "07-noexec").write_text("x")  # not executable: ignored
    nri = await make_nri()
    assert [(p.name, p.kind) for p in nri.plugins] == [("05-pre", "pre-installed")]
    configure = events(log)[0]
    assert configure["env"] == {
        "NRI_PLUGIN_NAME": "pre",
        "NRI_PLUGIN_IDX": "05",
        "NRI_PLUGIN_SOCKET": "3",
    }
    assert json.loads(configure["config"])["adjust"] == ADJUST
    assert events(log)[1]["pods"] == ["pod1"]
    s = spec()
    res = await nri.create_container(
        POD, Container.from_oci_spec(s, id="c1", pod_sandbox_id="pod1")
    )
    apply_adjustment(s, res.adjustment)
    assert_adjusted(s)
    proc = nri.plugins[0].process
    await nri.close()
    assert proc.returncode is not None  # stopped and reaped


async def test_subscription_mask_limits_events(paths, make_nri, external):
    nri = await make_nri()
    log = paths.root / "mask.jsonl"
    await external(log=str(log), index="10", name="picky", events="createcontainer")
    await wait_for(lambda: len(nri.plugins) == 1)
    assert nri.plugins[0].events == 1 << (pb.CREATE_CONTAINER - 1)
    ctr = Container(id="c1", pod_sandbox_id="pod1")
    await nri.run_pod_sandbox(POD)
    await nri.create_container(POD, ctr)
    await nri.start_container(POD, ctr)
    assert [e["event"] for e in events(log)][2:] == ["CreateContainer"]


async def test_two_plugins_setting_one_field_is_a_conflict_naming_both(paths, make_nri):
    install(paths, "10-first", {"adjust": {"memory_limit": 1 << 20}})
    install(paths, "20-second", {"adjust": {"memory_limit": 2 << 20}})
    nri = await make_nri()
    assert [p.name for p in nri.plugins] == ["10-first", "20-second"]
    with pytest.raises(errdefs.Conflict) as e:
        await nri.create_container(POD, Container(id="c1", pod_sandbox_id="pod1"))
    assert str(e.value) == 'plugins "20-second" and "10-first" both tried to set MemLimit'


async def test_plugins_run_in_index_order_and_see_earlier_adjustments(paths, make_nri, external):
    install(
        paths, "30-late", {"log": str(paths.root / "late.jsonl"), "adjust": {"env": {"B": "2"}}}
    )
    nri = await make_nri()
    await external(index="10", name="early", adjust={"env": {"A": "1"}})
    await wait_for(lambda: len(nri.plugins) == 2)
    assert [p.name for p in nri.plugins] == ["10-early", "30-late"]
    res = await nri.create_container(POD, Container(id="c1", pod_sandbox_id="pod1", env=["X=0"]))
    assert [(e.key, e.value) for e in res.adjustment.env] == [("A", "1"), ("B", "2")]
    late = [e for e in events(paths.root / "late.jsonl") if e["event"] == "CreateContainer"]
    assert late[0]["env"] == ["X=0", "A=1"]


async def test_a_plugin_may_synchronize_for_longer_than_a_request_and_misses_nothing(
    paths, make_nri, external
):
    # Synchronize is bounded by the registration timeout (5 s here), not the request timeout;
    # a container created while the plugin synchronizes reaches it once it is in.
    nri = await make_nri(request_timeout=0.5)
    log = paths.root / "slowsync.jsonl"
    await external(log=str(log), index="10", name="slowsync", sync_sleep=1.5)
    await wait_for(lambda: "Synchronize" in [e["event"] for e in events(log)])
    created = asyncio.create_task(
        nri.create_container(POD, Container(id="c9", pod_sandbox_id="pod1"))
    )
    await asyncio.wait_for(created, 10)
    assert [p.name for p in nri.plugins] == ["10-slowsync"]
    names = [(e["event"], e.get("container")) for e in events(log)]
    assert names[1:] == [
        ("Synchronize", None),
        ("Synchronized", None),
        ("CreateContainer", "c9"),
    ]


async def test_slow_and_crashing_plugins_are_dropped_within_the_timeout(paths, make_nri, external):
    install(paths, "10-sleepy", {"sleep": 30})
    install(paths, "20-crashy", {"crash": True})
    install(paths, "30-good", {"adjust": {"env": {"OK": "1"}}})
    nri = await make_nri(request_timeout=1.0)
    assert [p.name for p in nri.plugins] == ["10-sleepy", "20-crashy", "30-good"]
    procs = [p.process for p in nri.plugins]
    t0 = time.monotonic()
    res = await nri.create_container(POD, Container(id="c1", pod_sandbox_id="pod1"))
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0 + 0.8, elapsed  # one timeout, not one per plugin or 30 s
    assert [(e.key, e.value) for e in res.adjustment.env] == [("OK", "1")]
    assert [p.name for p in nri.plugins] == ["30-good"]
    await wait_for(lambda: all(p.returncode is not None for p in procs[:2]))


async def test_synchronize_is_split_into_chunks(paths, make_nri, external):
    nri = await make_nri()
    nri.sync_chunk_limit = 2000
    many = [
        Container(id=f"c{i:03}", pod_sandbox_id="pod1", env=[f"V={'x' * 100}"]) for i in range(60)
    ]

    async def sync():
        return [POD], many

    log = paths.root / "sync.jsonl"
    await nri.synchronize(sync)  # nobody connected yet: nothing to do
    await external(log=str(log), index="10", name="sync")
    await wait_for(lambda: len(nri.plugins) == 1)
    got = [e for e in events(log) if e["event"] == "Synchronize"]
    assert len(got) == 1  # the stub collected every chunk into one call
    assert got[0]["containers"] == [c.id for c in many]


async def test_registration_timeout_drops_a_silent_peer(paths, make_nri):
    nri = await make_nri()
    nri.config.registration_timeout = 0.5
    r, w = await asyncio.open_unix_connection(str(paths.socket))
    t0 = time.monotonic()
    assert await asyncio.wait_for(r.read(), 5) == b""  # closed by the runtime
    assert time.monotonic() - t0 < 2.5
    w.close()
    assert nri.plugins == []


async def test_in_process_hooks_merge_like_plugins(paths, make_nri, external):
    mod = pytypes.ModuleType("my_nri_hooks")
    mod.NRI_PLUGIN_INDEX = "15"
    seen = []

    @hookimpl
    def pycontainerd_nri_synchronize(pods, containers):
        seen.append(("sync", [p.id for p in pods]))

    @hookimpl
    async def pycontainerd_nri_create_container(pod, container):
        seen.append(("create", container.id))
        adj = pb.ContainerAdjustment()
        adj.annotations["from"] = "hook"
        adj.linux.resources.memory.limit.value = 5
        return adj

    mod.pycontainerd_nri_synchronize = pycontainerd_nri_synchronize
    mod.pycontainerd_nri_create_container = pycontainerd_nri_create_container
    pm = hooks.load(autoload=False, extra=[mod])
    builtin = hooks.builtin_plugins(pm)
    assert [b.name for b in builtin] == ["15-my_nri_hooks"]
    nri = await make_nri(builtin=builtin)
    assert seen == [("sync", ["pod1"])]
    res = await nri.create_container(POD, Container(id="c1", pod_sandbox_id="pod1"))
    assert dict(res.adjustment.annotations) == {"from": "hook"}
    await external(index="20", name="ext", adjust={"memory_limit": 6})
    await wait_for(lambda: len(nri.plugins) == 2)
    with pytest.raises(errdefs.Conflict, match='plugins "20-ext" and "15-my_nri_hooks"'):
        await nri.create_container(POD, Container(id="c2", pod_sandbox_id="pod1"))


async def test_plugin_updates_other_containers_through_the_update_function(paths, external):
    applied = []

    async def update(updates):
        applied.extend((u.container_id, u.linux.resources.memory.limit.value) for u in updates)
        return []

    async def sync():
        return [POD], [EXISTING]

    nri = NRI(
        Config(
            socket_path=str(paths.socket),
            plugin_path=str(paths.plugins),
            plugin_config_path=str(paths.conf),
        )
    )
    await nri.start(sync=sync, update=update)
    try:
        await external(index="10", name="upd", update={"container_id": "c0", "memory_limit": 9})
        await wait_for(lambda: len(nri.plugins) == 1)
        res = await nri.create_container(POD, Container(id="c1", pod_sandbox_id="pod1"))
        assert [u.container_id for u in res.updates] == ["c0"]
        assert applied == [("c0", 9)]
    finally:
        await nri.close()


async def test_disable_connections_does_not_listen(paths, make_nri):
    nri = NRI(
        Config(
            socket_path=str(paths.socket),
            plugin_path=str(paths.plugins),
            plugin_config_path=str(paths.conf),
            disable_connections=True,
        )
    )
    await nri.start()
    assert not os.path.exists(paths.socket)
    await nri.close()


class _OldPlugin:
    """A plugin of NRI 0.8 vintage: no dedicated RPCs for the non-adjusting events."""

    def __init__(self) -> None:
        self.changes: list[tuple[int, str]] = []

    async def Configure(self, req):  # noqa: N802
        return pb.ConfigureResponse(events=0)  # 0: every event

    async def Synchronize(self, req):  # noqa: N802
        return pb.SynchronizeResponse()

    async def StateChange(self, req):  # noqa: N802
        self.changes.append((req.event, req.container.id or req.pod.id))
        return pb.Empty()


async def test_older_plugins_get_state_change_for_events_they_lack(paths, make_nri):
    from pycontainerd.core.nri import api, mux
    from pycontainerd.core.ttrpc import Client, Server

    nri = await make_nri()
    impl = _OldPlugin()
    r, w = await asyncio.open_unix_connection(str(paths.socket))
    trunk = mux.Mux(r, w)
    server = Server(require_same_user=False)
    server.register_service(pb.DESCRIPTOR.services_by_name["Plugin"], impl)
    serving = asyncio.create_task(server.serve_connection(*trunk.open(mux.PLUGIN_SERVICE_CONN)))
    client = Client(*trunk.open(mux.RUNTIME_SERVICE_CONN))
    trunk.start()
    try:
        await client.call(
            api.RUNTIME_SERVICE,
            "RegisterPlugin",
            pb.RegisterPluginRequest(plugin_name="old", plugin_idx="40"),
            pb.Empty,
            timeout=5,
        )
        await wait_for(lambda: len(nri.plugins) == 1)
        ctr = Container(id="c1", pod_sandbox_id="pod1")
        await nri.run_pod_sandbox(POD)
        # as in containerd, only notifications fall back to StateChange: a plugin that
        # subscribed to CreateContainer but does not implement it fails the call
        with pytest.raises(errdefs.NotImplemented_):
            await nri.create_container(POD, ctr)
        await nri.start_container(POD, ctr)
        await nri.post_start_container(POD, ctr)
        assert impl.changes == [
            (pb.RUN_POD_SANDBOX, "pod1"),
            (pb.START_CONTAINER, "c1"),
            (pb.POST_START_CONTAINER, "c1"),
        ]
    finally:
        await client.close()
        await trunk.close()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)


async def test_a_socket_in_use_by_another_runtime_is_never_taken_over(paths, make_nri):
    """A second runtime on the same NRI socket path fails to start NRI instead of unlinking
    the first one's live socket (a real containerd's NRI must survive us)."""
    from pycontainerd.core import errdefs

    first = await make_nri()
    with pytest.raises(errdefs.FailedPrecondition, match="in use by another runtime"):
        await make_nri()
    # the first runtime's socket still answers
    _, writer = await asyncio.open_unix_connection(str(paths.socket))
    writer.close()
    assert first is not None


async def test_metrics_count_invocations_outcomes_latency_and_adjustments(paths, make_nri):
    install(paths, "10-good", {"update": {"container_id": "c0", "memory_limit": 1 << 20}})
    install(paths, "20-sleepy", {"sleep": 30, "events": "createcontainer"})
    nri = await make_nri(request_timeout=0.5)
    m = nri.metrics
    assert m.invocations.value("10-good", "Configure", "success", "") == 1
    assert m.invocations.value("10-good", "Synchronize", "success", "") == 1
    await nri.create_container(POD, Container(id="c1", pod_sandbox_id="pod1"))
    assert m.invocations.value("10-good", "CreateContainer", "success", "") == 1
    assert m.invocations.value("20-sleepy", "CreateContainer", "error", "deadline_exceeded") == 1
    assert m.latency.count("20-sleepy", "CreateContainer") == 1
    assert m.adjustments.value("10-good", "CreateContainer", "update") == 1
    text = "\n".join(render_metrics(nri.prometheus_metrics()))
    assert "containerd_nri_active_plugins_total 1" in text  # the sleepy one was dropped
    assert (
        'containerd_nri_plugin_invocations_total{plugin="20-sleepy",operation="CreateContainer",'
        'status="error",error="deadline_exceeded"} 1'
    ) in text
    assert 'containerd_nri_plugin_latency_seconds_bucket{plugin="10-good"' in text
