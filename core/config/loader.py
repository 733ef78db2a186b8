"""Loading configuration files: TOML parsing, imports, merging, version checks and migration.

Each file (the main one and every import) is parsed, checked and brought to the current
version's main-config layout on its own, then the files are merged in load order (the main
file first, then its imports breadth-first, as containerd does). Plugin sections of older files
are migrated later by :func:`migrate`, once the daemon knows the registrations.
"""

from __future__ import annotations

import copy
import glob
import logging
import os
import re
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import tomli

from pycontainerd.core.config import codec
from pycontainerd.core.config.errors import ConfigError
from pycontainerd.core.config.migrations import MAIN_MIGRATIONS
from pycontainerd.core.config.model import CURRENT_VERSION, DEFAULT_CONFIG_PATH, Config

if TYPE_CHECKING:
    from pycontainerd.core.plugin.registration import Registration

log = logging.getLogger(__name__)

#: Top-level tables merged key by key, each key's value replaced wholesale by a later file.
REPLACED_TABLES = frozenset({"plugins", "proxy_plugins", "stream_processors", "timeouts"})

_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


@attrs.define(eq=False)
class ConfigFile:
    """One file that took part in a load."""

    path: Path
    #: The version the file was written for (a missing version means 1).
    version: int
    #: The file's tables, in the current main-config layout.
    raw: dict[str, Any]
    #: Whether the registrations' plugin migrations have been applied to ``raw``.
    plugins_migrated: bool = False


@attrs.define(eq=False)
class LoadedConfig:
    """The result of :func:`load`: merged raw tables, the typed view, and what was noticed."""

    #: The main file, or None when the default file did not exist (all defaults).
    path: Path | None
    files: list[ConfigFile]
    #: Merged tables of all files (what ``raw`` TOML would give for one equivalent file).
    raw: dict[str, Any]
    config: Config
    #: Unknown keys, ambiguous names, keys that could not be migrated.
    warnings: list[str] = attrs.field(factory=list)
    #: Use of deprecated configuration (old versions), for the deprecations plugin.
    deprecations: list[str] = attrs.field(factory=list)

    @property
    def version(self) -> int:
        """The version the main file was written for."""
        return self.files[0].version if self.files else CURRENT_VERSION

    @classmethod
    def defaults(cls) -> LoadedConfig:
        """The configuration used when there is no file."""
        return cls(path=None, files=[], raw={"version": CURRENT_VERSION}, config=Config())


def load(
    path: str | os.PathLike[str] | None = None,
    registrations: Iterable[Registration] | None = None,
) -> LoadedConfig:
    """Load the configuration file at ``path`` with its imports.

    With ``path`` None the default file is read if it exists (all defaults otherwise); an
    explicitly given file must exist. With ``registrations``, their plugin migrations are run
    too (see :func:`migrate`).
    """
    explicit = path is not None
    main = Path(path if path is not None else DEFAULT_CONFIG_PATH)
    if not explicit and not main.exists():
        log.debug("no config file at %s, using defaults", main)
        return LoadedConfig.defaults()

    warnings: list[str] = []
    deprecations: list[str] = []
    files: list[ConfigFile] = []
    seen: set[Path] = set()
    pending: deque[tuple[Path, tuple[Path, ...]]] = deque([(_absolute(main), ())])
    while pending:
        current, chain = pending.popleft()
        if current in chain:
            loop = " -> ".join(str(p) for p in (*chain[chain.index(current) :], current))
            raise ConfigError(f"config import loop: {loop}")
        if current in seen:
            continue
        seen.add(current)
        importer = chain[-1] if chain else None
        loaded = _load_file(current, importer, warnings, deprecations)
        files.append(loaded)
        for imported in _resolve_imports(current, loaded.raw.get("imports", [])):
            pending.append((imported, (*chain, current)))

    raw = _merge_files(files)
    config = _typed(raw, "")
    result = LoadedConfig(
        path=files[0].path,
        files=files,
        raw=raw,
        config=config,
        warnings=warnings,
        deprecations=deprecations,
    )
    log.debug("loaded config %s (%d files, %d warnings)", main, len(files), len(warnings))
    if registrations is not None:
        migrate(result, registrations)
    return result


def migrate(loaded: LoadedConfig, registrations: Iterable[Registration]) -> list[str]:
    """Run the registrations' plugin migrations on every file older than the current version.

    For each such file and each version ``v`` from the file's up to the current one, every
    registration's ``config_migration(v, plugins)`` is called on the file's ``plugins`` table;
    then the files are merged again. Main-config steps already ran in :func:`load`. Running it
    twice does nothing the second time. Returns (and adds to ``loaded.warnings``) one warning
    per migrated file.
    """
    regs = [r for r in registrations if r.config_migration is not None]
    warnings: list[str] = []
    changed = False
    for file in loaded.files:
        if file.plugins_migrated:
            continue
        file.plugins_migrated = True
        if file.version >= CURRENT_VERSION:
            continue
        plugins = file.raw.setdefault("plugins", {})
        for version in range(file.version, CURRENT_VERSION):
            for reg in regs:
                assert reg.config_migration is not None
                try:
                    reg.config_migration(version, plugins)
                except Exception as exc:
                    raise ConfigError(
                        f"{file.path}: config migration of plugin {reg.uri} "
                        f"from version {version} failed: {exc}"
                    ) from exc
        if not plugins:
            del file.raw["plugins"]
        changed = True
        warnings.append(
            f"{file.path}: configuration migrated from version {file.version} to "
            f"{CURRENT_VERSION}; run `pycontainerd config migrate` to avoid migrating at start"
        )
    if changed:
        loaded.raw = _merge_files(loaded.files)
        loaded.config = _typed(loaded.raw, "")
    loaded.warnings.extend(warnings)
    return warnings


def parse_toml(text: str, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse TOML; a syntax error is a ConfigError ``<file>:<line>:<col>: <message>``."""
    try:
        return tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        message = getattr(exc, "msg", None) or str(exc)
        line = getattr(exc, "lineno", None)
        col = getattr(exc, "colno", None)
        if line is None or col is None:
            found = _POSITION.search(str(exc))
            line, col = (int(found[1]), int(found[2])) if found else (0, 0)
            message = _POSITION.sub("", message).strip()
        raise ConfigError(f"{path}:{line}:{col}: {message}") from exc


def _absolute(path: Path) -> Path:
    # realpath: a file reached through a symlink is still the same file (loaded once, and
    # an import loop through a symlinked directory is still a loop).
    return Path(os.path.realpath(path))


def _read(path: Path, importer: Path | None) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if importer is None:
            raise ConfigError(f"failed to load config {path}: file does not exist") from None
        raise ConfigError(
            f"failed to load config {path} imported by {importer}: file does not exist"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"failed to load config {path}: {exc}") from exc


def _load_file(
    path: Path, importer: Path | None, warnings: list[str], deprecations: list[str]
) -> ConfigFile:
    raw = parse_toml(_read(path, importer), path)
    version = raw.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ConfigError(f"{path}: invalid config at version: expected int, got {version!r}")
    version = max(version, 1)
    if version > CURRENT_VERSION:
        raise ConfigError(
            f"{path}: config version {version} is newer than supported {CURRENT_VERSION}"
        )
    imports = raw.get("imports", [])
    if not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
        raise ConfigError(f"{path}: invalid config at imports: expected array of str")

    noticed: list[str] = []
    for step in range(version, CURRENT_VERSION):
        migration = MAIN_MIGRATIONS.get(step)
        if migration is not None:
            migration(raw, noticed)
    warnings.extend(f"{path}: {w}" for w in noticed)
    if version < CURRENT_VERSION:
        raw["version"] = CURRENT_VERSION
        deprecations.append(
            f"{path}: config version {version} is deprecated, "
            f"run `pycontainerd config migrate` to update it to version {CURRENT_VERSION}"
        )

    for key in ("disabled_plugins", "required_plugins"):
        for entry in raw.get(key, []) if isinstance(raw.get(key), list) else []:
            if isinstance(entry, str) and "." not in entry:
                kind = key.split("_")[0]
                raise ConfigError(
                    f"{path}: invalid {kind} plugin URI {entry!r} in {key}, "
                    "expect io.containerd.x.vx"
                )

    try:
        _, unknown = codec.decode(Config, raw, "")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    warnings.extend(f"{path}: {w}" for w in unknown)
    return ConfigFile(path=path, version=version, raw=raw)


def _resolve_imports(parent: Path, imports: Iterable[str]) -> list[Path]:
    out: list[Path] = []
    for entry in imports:
        path = Path(entry)
        if not path.is_absolute():
            path = parent.parent / path
        path = _absolute(path)
        if glob.has_magic(str(path)):
            out.extend(Path(p) for p in sorted(glob.glob(str(path))))
        else:
            out.append(path)
    return out


def _is_zero(value: Any) -> bool:
    return value is False or value == "" or (type(value) is int and value == 0)


def merge(into: dict[str, Any], other: dict[str, Any], *, top: bool = True) -> None:
    """Merge ``other`` into ``into`` with containerd's rules: later non-zero scalars win,
    arrays are unioned in order, tables are merged key by key, except that the entries of
    ``plugins``, ``proxy_plugins``, ``stream_processors`` and ``timeouts`` are replaced
    wholesale."""
    for key, value in other.items():
        current = into.get(key)
        if top and key in REPLACED_TABLES and isinstance(value, dict):
            if not isinstance(current, dict):
                current = into[key] = {}
            for name, section in value.items():
                current[name] = copy.deepcopy(section)
        elif isinstance(value, list) and isinstance(current, list):
            for item in value:
                if item not in current:
                    current.append(copy.deepcopy(item))
        elif isinstance(value, dict) and isinstance(current, dict):
            merge(current, value, top=False)
        elif key not in into or not _is_zero(value):
            into[key] = copy.deepcopy(value)


def _merge_files(files: Iterable[ConfigFile]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for file in files:
        merge(merged, file.raw)
    merged["version"] = CURRENT_VERSION
    return merged


def _typed(raw: dict[str, Any], where: str) -> Config:
    try:
        config, _ = codec.decode(Config, raw, "")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}" if where else str(exc)) from exc
    return config
