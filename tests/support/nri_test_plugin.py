"""An NRI plugin for the tests, built on pycontainerd.core.nri.stub.

Settings (JSON) come from argv[1] (external runs) or the Configure config text (pre-installed
runs, from plugin_config_path). Every call is appended to settings["log"] as a JSON line.

    {"log": path, "adjust": {"env": {...}, "annotations": {...}, "mounts": [{...}],
     "memory_limit": N, "remove_env": [...]}, "sleep": seconds, "crash": true,
     "sync_sleep": seconds (Synchronize takes that long),
     "validate": {"reject": reason or "", "require_env": NAME} (subscribes as a validator),
     "hooks": true (adds a prestart hook), "cdi_devices": [names],
     "events": "createcontainer,...", "update": {"container_id": id, "memory_limit": N}}
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from pycontainerd.core.nri import api
from pycontainerd.core.nri.api import pb
from pycontainerd.core.nri.stub import Stub


class TestPlugin:
    def __init__(self, settings: dict) -> None:
        self.settings = settings

    def record(self, what: str, **kw: object) -> None:
        path = self.settings.get("log")
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"event": what, "pid": os.getpid(), **kw}) + "\n")

    def configure(self, config: str, runtime_name: str, runtime_version: str) -> str | None:
        if config:
            self.settings.update(json.loads(config))
        self.record(
            "Configure",
            runtime=runtime_name,
            config=config,
            env={k: v for k, v in os.environ.items() if k.startswith("NRI_")},
        )
        if self.settings.get("events"):
            return self.settings["events"]
        # everything handled, but validation only when asked for
        mask = api.VALID_EVENTS & ~api.event_bit(pb.VALIDATE_CONTAINER_ADJUSTMENT)
        if "validate" in self.settings:
            mask |= api.event_bit(pb.VALIDATE_CONTAINER_ADJUSTMENT)
        return mask

    async def synchronize(self, pods, containers):
        self.record("Synchronize", pods=[p.id for p in pods], containers=[c.id for c in containers])
        if self.settings.get("sync_sleep"):
            await asyncio.sleep(self.settings["sync_sleep"])
            self.record("Synchronized")
        return []

    async def create_container(self, pod, container):
        self.record(
            "CreateContainer",
            pod=pod.id,
            container=container.id,
            env=list(container.env),
            annotations=dict(container.annotations),
            pod_memory=pod.linux.pod_resources.memory.limit.value,
        )
        if self.settings.get("crash"):
            os._exit(3)
        if self.settings.get("sleep"):
            await asyncio.sleep(self.settings["sleep"])
        spec = self.settings.get("adjust") or {}
        adj = pb.ContainerAdjustment()
        for k, v in (spec.get("env") or {}).items():
            adj.env.add(key=k, value=v)
        for k in spec.get("remove_env") or []:
            adj.env.add(key="-" + k)
        for k, v in (spec.get("annotations") or {}).items():
            adj.annotations[k] = v
        for m in spec.get("mounts") or []:
            adj.mounts.add(**m)
        if spec.get("memory_limit"):
            adj.linux.resources.memory.limit.value = spec["memory_limit"]
        for name in spec.get("cdi_devices") or []:
            adj.CDI_devices.add(name=name)
        if spec.get("hooks"):
            adj.hooks.prestart.add(path="/bin/true", args=["true"])
        updates = []
        if self.settings.get("update"):
            u = self.settings["update"]
            up = pb.ContainerUpdate(container_id=u["container_id"])
            up.linux.resources.memory.limit.value = u["memory_limit"]
            updates.append(up)
        return adj, updates

    def _event(name):  # noqa: N805
        def handler(self, pod, container=None):
            self.record(name, pod=pod.id, container=container.id if container else "")

        return handler

    run_pod_sandbox = _event("RunPodSandbox")
    stop_pod_sandbox = _event("StopPodSandbox")
    remove_pod_sandbox = _event("RemovePodSandbox")
    post_create_container = _event("PostCreateContainer")
    start_container = _event("StartContainer")
    post_start_container = _event("PostStartContainer")
    post_update_container = _event("PostUpdateContainer")
    remove_container = _event("RemoveContainer")

    def stop_container(self, pod, container):
        self.record("StopContainer", pod=pod.id, container=container.id)
        return []

    def update_container(self, pod, container, resources):
        self.record("UpdateContainer", pod=pod.id, container=container.id)
        return []

    def update_pod_sandbox(self, pod, overhead, resources):
        self.record(
            "UpdatePodSandbox",
            pod=pod.id,
            memory_limit=resources.memory.limit.value,
            overhead_cpu_shares=overhead.cpu.shares.value,
        )

    def post_update_pod_sandbox(self, pod):
        self.record("PostUpdatePodSandbox", pod=pod.id)

    def validate_container_adjustment(self, request):
        owners = request.owners.owners[request.container.id]
        env_field = pb.Field.Value("Env")
        self.record(
            "ValidateContainerAdjustment",
            container=request.container.id,
            plugins=[f"{p.index}-{p.name}" for p in request.plugins],
            env=[f"{e.key}={e.value}" for e in request.adjust.env],
            env_owners=dict(owners.compound[env_field].owners) if owners.compound else {},
        )
        rule = self.settings.get("validate") or {}
        if rule.get("reject"):
            return rule["reject"]
        if rule.get("require_env") and rule["require_env"] not in {
            e.key for e in request.adjust.env
        }:
            return f"env {rule['require_env']} is required"
        return None

    def shutdown(self):
        self.record("Shutdown")


def main() -> None:
    settings = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    stub = Stub(
        TestPlugin(settings),
        name=settings.get("name", "test"),
        index=settings.get("index", "50"),
        socket_path=settings.get("socket", "/var/run/nri/nri.sock"),
    )
    asyncio.run(stub.run())


if __name__ == "__main__":
    main()
