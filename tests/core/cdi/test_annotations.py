from __future__ import annotations

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.cdi import annotations as ann


def test_parse_annotations_collects_cdi_keys_and_devices_in_order() -> None:
    annotations = {
        "io.kubernetes.cri.container-type": "container",
        "cdi.k8s.io/vendor_dev0": "vendor.com/device=dev0,vendor.com/device=dev1",
        "cdi.k8s.io/gpu": "nvidia.com/gpu=0",
        "cdi.k8s.io.other/x": "not-a-device",
    }
    keys, devices = ann.parse_annotations(annotations)
    assert keys == ["cdi.k8s.io/vendor_dev0", "cdi.k8s.io/gpu"]
    assert devices == ["vendor.com/device=dev0", "vendor.com/device=dev1", "nvidia.com/gpu=0"]
    assert ann.devices_from_annotations(annotations) == devices
    assert ann.parse_annotations({}) == ([], [])


@pytest.mark.parametrize("value", ["dev0", "vendor.com/device=dev0,", "", "a.com/b=c, d.com/e=f"])
def test_parse_annotations_refuses_invalid_device_names(value: str) -> None:
    with pytest.raises(ann.InvalidAnnotation) as info:
        ann.parse_annotations({"cdi.k8s.io/x": value})
    assert isinstance(info.value, errdefs.InvalidArgument)
    assert "'cdi.k8s.io/x'" in str(info.value)


def test_annotation_key_joins_plugin_and_device_id() -> None:
    assert ann.annotation_key("vendor", "dev0") == "cdi.k8s.io/vendor_dev0"
    assert ann.annotation_key("vendor.com", "pod/ctr/0") == "cdi.k8s.io/vendor.com_pod_ctr_0"
    assert ann.annotation_key("p", "d" * 61) == "cdi.k8s.io/p_" + "d" * 61  # 63 characters


@pytest.mark.parametrize(
    ("plugin", "device_id", "message"),
    [
        ("", "dev0", "plugin name: empty"),
        ("vendor", "", "device ID: empty"),
        ("p", "d" * 62, "longer than 63"),
        ("-vendor", "dev0", "must start with a letter or digit"),
        ("vendor", "dev0-", "must end with a letter or digit"),
        ("ven dor", "dev0", "invalid character ' '"),
        ("vendor", "dev:0", "invalid character ':'"),
    ],
)
def test_annotation_key_refuses_bad_names(plugin: str, device_id: str, message: str) -> None:
    with pytest.raises(ann.InvalidAnnotation, match=message):
        ann.annotation_key(plugin, device_id)


def test_annotation_value_and_round_trip() -> None:
    devices = ["vendor.com/device=dev0", "vendor.com/device=dev1"]
    key, value = ann.annotation("vendor", "ctr0", devices)
    assert (key, value) == (
        "cdi.k8s.io/vendor_ctr0",
        "vendor.com/device=dev0,vendor.com/device=dev1",
    )
    assert ann.devices_from_annotations({key: value}) == devices
    with pytest.raises(ann.InvalidAnnotation, match="missing vendor"):
        ann.annotation_value(["vendor.com/device=dev0", "dev1"])
    assert ann.annotation_value([]) == ""


def test_update_annotations_adds_once() -> None:
    annotations = {"other": "x"}
    out = ann.update_annotations(annotations, "vendor", "ctr0", ["vendor.com/device=dev0"])
    assert out is annotations
    assert annotations == {"other": "x", "cdi.k8s.io/vendor_ctr0": "vendor.com/device=dev0"}
    with pytest.raises(errdefs.AlreadyExists):
        ann.update_annotations(annotations, "vendor", "ctr0", ["vendor.com/device=dev1"])
