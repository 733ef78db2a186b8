from __future__ import annotations

import platform as _platform

import pytest

from pycontainerd.core import errdefs, platforms
from pycontainerd.core.platforms import Platform


def P(os: str, arch: str, variant: str = "") -> Platform:  # noqa: N802
    return Platform(os=os, architecture=arch, variant=variant)


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("linux/amd64", P("linux", "amd64")),
        ("linux/x86_64", P("linux", "amd64")),
        ("linux/x86-64/v1", P("linux", "amd64")),
        ("linux/amd64/v3", P("linux", "amd64", "v3")),
        ("linux/arm64", P("linux", "arm64")),
        ("linux/aarch64", P("linux", "arm64")),
        ("linux/arm64/v8", P("linux", "arm64", "v8")),
        ("linux/arm64/8", P("linux", "arm64", "v8")),
        ("linux/arm64/v9.0", P("linux", "arm64", "v9")),
        ("linux/arm", P("linux", "arm")),
        ("linux/arm/v7", P("linux", "arm", "v7")),
        ("linux/arm/6", P("linux", "arm", "v6")),
        ("linux/armhf", P("linux", "arm")),  # v7 is the default arm variant
        ("linux/armel", P("linux", "arm", "v6")),
        ("linux/i386", P("linux", "386")),
        ("Linux/AMD64", P("linux", "amd64")),
        ("macos/arm64", P("darwin", "arm64")),
        (
            "windows(10.0.17763)/amd64",
            Platform(os="windows", architecture="amd64", os_version="10.0.17763"),
        ),
        ("arm64", P("linux", "arm64")),
        ("ppc64le", P("linux", "ppc64le")),
    ],
)
def test_parse(spec: str, want: Platform) -> None:
    assert platforms.parse(spec) == want


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "linux/amd64/v1/x",
        "linux/*",
        "linux//amd64",
        "lin ux/amd64",
        "nosuchthing",
        "linux/amd64/",
        "linux(/amd64",
    ],
)
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        platforms.parse(bad)


def test_single_os_component_uses_host_arch() -> None:
    p = platforms.parse("linux")
    assert p.os == "linux"
    assert p.architecture == platforms.default_spec().architecture


def test_format() -> None:
    assert platforms.format(platforms.parse("linux/arm/v7")) == "linux/arm/v7"
    assert platforms.format(platforms.parse("linux/amd64")) == "linux/amd64"
    assert platforms.format(Platform(os="", architecture="amd64")) == "unknown"


def test_normalize_makes_equivalent_forms_equal() -> None:
    n = platforms.normalize
    assert n(P("linux", "aarch64", "v8")) == n(P("linux", "arm64"))
    assert n(P("linux", "arm")) == n(P("linux", "arm", "v7"))
    assert n(P("linux", "x86_64")) == P("linux", "amd64")


def test_default_spec_uses_go_arch_names() -> None:
    d = platforms.default_spec()
    assert d.os == "linux"
    machine = _platform.machine()
    expected = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}
    if machine in expected:
        assert d.architecture == expected[machine]
    assert platforms.default().match(d)


def test_only_accepts_compatible_platforms_best_first() -> None:
    arm64 = platforms.only(P("linux", "arm64"))
    assert arm64.match(P("linux", "arm64", "v8"))
    assert arm64.match(P("linux", "arm64"))
    assert arm64.match(P("linux", "arm", "v7"))
    assert arm64.match(P("linux", "arm", "v5"))
    assert not arm64.match(P("linux", "amd64"))
    assert not arm64.match(P("windows", "arm64"))
    assert not arm64.match(P("linux", "arm64", "v9"))
    assert arm64.less(P("linux", "arm64"), P("linux", "arm", "v8"))
    assert arm64.less(P("linux", "arm", "v7"), P("linux", "arm", "v6"))
    assert not arm64.less(P("linux", "arm", "v6"), P("linux", "arm", "v7"))

    amd64 = platforms.only(P("linux", "amd64"))
    assert amd64.match(P("linux", "386"))
    assert amd64.less(P("linux", "amd64"), P("linux", "386"))
    assert not amd64.match(P("linux", "amd64", "v2"))
    v3 = platforms.only(P("linux", "amd64", "v3"))
    assert v3.match(P("linux", "amd64", "v2")) and v3.match(P("linux", "amd64"))

    armv7 = platforms.only(P("linux", "arm", "v7"))
    assert armv7.match(P("linux", "arm", "v6"))
    assert not armv7.match(P("linux", "arm", "v8"))
    assert not armv7.match(P("linux", "arm64"))


def test_only_strict_refuses_fallbacks() -> None:
    strict = platforms.only_strict(P("linux", "amd64"))
    assert strict.match(P("linux", "x86_64"))
    assert not strict.match(P("linux", "386"))


def test_ordered_any_and_all() -> None:
    o = platforms.ordered(P("linux", "arm64"), P("linux", "amd64"))
    assert o.less(P("linux", "arm64"), P("linux", "amd64"))
    assert not o.less(P("linux", "amd64"), P("linux", "arm64"))
    a = platforms.any_of(P("linux", "arm64"), P("linux", "amd64"))
    assert a.match(P("linux", "amd64")) and not a.match(P("linux", "s390x"))
    assert not a.less(P("linux", "arm64"), P("linux", "amd64"))
    assert platforms.ALL.match(P("plan9", "mips"))


def test_select_orders_matches_and_drops_others() -> None:
    items = [
        ("armv6", P("linux", "arm", "v6")),
        ("s390x", P("linux", "s390x")),
        ("armv7", P("linux", "arm", "v7")),
        ("arm64", P("linux", "arm64", "v8")),
        ("noplat", None),
    ]
    assert platforms.select(platforms.only(P("linux", "arm64")), items) == [
        "arm64",
        "armv7",
        "armv6",
    ]
    assert platforms.select(platforms.ALL, items) == ["armv6", "s390x", "armv7", "arm64", "noplat"]


def test_parse_all_names_the_bad_one() -> None:
    assert platforms.parse_all(["linux/amd64", "linux/arm64"])[1] == P("linux", "arm64")
    with pytest.raises(errdefs.InvalidArgument, match="bo gus"):
        platforms.parse_all(["linux/amd64", "linux/bo gus"])
