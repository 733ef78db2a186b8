"""Runtime handler features from ``runc features``."""

from __future__ import annotations

import shutil

import pytest

from pycontainerd.plugins.cri.config import Runtime
from pycontainerd.plugins.cri.runtime import features


@pytest.mark.parametrize(
    ("release", "ok"),
    [
        ("5.12.0", True),
        ("6.1.0-18-amd64", True),
        ("5.11.22", False),
        ("4.19.0", False),
        ("garbage", False),
    ],
)
def test_kernel_rro_needs_5_12(release, ok):
    assert features.kernel_supports_rro(release) is ok


def test_features_from_runc_json():
    raw = {
        "mountOptions": ["bind", "rro"],
        "linux": {"namespaces": ["mount", "user"], "mountExtensions": {"idmap": {"enabled": True}}},
    }
    f = features.from_runc_features(raw, kernel_rro=True)
    assert f.recursive_read_only_mounts and f.user_namespaces
    assert not features.from_runc_features(raw, kernel_rro=False).recursive_read_only_mounts
    no_idmap = {"linux": {"namespaces": ["user"]}}
    assert not features.from_runc_features(no_idmap, kernel_rro=True).user_namespaces
    assert features.from_runc_features({}, kernel_rro=True) == features.HandlerFeatures()


async def test_other_runtime_types_are_unknown():
    assert await features.introspect(Runtime(runtime_type="io.containerd.kata.v2")) is None


async def test_missing_runc_binary_is_unknown():
    rt = Runtime(options={"BinaryName": "/nonexistent/runc"})
    assert await features.introspect(rt) is None


async def test_real_runc_reports_features():
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    f = await features.introspect(Runtime())
    assert f is not None
    assert f.recursive_read_only_mounts == features.kernel_supports_rro()
