"""Messages serialise to the bytes containerd (Go) produces for the same field numbers and types."""

from __future__ import annotations

from google.protobuf import any_pb2
from google.protobuf.message import Message

from pycontainerd.api.containerd.events import image_pb2 as image_events
from pycontainerd.api.containerd.events import task_pb2 as task_events
from pycontainerd.api.containerd.runtime.task.v3 import shim_pb2
from pycontainerd.api.containerd.services.containers.v1 import containers_pb2
from pycontainerd.api.containerd.services.images.v1 import images_pb2
from pycontainerd.api.containerd.services.introspection.v1 import introspection_pb2
from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2
from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2
from pycontainerd.api.containerd.types import descriptor_pb2, event_pb2
from pycontainerd.api.containerd.types import sandbox_pb2 as types_sandbox
from pycontainerd.api.containerd.types.runc.options import oci_pb2
from pycontainerd.api.containerd.types.task import task_pb2
from pycontainerd.api.containerd.types.transfer import imagestore_pb2, registry_pb2
from pycontainerd.api.google.rpc import status_pb2
from pycontainerd.api.grpc.health.v1 import health_pb2
from pycontainerd.api.ttrpc import request_pb2


def _roundtrip(msg: Message, wire: bytes) -> None:
    assert msg.SerializeToString(deterministic=True) == wire
    assert type(msg).FromString(wire) == msg


def test_ttrpc_request_fields_one_to_five() -> None:
    msg = request_pb2.Request(
        service="a",
        method="b",
        payload=b"x",
        timeout_nano=1000,
        metadata=[request_pb2.KeyValue(key="k", value="v")],
    )
    wire = bytes.fromhex("0a0161 120162 1a0178 20e807 2a06 0a016b 120176".replace(" ", ""))
    _roundtrip(msg, wire)


def test_ttrpc_response_carries_google_rpc_status_in_field_one() -> None:
    msg = request_pb2.Response(status=status_pb2.Status(code=5, message="nf"))
    _roundtrip(msg, bytes.fromhex("0a06 0805 12026e66".replace(" ", "")))


def test_plugin_init_err_is_field_seven() -> None:
    msg = introspection_pb2.Plugin(init_err=status_pb2.Status(code=2, message="x"))
    _roundtrip(msg, bytes.fromhex("3a05 0802 120178".replace(" ", "")))


def test_container_sandbox_is_field_eleven() -> None:
    _roundtrip(containers_pb2.Container(sandbox="s"), bytes.fromhex("5a0173"))


def test_create_task_request_runtime_path_is_field_ten() -> None:
    _roundtrip(tasks_pb2.CreateTaskRequest(runtime_path="r"), bytes.fromhex("520172"))


def test_descriptor_skips_field_four_for_annotations() -> None:
    msg = descriptor_pb2.Descriptor(media_type="m", digest="d", size=3, annotations={"a": "b"})
    wire = bytes.fromhex("0a016d 120164 1803 2a06 0a0161 120162".replace(" ", ""))
    _roundtrip(msg, wire)


def test_image_timestamps_are_fields_seven_and_eight() -> None:
    msg = images_pb2.Image(name="n")
    msg.created_at.seconds = 1
    msg.updated_at.seconds = 2
    _roundtrip(msg, bytes.fromhex("0a016e 3a020801 42020802".replace(" ", "")))


def test_delete_image_target_has_presence() -> None:
    msg = images_pb2.DeleteImageRequest(name="n")
    assert not msg.HasField("target")
    msg.target.SetInParent()
    _roundtrip(msg, bytes.fromhex("0a016e 1a00".replace(" ", "")))


def test_envelope_namespace_and_topic() -> None:
    msg = event_pb2.Envelope(namespace="n", topic="/t")
    _roundtrip(msg, bytes.fromhex("12016e 1a022f74".replace(" ", "")))


def test_shim_state_response_status_enum_and_exec_id() -> None:
    msg = shim_pb2.StateResponse(status=task_pb2.RUNNING, exec_id="e")
    _roundtrip(msg, bytes.fromhex("2002 5a0165".replace(" ", "")))
    assert task_pb2.Status.Name(5) == "PAUSING"


def test_sandboxer_is_field_ten_except_in_controller_update() -> None:
    _roundtrip(types_sandbox.Sandbox(sandboxer="x"), bytes.fromhex("520178"))
    _roundtrip(sandbox_pb2.ControllerStartRequest(sandboxer="x"), bytes.fromhex("520178"))
    _roundtrip(sandbox_pb2.ControllerUpdateRequest(sandboxer="x"), bytes.fromhex("120178"))


def test_image_store_unpacks_is_field_ten() -> None:
    msg = imagestore_pb2.ImageStore(unpacks=[imagestore_pb2.UnpackConfiguration(snapshotter="o")])
    _roundtrip(msg, bytes.fromhex("5203 12016f".replace(" ", "")))


def test_runc_options_systemd_cgroup_is_field_nine() -> None:
    _roundtrip(oci_pb2.Options(systemd_cgroup=True), bytes.fromhex("4801"))


def test_auth_response_keeps_camel_case_field_name() -> None:
    msg = registry_pb2.AuthResponse(authType=registry_pb2.CREDENTIALS)
    _roundtrip(msg, bytes.fromhex("0801"))


def test_health_serving_status() -> None:
    msg = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
    _roundtrip(msg, bytes.fromhex("0801"))


def test_event_type_urls_match_containerd() -> None:
    packed = any_pb2.Any()
    packed.Pack(task_events.TaskExit(container_id="c"))
    assert packed.type_url == "type.googleapis.com/containerd.events.TaskExit"
    packed.Pack(image_events.ImageCreate(name="n"))
    assert packed.type_url == "type.googleapis.com/containerd.services.images.v1.ImageCreate"


def test_cri_image_spec_high_field_numbers() -> None:
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2

    msg = api_pb2.ImageSpec(image="i", user_specified_image="u", runtime_handler="r", image_ref="x")
    _roundtrip(msg, bytes.fromhex("0a0169 920101 75 9a0101 72 a20101 78".replace(" ", "")))


def test_cri_container_config_cdi_devices_and_stop_signal() -> None:
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2

    msg = api_pb2.ContainerConfig(
        CDI_devices=[api_pb2.CDIDevice(name="d")], stop_signal=api_pb2.SIGTERM
    )
    _roundtrip(msg, bytes.fromhex("8a0103 0a0164 9001 17".replace(" ", "")))
    assert api_pb2.Signal.Name(65) == "SIGRTMAX"


def test_cri_services_are_in_package_runtime_v1() -> None:
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2

    assert api_pb2.DESCRIPTOR.package == "runtime.v1"
    assert api_pb2.PsiData.DESCRIPTOR.fields_by_name["Avg10"].number == 2
