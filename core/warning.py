"""Deprecation warnings: emitted by the daemon and plugins, reported by introspection."""

from __future__ import annotations

import datetime as dt
import logging

import attrs

log = logging.getLogger(__name__)

#: Deprecation IDs (containerd keeps a closed list; ours are prefixed the same way).
CONFIG_VERSION = "io.containerd.deprecation/config-version"


@attrs.frozen(kw_only=True)
class Warning_:  # noqa: N801 - avoid shadowing the builtin
    id: str
    message: str
    last_occurrence: dt.datetime


@attrs.define(eq=False)
class Service:
    _seen: dict[str, Warning_] = attrs.Factory(dict)

    def emit(self, id_: str, message: str) -> None:
        if id_ not in self._seen:
            log.warning("deprecation %s: %s", id_, message)
        self._seen[id_] = Warning_(id=id_, message=message, last_occurrence=dt.datetime.now(dt.UTC))

    def warnings(self) -> list[Warning_]:
        return sorted(self._seen.values(), key=lambda w: w.id)
