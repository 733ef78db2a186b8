"""Configuration: the daemon's TOML file, its imports, version migrations and plugin sections.

The daemon's use, in order::

    loaded = load(path)                   # None: /etc/pycontainerd/config.toml if it exists
    loaded.config                         # typed top level (Config): root, state,
                                          #   disabled_plugins, required_plugins, proxy_plugins,
                                          #   timeouts, disable_plugin_autoload, debug.level ...
    loaded.warnings, loaded.deprecations  # log them / feed the deprecations plugin
    migrate(loaded, registrations)        # plugin sections of files older than version 4
    obj, warnings = decode_plugin_config(reg.config, loaded.config.plugins.get(reg.uri), reg.uri)

``load(path, registrations)`` does both steps at once. ``config default|dump|migrate`` print
``to_toml(default_config(regs))`` or ``to_toml(dump(loaded, regs))``.

Rules (containerd's): version > 4 is refused; a file without ``version`` is version 1 and its
short plugin names become URIs; version 3 -> 4 moves ``[grpc]``, ``[ttrpc]``, ``[debug]``
(address/uid/gid) and ``[metrics]`` into the ``io.containerd.server.v1.*`` plugin sections;
each registration's ``config_migration(version, plugins)`` runs for every version from the
file's up to 4. ``imports`` are paths or globs, relative to the importing file; each file is
loaded once and an import loop is an error. Merging: later non-zero scalars override, arrays
are unioned, tables merged by key, but the entries of ``plugins``, ``proxy_plugins``,
``stream_processors`` and ``timeouts`` are replaced wholesale.

pycontainerd-specific top-level key: ``disable_plugin_autoload = true`` stops the plugin loader
from loading third-party registrations from the ``pycontainerd.plugins`` entry points.

Nothing here logs warnings: ``loaded.warnings`` (unknown keys, ambiguous version-1 names,
legacy keys that could not be moved) and the warnings returned by ``decode_plugin_config`` and
``migrate`` are for the caller to log. Every problem is a :class:`ConfigError` (an
``InvalidArgument``) whose message names the file and the dotted key.
"""

from pycontainerd.core.config.codec import decode_plugin_config, encode_plugin_config
from pycontainerd.core.config.errors import ConfigError
from pycontainerd.core.config.loader import ConfigFile, LoadedConfig, load, merge, migrate
from pycontainerd.core.config.model import (
    CURRENT_VERSION,
    DEFAULT_ADDRESS,
    DEFAULT_CONFIG_PATH,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_ROOT,
    DEFAULT_STATE,
    DEFAULT_TIMEOUTS,
    DEFAULT_TTRPC_ADDRESS,
    CgroupConfig,
    Config,
    DebugConfig,
    ProxyPlugin,
    StreamProcessor,
)
from pycontainerd.core.config.output import default_config, dump, to_toml

__all__ = [
    "CURRENT_VERSION",
    "DEFAULT_ADDRESS",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_ROOT",
    "DEFAULT_STATE",
    "DEFAULT_TIMEOUTS",
    "DEFAULT_TTRPC_ADDRESS",
    "CgroupConfig",
    "Config",
    "ConfigError",
    "ConfigFile",
    "DebugConfig",
    "LoadedConfig",
    "ProxyPlugin",
    "StreamProcessor",
    "decode_plugin_config",
    "default_config",
    "dump",
    "encode_plugin_config",
    "load",
    "merge",
    "migrate",
    "to_toml",
]
