"""Typed decoding of TOML tables into attrs classes, and the inverse.

A TOML key equals the attrs field name, unless the field carries
``metadata={"toml": "Key"}`` (Go-style names such as ``SystemdCgroup``, keys with dashes).
Supported field types: ``str``, ``int``, ``float``, ``bool``, ``Any``, nested attrs classes,
``dict[str, X]``, ``list[X]``, ``tuple[X, ...]``, ``X | None``, unions, ``Literal[...]``
and ``enum.Enum`` subclasses (by value). Missing keys take the field default; unknown keys
are reported as warnings with their full dotted path and ignored; a value of the wrong type
is a :class:`ConfigError` naming the key, the expected type and the value.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

import attrs

from pycontainerd.core.config.errors import ConfigError

TOML_KEY = "toml"

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_key(key: str) -> str:
    """``key`` as it is written in a dotted TOML path (quoted unless it is a bare key)."""
    if _BARE_KEY.match(key):
        return key
    escaped = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def join_path(prefix: str, key: str) -> str:
    return f"{prefix}.{toml_key(key)}" if prefix else toml_key(key)


def plugin_path(uri: str) -> str:
    """The dotted path of a plugin's section: ``plugins."<uri>"``."""
    return f'plugins."{uri}"'


def field_key(field: attrs.Attribute[Any]) -> str:
    """The TOML key of an attrs field."""
    return str(field.metadata.get(TOML_KEY, field.name))


def _fields(cls: type) -> tuple[attrs.Attribute[Any], ...]:
    attrs.resolve_types(cls)
    return attrs.fields(cls)


def _type_name(tp: Any) -> str:
    if tp is Any:
        return "any value"
    if isinstance(tp, type) and not typing.get_args(tp):
        if attrs.has(tp):
            return "table"
        return tp.__name__
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if origin in (dict, Mapping):
        return f"table of {_type_name(args[1])}" if args and args[1] is not Any else "table"
    if origin in (list, tuple):
        return f"array of {_type_name(args[0])}" if args and args[0] is not Any else "array"
    return str(tp)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _wrong(path: str, tp: Any, value: Any) -> ConfigError:
    return ConfigError(
        f"invalid config at {path}: expected {_type_name(tp)}, got {_describe(value)}"
    )


class _Decoder:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def value(self, tp: Any, value: Any, path: str) -> Any:
        if tp is Any or tp is object:
            return value
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            return self._union(tp, args, value, path)
        if origin is typing.Literal:
            if value in args and not isinstance(value, bool | dict | list):
                return value
            raise _wrong(path, tp, value)
        if origin in (dict, Mapping) or tp is dict:
            if not isinstance(value, dict):
                raise _wrong(path, tp, value)
            item = args[1] if args else Any
            return {k: self.value(item, v, join_path(path, k)) for k, v in value.items()}
        if origin in (list, tuple) or tp in (list, tuple):
            if not isinstance(value, list | tuple):
                raise _wrong(path, tp, value)
            item = args[0] if args else Any
            items = [self.value(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if (origin is tuple or tp is tuple) else items
        if isinstance(tp, type):
            if attrs.has(tp):
                if not isinstance(value, dict):
                    raise _wrong(path, tp, value)
                return self.instance(tp, value, path)
            if issubclass(tp, enum.Enum):
                try:
                    return tp(value)
                except ValueError:
                    choices = ", ".join(repr(m.value) for m in tp)
                    raise ConfigError(
                        f"invalid config at {path}: expected one of {choices}, "
                        f"got {_describe(value)}"
                    ) from None
            if tp is bool:
                if isinstance(value, bool):
                    return value
                raise _wrong(path, tp, value)
            if tp is int:
                if isinstance(value, int) and not isinstance(value, bool):
                    return value
                raise _wrong(path, tp, value)
            if tp is float:
                if isinstance(value, int | float) and not isinstance(value, bool):
                    return float(value)
                raise _wrong(path, tp, value)
            if isinstance(value, tp):
                return value
            raise _wrong(path, tp, value)
        raise ConfigError(f"invalid config at {path}: unsupported field type {tp!r}")

    def _union(self, tp: Any, args: tuple[Any, ...], value: Any, path: str) -> Any:
        candidates = [a for a in args if a is not type(None)]
        last: ConfigError | None = None
        for candidate in candidates:
            saved = len(self.warnings)
            try:
                return self.value(candidate, value, path)
            except ConfigError as exc:
                del self.warnings[saved:]
                last = exc
        if len(candidates) == 1 and last is not None:
            raise last
        raise _wrong(path, tp, value)

    def instance(self, cls: type, table: Mapping[str, Any], path: str) -> Any:
        kwargs: dict[str, Any] = {}
        known: set[str] = set()
        for field in _fields(cls):
            if not field.init:
                continue
            key = field_key(field)
            known.add(key)
            if key in table:
                value = self.value(field.type, table[key], join_path(path, key))
                if isinstance(value, dict):
                    # as containerd's decode into the defaults: a table adds to (and per key
                    # replaces) a default map, it does not drop its other entries (a
                    # `runtimes.kata` section keeps the default `runtimes.runc`)
                    value = {**_default_of(field), **value}
                kwargs[field.alias or field.name] = value
        for key in table:
            if key not in known:
                self.warnings.append(f"unknown key {join_path(path, key)}")
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid config at {path}: {exc}") from exc


def _default_of(field: Any) -> dict[str, Any]:
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        default = default.factory() if not default.takes_self else None
    return dict(default) if isinstance(default, dict) else {}


def decode(cls: type, raw: Mapping[str, Any] | None, path: str) -> tuple[Any, list[str]]:
    """Decode the table ``raw`` found at dotted ``path`` into an instance of ``cls``."""
    decoder = _Decoder()
    obj = decoder.instance(cls, raw or {}, path)
    return obj, decoder.warnings


def decode_plugin_config(
    cls: type, raw: Mapping[str, Any] | None, uri: str
) -> tuple[Any, list[str]]:
    """Build the config object of plugin ``uri`` from its raw ``[plugins."<uri>"]`` table.

    Returns the instance and the warnings about unknown keys (which are ignored).
    Raises :class:`ConfigError` on a value of the wrong type.
    """
    if raw is not None and not isinstance(raw, Mapping):
        raise _wrong(plugin_path(uri), cls, raw)
    return decode(cls, raw, plugin_path(uri))


def encode_value(value: Any) -> Any:
    """A config value as plain TOML data; ``None`` values are left out of tables."""
    if attrs.has(type(value)):
        return encode_plugin_config(value)
    if isinstance(value, enum.Enum):
        return encode_value(value.value)
    if isinstance(value, Mapping):
        return {str(k): encode_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [encode_value(v) for v in value]
    return value


def encode_plugin_config(obj: Any) -> dict[str, Any]:
    """The TOML table for an attrs config instance (the inverse of decoding)."""
    out: dict[str, Any] = {}
    for field in _fields(type(obj)):
        if not field.init:
            continue
        value = getattr(obj, field.name)
        if value is None:
            continue
        out[field_key(field)] = encode_value(value)
    return out
