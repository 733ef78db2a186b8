"""Every service's full method names and streaming kinds, as a client stub dials them."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

# Space-separated methods in declaration order: "M" unary, "M>" server-streaming,
# "<M>" bidi-streaming, "<M" client-streaming.
EXPECTED: dict[tuple[str, str], str] = {
    (
        "containerd.services.introspection.v1.introspection",
        "Introspection",
    ): "Plugins Server PluginInfo",
    ("containerd.services.version.v1.version", "Version"): "Version",
    ("containerd.services.namespaces.v1.namespace", "Namespaces"): "Get List Create Update Delete",
    (
        "containerd.services.content.v1.content",
        "Content",
    ): "Info Update List> Delete Read> Status ListStatuses <Write> Abort",
    ("containerd.services.images.v1.images", "Images"): "Get List Create Update Delete",
    (
        "containerd.services.containers.v1.containers",
        "Containers",
    ): "Get List ListStream> Create Update Delete",
    (
        "containerd.services.leases.v1.leases",
        "Leases",
    ): "Create Delete List AddResource DeleteResource ListResources",
    (
        "containerd.services.snapshots.v1.snapshots",
        "Snapshots",
    ): "Prepare View Mounts Commit Remove Stat Update List> Usage Cleanup",
    ("containerd.services.diff.v1.diff", "Diff"): "Apply Diff",
    ("containerd.services.events.v1.events", "Events"): "Publish Forward Subscribe>",
    ("containerd.services.ttrpc.events.v1.events", "Events"): "Forward",
    ("containerd.services.tasks.v1.tasks", "Tasks"): (
        "Create Start Delete DeleteProcess Get List Kill Exec "
        "ResizePty CloseIO Pause Resume ListPids Checkpoint Update Metrics Wait"
    ),
    ("containerd.services.sandbox.v1.sandbox", "Store"): "Create Update Delete List Get",
    (
        "containerd.services.sandbox.v1.sandbox",
        "Controller",
    ): "Create Start Platform Stop Wait Status Shutdown Metrics Update",
    ("containerd.services.transfer.v1.transfer", "Transfer"): "Transfer",
    ("containerd.services.streaming.v1.streaming", "Streaming"): "<Stream>",
    ("containerd.runtime.task.v2.shim", "Task"): (
        "State Create Start Delete Pids Pause Resume Checkpoint "
        "Kill Exec ResizePty CloseIO Update Wait Stats Connect Shutdown"
    ),
    ("containerd.runtime.task.v3.shim", "Task"): (
        "State Create Start Delete Pids Pause Resume Checkpoint "
        "Kill Exec ResizePty CloseIO Update Wait Stats Connect Shutdown"
    ),
    ("containerd.runtime.sandbox.v1.sandbox", "Sandbox"): (
        "CreateSandbox StartSandbox Platform StopSandbox "
        "WaitSandbox SandboxStatus PingSandbox ShutdownSandbox SandboxMetrics"
    ),
    ("grpc.health.v1.health", "Health"): "Check List Watch>",
    ("k8s.cri.runtime.v1.api", "RuntimeService"): (
        "Version RunPodSandbox StopPodSandbox RemovePodSandbox PodSandboxStatus ListPodSandbox "
        "StreamPodSandboxes> CreateContainer StartContainer StopContainer RemoveContainer "
        "ListContainers StreamContainers> ContainerStatus UpdateContainerResources "
        "ReopenContainerLog ExecSync Exec Attach PortForward ContainerStats ListContainerStats "
        "StreamContainerStats> PodSandboxStats ListPodSandboxStats StreamPodSandboxStats> "
        "UpdateRuntimeConfig Status CheckpointContainer GetContainerEvents> "
        "ListMetricDescriptors ListPodSandboxMetrics StreamPodSandboxMetrics> RuntimeConfig "
        "UpdatePodSandboxResources"
    ),
    ("k8s.cri.runtime.v1.api", "ImageService"): (
        "ListImages StreamImages> ImageStatus PullImage RemoveImage ImageFsInfo"
    ),
    ("nri.pkg.api.v1alpha1.api", "Runtime"): "RegisterPlugin UpdateContainers",
    ("nri.pkg.api.v1alpha1.api", "Plugin"): (
        "Configure Synchronize Shutdown RunPodSandbox UpdatePodSandbox PostUpdatePodSandbox "
        "StopPodSandbox RemovePodSandbox CreateContainer PostCreateContainer StartContainer "
        "PostStartContainer UpdateContainer PostUpdateContainer StopContainer RemoveContainer "
        "StateChange ValidateContainerAdjustment"
    ),
    ("nri.pkg.api.v1alpha1.api", "HostFunctions"): "Log",
}

PROTO_PACKAGE = {
    "containerd.services.ttrpc.events.v1.events": "containerd.services.events.ttrpc.v1",
    "containerd.runtime.task.v2.shim": "containerd.task.v2",
    "containerd.runtime.task.v3.shim": "containerd.task.v3",
    "k8s.cri.runtime.v1.api": "runtime.v1",
}

_KINDS = {
    (False, False): "unary_unary",
    (False, True): "unary_stream",
    (True, False): "stream_unary",
    (True, True): "stream_stream",
}


class _RecordingChannel:
    """Stands in for grpc.Channel and records what each stub attribute dials."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, kind: str) -> Any:
        def dial(method: str, **_: Any) -> None:
            self.calls.append((kind, method))

        return dial


def _parse(notation: str) -> tuple[str, bool, bool]:
    return notation.strip("<>"), notation.startswith("<"), notation.endswith(">")


def _package(module: str) -> str:
    return PROTO_PACKAGE.get(module, module.rsplit(".", 1)[0])


@pytest.mark.parametrize(("module", "service"), sorted(EXPECTED), ids=lambda v: str(v))
def test_stub_dials_the_upstream_full_method_names(module: str, service: str) -> None:
    grpc_module = importlib.import_module(f"pycontainerd.api.{module}_pb2_grpc")
    channel = _RecordingChannel()
    getattr(grpc_module, f"{service}Stub")(channel)

    expected = []
    for notation in EXPECTED[(module, service)].split():
        name, client_stream, server_stream = _parse(notation)
        kind = _KINDS[(client_stream, server_stream)]
        expected.append((kind, f"/{_package(module)}.{service}/{name}"))
    assert channel.calls == expected


@pytest.mark.parametrize(("module", "service"), sorted(EXPECTED), ids=lambda v: str(v))
def test_descriptor_declares_exactly_the_expected_methods(module: str, service: str) -> None:
    pb2 = importlib.import_module(f"pycontainerd.api.{module}_pb2")
    desc = pb2.DESCRIPTOR.services_by_name[service]
    assert desc.full_name == f"{_package(module)}.{service}"
    got = [(m.name, m.client_streaming, m.server_streaming) for m in desc.methods]
    assert got == [_parse(n) for n in EXPECTED[(module, service)].split()]


def test_every_generated_service_is_listed() -> None:
    from pycontainerd.api import generate

    listed = {(m, s) for m, s in EXPECTED}
    found = set()
    for proto in generate.find_protos():
        module = proto.removesuffix(".proto").replace("/", ".")
        pb2 = importlib.import_module(f"pycontainerd.api.{module}_pb2")
        found |= {(module, name) for name in pb2.DESCRIPTOR.services_by_name}
    assert found - listed == set(), "add the new service to EXPECTED"
    assert listed - found == set()
