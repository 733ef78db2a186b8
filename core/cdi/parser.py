"""CDI device names: ``vendor/class=name``, as the CDI parser splits and validates them.

A fully-qualified device name has a vendor (``vendor0.com``), a class (``device``) and a device
name (``dev0``). Vendor and class start with a letter, end with a letter or digit, and have
letters, digits, ``_``, ``-`` and ``.`` between. A device name starts and ends with a letter or
digit and may also have ``:`` between. Only ASCII letters and digits count.
"""

from __future__ import annotations

from pycontainerd.core import errdefs

_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")
_ALNUM = _LETTERS | _DIGITS
_VENDOR_CLASS_INNER = _ALNUM | frozenset("_-.")
_DEVICE_INNER = _VENDOR_CLASS_INNER | frozenset(":")


class InvalidDeviceName(errdefs.InvalidArgument):
    """A device, vendor, class or kind name that CDI does not accept."""


def qualified_name(vendor: str, device_class: str, name: str) -> str:
    """``vendor/class=name`` (no validation)."""
    return f"{vendor}/{device_class}={name}"


def parse_qualifier(kind: str) -> tuple[str, str]:
    """Split a ``vendor/class`` kind. A kind without a vendor gives ``("", kind)``."""
    vendor, sep, device_class = kind.partition("/")
    if not sep or not vendor or not device_class:
        return "", kind
    return vendor, device_class


def parse_device(device: str) -> tuple[str, str, str]:
    """Split a device name leniently, without validating the parts.

    A name that is not of the form ``vendor/class=name`` comes back as ``("", "", device)``:
    so does a path (``/dev/null``), which lets callers tell CDI names from device paths.
    """
    if not device or device.startswith("/"):
        return "", "", device
    qualifier, sep, name = device.partition("=")
    if not sep or not qualifier or not name:
        return "", "", device
    vendor, device_class = parse_qualifier(qualifier)
    if not vendor:
        return "", "", device
    return vendor, device_class, name


def parse_qualified_name(device: str) -> tuple[str, str, str]:
    """``(vendor, class, name)`` of a fully-qualified device name.

    Raises :class:`InvalidDeviceName` (an ``InvalidArgument``) saying what is wrong.
    """
    vendor, device_class, name = parse_device(device)
    if not vendor:
        raise InvalidDeviceName(f"unqualified CDI device {device!r}: missing vendor")
    if not device_class:
        raise InvalidDeviceName(f"unqualified CDI device {device!r}: missing class")
    if not name:  # pragma: no cover - parse_device never returns an empty name with a vendor
        raise InvalidDeviceName(f"unqualified CDI device {device!r}: missing device name")
    try:
        validate_vendor_name(vendor)
        validate_class_name(device_class)
        validate_device_name(name)
    except InvalidDeviceName as exc:
        raise InvalidDeviceName(f"invalid CDI device {device!r}: {exc}") from None
    return vendor, device_class, name


def is_qualified_name(device: str) -> bool:
    """Whether ``device`` is a valid fully-qualified CDI device name."""
    try:
        parse_qualified_name(device)
    except InvalidDeviceName:
        return False
    return True


def validate_vendor_name(vendor: str) -> None:
    _validate_vendor_or_class(vendor, "vendor")


def validate_class_name(device_class: str) -> None:
    _validate_vendor_or_class(device_class, "class")


def validate_kind(kind: str) -> tuple[str, str]:
    """Validate a spec ``kind`` (``vendor/class``) and return ``(vendor, class)``."""
    vendor, device_class = parse_qualifier(kind)
    validate_vendor_name(vendor)
    validate_class_name(device_class)
    return vendor, device_class


def _validate_vendor_or_class(value: str, what: str) -> None:
    if not value:
        raise InvalidDeviceName(f"invalid {what} name: empty")
    if value[0] not in _LETTERS:
        raise InvalidDeviceName(f"invalid {what} name {value!r}: must start with a letter")
    for c in value[1:-1]:
        if c not in _VENDOR_CLASS_INNER:
            raise InvalidDeviceName(f"invalid {what} name {value!r}: invalid character {c!r}")
    if value[-1] not in _ALNUM:
        raise InvalidDeviceName(f"invalid {what} name {value!r}: must end with a letter or digit")


def validate_device_name(name: str) -> None:
    """Validate an unqualified device name (``dev0``, ``gpu:0``, ``0``)."""
    if not name:
        raise InvalidDeviceName("invalid device name: empty")
    if name[0] not in _ALNUM:
        raise InvalidDeviceName(f"invalid device name {name!r}: must start with a letter or digit")
    for c in name[1:-1]:
        if c not in _DEVICE_INNER:
            raise InvalidDeviceName(f"invalid device name {name!r}: invalid character {c!r}")
    if name[-1] not in _ALNUM:
        raise InvalidDeviceName(f"invalid device name {name!r}: must end with a letter or digit")
