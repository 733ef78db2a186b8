from __future__ import annotations

import datetime as dt

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.snapshots import (
    Info,
    Kind,
    Usage,
    adaptor,
    apply_update,
    filter_inherited_labels,
)


def test_kind_numbers_match_containerd_proto() -> None:
    assert [int(k) for k in (Kind.UNKNOWN, Kind.VIEW, Kind.ACTIVE, Kind.COMMITTED)] == [0, 1, 2, 3]
    assert Kind.parse("Committed") is Kind.COMMITTED and Kind.parse("bogus") is Kind.UNKNOWN
    assert str(Kind.ACTIVE) == "Active"


def test_adaptor_exposes_kind_name_parent_and_labels() -> None:
    f = adaptor(Info(name="n", kind=Kind.VIEW, parent="p", labels={"a.b": "v"}))
    assert f(["kind"]) == ("view", True)
    assert f(["name"]) == ("n", True)
    assert f(["parent"]) == ("p", True)
    assert f(["labels", "a", "b"]) == ("v", True)
    assert f(["labels", "missing"]) == ("", False)
    assert f(["other"]) == ("", False)


def test_apply_update_rejects_immutable_fields_and_touches_only_named_labels() -> None:
    now = dt.datetime.now(dt.UTC)
    cur = Info(name="n", labels={"a": "1", "b": "2"})
    got = apply_update(cur, Info(name="n", labels={"a": "x", "b": "y"}), ["labels.a"], now)
    assert got.labels == {"a": "x", "b": "2"} and got.updated_at == now
    with pytest.raises(errdefs.InvalidArgument):
        apply_update(cur, cur, ["kind"], now)


def test_usage_adds_and_inherited_labels_keep_only_snapshot_prefixed_ones() -> None:
    assert Usage(inodes=1, size=2) + Usage(inodes=3, size=4) == Usage(inodes=4, size=6)
    labels = {"containerd.io/snapshot/x": "1", "containerd.io/snapshot.ref": "r", "other": "o"}
    assert filter_inherited_labels(labels) == {
        "containerd.io/snapshot/x": "1",
        "containerd.io/snapshot.ref": "r",
    }
