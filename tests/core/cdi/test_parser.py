from __future__ import annotations

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.cdi import parser


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("vendor0.com/device=dev0", ("vendor0.com", "device", "dev0")),
        ("nvidia.com/gpu=0", ("nvidia.com", "gpu", "0")),
        ("nvidia.com/gpu=all", ("nvidia.com", "gpu", "all")),
        ("a/b=c", ("a", "b", "c")),
        ("vendor.com/class.sub=gpu:0", ("vendor.com", "class.sub", "gpu:0")),
        ("foo.bar.baz/foo-bar123.B_az=x_y-z.1", ("foo.bar.baz", "foo-bar123.B_az", "x_y-z.1")),
    ],
)
def test_parse_qualified_name_splits_valid_names(name: str, want: tuple[str, str, str]) -> None:
    assert parser.parse_qualified_name(name) == want
    assert parser.is_qualified_name(name)
    assert parser.qualified_name(*want) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "missing vendor"),
        ("dev0", "missing vendor"),
        ("/dev/null", "missing vendor"),
        ("vendor.com/device", "missing vendor"),
        ("vendor.com=dev0", "missing vendor"),
        ("/device=dev0", "missing vendor"),
        ("vendor.com/=dev0", "missing vendor"),
        ("vendor.com/device=", "missing vendor"),
        ("1vendor.com/device=dev0", "invalid vendor name '1vendor.com': must start with a letter"),
        ("vendor.com-/device=dev0", "must end with a letter or digit"),
        ("vendor.com/dev ice=dev0", "invalid class name 'dev ice': invalid character ' '"),
        ("vendor.com/device/x=dev0", "invalid class name 'device/x'"),
        ("vendor.com/_device=dev0", "invalid class name '_device': must start with a letter"),
        ("vendor.com/device=-dev0", "invalid device name '-dev0': must start"),
        ("vendor.com/device=dev0:", "invalid device name 'dev0:': must end"),
        ("vendor.com/device=dév", "invalid device name 'dév': invalid character 'é'"),
        ("vendor.com/device=dev=1", "invalid device name 'dev=1': invalid character '='"),
    ],
)
def test_parse_qualified_name_rejects_bad_names_with_a_reason(name: str, why: str) -> None:
    with pytest.raises(parser.InvalidDeviceName) as info:
        parser.parse_qualified_name(name)
    assert isinstance(info.value, errdefs.InvalidArgument)
    assert why in str(info.value)
    assert repr(name) in str(info.value)
    assert not parser.is_qualified_name(name)


def test_parse_device_is_lenient_and_leaves_paths_alone() -> None:
    assert parser.parse_device("/dev/null") == ("", "", "/dev/null")
    assert parser.parse_device("dev0") == ("", "", "dev0")
    assert parser.parse_device("v/c=d") == ("v", "c", "d")
    # no validation of the parts here
    assert parser.parse_device("v v/c c=d d") == ("v v", "c c", "d d")


def test_parse_qualifier() -> None:
    assert parser.parse_qualifier("vendor.com/class") == ("vendor.com", "class")
    assert parser.parse_qualifier("class") == ("", "class")
    assert parser.parse_qualifier("vendor.com/") == ("", "vendor.com/")
    assert parser.parse_qualifier("vendor.com/foo/bar") == ("vendor.com", "foo/bar")


def test_validate_kind() -> None:
    assert parser.validate_kind("vendor.com/foo") == ("vendor.com", "foo")
    for bad in ("foo", "vendor.com/foo/", "vendor.com/foo/bar", ""):
        with pytest.raises(parser.InvalidDeviceName):
            parser.validate_kind(bad)


def test_single_character_names_are_valid() -> None:
    assert parser.parse_qualified_name("v/c=0") == ("v", "c", "0")
    with pytest.raises(parser.InvalidDeviceName):
        parser.parse_qualified_name("1/c=0")
