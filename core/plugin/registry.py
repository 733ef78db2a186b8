"""The set of known registrations, in registration order, validated as they arrive."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import attrs

from pycontainerd.core.plugin.registration import Registration, RegistrationError


@attrs.define(eq=False)
class Registry:
    _ordered: list[Registration] = attrs.Factory(list)
    _by_uri: dict[str, Registration] = attrs.Factory(dict)

    def register(self, reg: Registration) -> None:
        """Add ``reg``; an invalid or duplicate registration is an error naming both sources."""
        reg.validate()
        prior = self._by_uri.get(reg.uri)
        if prior is not None:
            raise RegistrationError(
                f"plugin {reg.uri}: registered twice, by {prior.source} and by {reg.source}"
            )
        self._ordered.append(reg)
        self._by_uri[reg.uri] = reg

    def register_all(self, regs: Iterable[Registration]) -> None:
        for reg in regs:
            self.register(reg)

    def __iter__(self) -> Iterator[Registration]:
        return iter(self._ordered)

    def __len__(self) -> int:
        return len(self._ordered)

    def __contains__(self, uri: object) -> bool:
        return uri in self._by_uri

    def get(self, uri: str) -> Registration | None:
        return self._by_uri.get(uri)

    def types(self) -> set[str]:
        return {r.type for r in self._ordered}
