"""The one error category of configuration problems."""

from __future__ import annotations

from pycontainerd.core.errdefs import InvalidArgument


class ConfigError(InvalidArgument):
    """A configuration file or section that cannot be used: bad TOML, a wrong type,
    an unsupported version, an import that cannot be read."""
