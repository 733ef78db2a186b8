"""CDI devices of CRI containers: which names a ContainerConfig asks for, and injection with
CDI enabled, disabled, or a device nobody describes."""

from __future__ import annotations

import json
import os

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as pb
from pycontainerd.core import errdefs
from pycontainerd.plugins.cri.container import cdi


def _config(devices=(), annotations=None):
    return pb.ContainerConfig(
        CDI_devices=[pb.CDIDevice(name=n) for n in devices],
        annotations=annotations or {},
    )


def _spec_dir(tmp_path):
    d = tmp_path / "cdi"
    d.mkdir()
    st = os.stat("/dev/null")
    (d / "test.json").write_text(
        json.dumps(
            {
                "cdiVersion": "0.6.0",
                "kind": "pycontainerd.test/device",
                "devices": [
                    {
                        "name": "null",
                        "containerEdits": {
                            "env": ["CDI_NULL=1"],
                            "deviceNodes": [{"path": "/dev/cdi-null", "hostPath": "/dev/null"}],
                        },
                    }
                ],
                "containerEdits": {"env": ["CDI_VENDOR=test"]},
            }
        )
    )
    return d, st


def test_requested_devices_come_from_the_field_then_annotations_each_once():
    config = _config(
        ["a.com/x=1", "a.com/x=2", "a.com/x=1"],
        {"cdi.k8s.io/extra": "a.com/x=2,b.com/y=3", "other": "a.com/x=9"},
    )
    assert cdi.requested(config) == ["a.com/x=1", "a.com/x=2", "b.com/y=3"]
    assert cdi.requested(_config()) == []


def test_bad_annotation_is_invalid_argument():
    with pytest.raises(errdefs.InvalidArgument, match="CDI device annotations"):
        cdi.requested(_config(annotations={"cdi.k8s.io/x": "not-a-device"}))


def test_injection_applies_the_devices_edits(tmp_path):
    d, st = _spec_dir(tmp_path)
    spec = {"process": {"env": ["PATH=/bin"]}, "linux": {}}
    cdi.inject(spec, ["pycontainerd.test/device=null"], enabled=True, spec_dirs=[str(d)])
    assert spec["process"]["env"] == ["PATH=/bin", "CDI_VENDOR=test", "CDI_NULL=1"]
    [node] = spec["linux"]["devices"]
    assert node["path"] == "/dev/cdi-null" and node["type"] == "c"
    assert (node["major"], node["minor"]) == (os.major(st.st_rdev), os.minor(st.st_rdev))


def test_unknown_device_is_not_found_and_the_spec_is_untouched(tmp_path):
    d, _ = _spec_dir(tmp_path)
    spec = {"process": {"env": ["PATH=/bin"]}}
    with pytest.raises(errdefs.NotFound, match="CDI device injection failed.*nosuch"):
        cdi.inject(
            spec,
            ["pycontainerd.test/device=null", "pycontainerd.test/device=nosuch"],
            enabled=True,
            spec_dirs=[str(d)],
        )
    assert spec == {"process": {"env": ["PATH=/bin"]}}


def test_devices_with_cdi_disabled_are_refused_naming_them(tmp_path):
    with pytest.raises(errdefs.FailedPrecondition, match=r"\(a.com/x=1\).*disabled"):
        cdi.inject({}, ["a.com/x=1"], enabled=False, spec_dirs=[str(tmp_path)])
    cdi.inject({}, [], enabled=False, spec_dirs=[str(tmp_path)])  # nothing asked: fine


def test_the_annotation_prefix_is_cdis():
    from pycontainerd.core.cdi import ANNOTATION_PREFIX

    assert cdi._ANNOTATION_PREFIX == ANNOTATION_PREFIX
