"""CDI device requests carried in annotations, as CDI defines them.

A key ``cdi.k8s.io/<name>`` holds a comma-separated list of fully-qualified device names.
``<name>`` is made from a plugin name and a device ID (``<plugin>_<deviceID>``, ``/`` turned
into ``_``): at most 63 characters, starting and ending with a letter or digit, with letters,
digits, ``_``, ``-`` and ``.`` between.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pycontainerd.core import errdefs
from pycontainerd.core.cdi import parser

ANNOTATION_PREFIX = "cdi.k8s.io/"
_MAX_NAME_LEN = 63
_NAME_INNER = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
_ALNUM = _NAME_INNER - frozenset("_-.")


class InvalidAnnotation(errdefs.InvalidArgument):
    """A CDI annotation that cannot be built or parsed."""


def parse_annotations(annotations: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """``(keys, devices)``: the ``cdi.k8s.io/`` keys of ``annotations`` and the device names
    their values request, in mapping order.

    Raises :class:`InvalidAnnotation` (``InvalidArgument``) for a value holding a name that is
    not a valid fully-qualified device name.
    """
    keys: list[str] = []
    devices: list[str] = []
    for key, value in annotations.items():
        if not key.startswith(ANNOTATION_PREFIX):
            continue
        for name in value.split(","):
            try:
                parser.parse_qualified_name(name)
            except parser.InvalidDeviceName as exc:
                raise InvalidAnnotation(f"annotation {key!r}: {exc}") from None
            devices.append(name)
        keys.append(key)
    return keys, devices


def devices_from_annotations(annotations: Mapping[str, str]) -> list[str]:
    """The device names requested by the ``cdi.k8s.io/`` annotations (see
    :func:`parse_annotations`)."""
    return parse_annotations(annotations)[1]


def annotation_key(plugin_name: str, device_id: str) -> str:
    """``cdi.k8s.io/<plugin>_<deviceID>``, validated."""
    if not plugin_name:
        raise InvalidAnnotation("invalid CDI annotation plugin name: empty")
    if not device_id:
        raise InvalidAnnotation("invalid CDI annotation device ID: empty")
    name = plugin_name + "_" + device_id.replace("/", "_")
    if len(name) > _MAX_NAME_LEN:
        raise InvalidAnnotation(
            f"invalid CDI annotation name {name!r}: longer than {_MAX_NAME_LEN} characters"
        )
    if name[0] not in _ALNUM:
        raise InvalidAnnotation(
            f"invalid CDI annotation name {name!r}: must start with a letter or digit"
        )
    for c in name[1:-1]:
        if c not in _NAME_INNER:
            raise InvalidAnnotation(
                f"invalid CDI annotation name {name!r}: invalid character {c!r}"
            )
    if name[-1] not in _ALNUM:
        raise InvalidAnnotation(
            f"invalid CDI annotation name {name!r}: must end with a letter or digit"
        )
    return ANNOTATION_PREFIX + name


def annotation_value(devices: Sequence[str]) -> str:
    """The comma-separated device names, each validated."""
    for name in devices:
        try:
            parser.parse_qualified_name(name)
        except parser.InvalidDeviceName as exc:
            raise InvalidAnnotation(str(exc)) from None
    return ",".join(devices)


def annotation(plugin_name: str, device_id: str, devices: Sequence[str]) -> tuple[str, str]:
    """``(key, value)`` of the annotation requesting ``devices``."""
    return annotation_key(plugin_name, device_id), annotation_value(devices)


def update_annotations(
    annotations: dict[str, str], plugin_name: str, device_id: str, devices: Sequence[str]
) -> dict[str, str]:
    """Add the annotation requesting ``devices`` to ``annotations`` (in place; returned too).
    A key already present is an error (``AlreadyExists``)."""
    key, value = annotation(plugin_name, device_id, devices)
    if key in annotations:
        raise errdefs.AlreadyExists(f"CDI annotation {key!r} already set")
    annotations[key] = value
    return annotations
