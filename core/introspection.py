"""The local introspection service: what plugins there are and how they fared; who we are."""

from __future__ import annotations

import os
import uuid as uuidlib
from collections.abc import Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.plugin.context import Plugin, PluginSet


def _adaptor(p: Plugin) -> Any:
    def field(path: list[str]) -> tuple[str, bool]:
        if path == ["type"]:
            return p.registration.type, True
        if path == ["id"]:
            return p.registration.id, True
        return "", False

    return field


@attrs.define(eq=False, kw_only=True)
class Local:
    plugins: PluginSet
    root: str
    warnings: Any = None
    _uuid: str = ""

    def list_plugins(self, filters: Sequence[str] = ()) -> list[Plugin]:
        if not any(filters):
            return list(self.plugins)
        from pycontainerd.core import filters as filters_

        f = filters_.parse_all(list(filters))
        return [p for p in self.plugins if f.match(_adaptor(p))]

    def plugin(self, type_: str, id_: str) -> Plugin:
        p = self.plugins.get(f"{type_}.{id_}")
        if p is None:
            raise errdefs.NotFound(f"plugin {type_}.{id_} not found")
        return p

    def uuid(self) -> str:
        """A random UUID made once and kept under the plugin root."""
        if self._uuid:
            return self._uuid
        path = os.path.join(self.root, "uuid")
        try:
            with open(path) as f:
                value = f.read().strip()
            uuidlib.UUID(value)
        except (OSError, ValueError):
            value = str(uuidlib.uuid4())
            os.makedirs(self.root, mode=0o711, exist_ok=True)
            tmp = f"{path}.tmp"
            with open(tmp, "w") as f:
                f.write(value)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        self._uuid = value
        return value

    @staticmethod
    def pid() -> int:
        return os.getpid()

    @staticmethod
    def pidns() -> int:
        try:
            return os.stat(f"/proc/{os.getpid()}/ns/pid").st_ino
        except OSError:
            return 0

    def deprecations(self) -> list[Any]:
        return list(self.warnings.warnings()) if self.warnings is not None else []
