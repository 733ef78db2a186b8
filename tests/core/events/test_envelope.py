from __future__ import annotations

import datetime

import attrs
import pytest
from google.protobuf import any_pb2, struct_pb2, timestamp_pb2

from pycontainerd.core import errdefs, filters
from pycontainerd.core.events import (
    Envelope,
    event_field,
    type_url_of,
    validate_envelope,
    validate_topic,
)

NOW = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    "topic",
    ["/tasks/exit", "/snapshot/prepare", "/a", "/x.y/z-1/a_b", "/" + "a" * 76],
)
def test_valid_topic_is_accepted(topic: str) -> None:
    validate_topic(topic)


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("", "must not be empty"),
        ("tasks/exit", "must start with '/'"),
        ("/", "must have at least one component"),
        ("/tasks/", "identifier must not be empty"),
        ("//tasks", "identifier must not be empty"),
        ("/tasks/ex it", "must match"),
        ("/tasks/-exit", "must match"),
        ("/" + "a" * 77, "greater than maximum length"),
    ],
)
def test_invalid_topic_is_rejected_with_reason(topic: str, reason: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=reason) as info:
        validate_topic(topic)
    assert repr(topic) in str(info.value)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"namespace": ""}, "invalid namespace"),
        ({"namespace": "bad ns"}, "invalid namespace"),
        ({"topic": "tasks"}, "must start with '/'"),
        ({"timestamp": None}, "timestamp must be set"),
        ({"event": None}, "has no event"),
    ],
)
def test_forwarded_envelope_validation(changes: dict, reason: str) -> None:
    good = Envelope(timestamp=NOW, namespace="k8s.io", topic="/tasks/exit", event=object())
    validate_envelope(good)
    with pytest.raises(errdefs.InvalidArgument, match=reason):
        validate_envelope(attrs.evolve(good, **changes))


def test_envelope_fields_for_filters() -> None:
    env = Envelope(timestamp=NOW, namespace="default", topic="/tasks/exit", event=object())
    assert env.field(["topic"]) == ("/tasks/exit", True)
    assert env.field(["namespace"]) == ("default", True)
    assert env.field(["timestamp"]) == ("", False)
    assert env.field([]) == ("", False)
    assert filters.parse('topic~="^/tasks/",namespace==default').match(env)
    assert filters.parse('topic=="/tasks/exit"').match(env)
    assert not filters.parse('topic=="/tasks/start"').match(env)
    # as in containerd, a value starting with "/" is a (regex) quote: topics must be quoted
    with pytest.raises(errdefs.InvalidArgument, match="invalid quote encountered"):
        filters.parse("topic==/tasks/exit")


def test_event_fields_of_a_protobuf_message() -> None:
    ts = timestamp_pb2.Timestamp(seconds=12, nanos=0)
    env = Envelope(timestamp=NOW, namespace="default", topic="/x", event=ts)
    assert env.field(["event", "seconds"]) == ("12", True)
    # zero scalar: absent, like containerd's generated adaptors for empty strings
    assert env.field(["event", "nanos"]) == ("0", False)
    assert env.field(["event", "nope"]) == ("", False)
    assert filters.parse("event.seconds==12").match(env)


def test_event_map_fields_join_the_remaining_path() -> None:
    msg = struct_pb2.Struct()
    msg.fields["a.b"].string_value = "x"
    # Struct.fields is a map<string, Value>; a message value is reported as present
    value, present = event_field(msg, ["fields", "a", "b"])
    assert present
    assert event_field(msg, ["fields", "missing"]) == ("", False)


def test_event_fields_of_a_packed_any_are_decoded_when_type_is_known() -> None:
    packed = any_pb2.Any()
    packed.Pack(timestamp_pb2.Timestamp(seconds=7))
    env = Envelope(timestamp=NOW, namespace="default", topic="/x", event=packed)
    assert env.field(["event", "seconds"]) == ("7", True)
    assert type_url_of(packed) == "type.googleapis.com/google.protobuf.Timestamp"


def test_event_fields_of_an_unknown_any_are_absent() -> None:
    packed = any_pb2.Any(type_url="example.com/no.such.Type", value=b"\x08\x01")
    env = Envelope(timestamp=NOW, namespace="default", topic="/x", event=packed)
    assert env.field(["event", "id"]) == ("", False)


def test_event_fields_of_plain_objects_and_own_field_method() -> None:
    @attrs.frozen
    class ImageCreate:
        name: str
        labels: dict[str, str]

    ev = ImageCreate(name="docker.io/library/busybox:latest", labels={"a.b": "1"})
    assert event_field(ev, ["name"]) == ("docker.io/library/busybox:latest", True)
    assert event_field(ev, ["labels", "a", "b"]) == ("1", True)
    assert event_field(ev, ["_private"]) == ("", False)
    assert event_field({"id": "c1"}, ["id"]) == ("c1", True)

    class Custom:
        def field(self, fieldpath: list[str]) -> tuple[str, bool]:
            return ("yes", True) if fieldpath == ["x"] else ("", False)

    assert event_field(Custom(), ["x"]) == ("yes", True)
    assert event_field(Custom(), ["y"]) == ("", False)


def test_type_url_of_protobuf_message_is_its_full_name() -> None:
    assert type_url_of(timestamp_pb2.Timestamp()) == "google.protobuf.Timestamp"
