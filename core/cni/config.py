"""CNI network configurations: parsing and validation of ``.conf``/``.json`` (one plugin) and
``.conflist`` (a chain of plugins) files, and loading them from a conf dir as containerd's
go-cni does (files sorted by name, the first ``max_conf_num`` kept, a single-plugin file wrapped
into a list, any invalid file an error naming it).

Errors are :class:`~pycontainerd.core.errdefs.InvalidArgument` with the file in the message;
an empty or missing directory is :class:`~pycontainerd.core.errdefs.FailedPrecondition`
("cni plugin not initialized"), which is what the CRI reports as NetworkReady=false.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.cni.types import SUPPORTED_VERSIONS, version_tuple

CONF_EXTENSIONS = (".conf", ".conflist", ".json")
NOT_INITIALIZED = "cni plugin not initialized"

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")


def valid_name(value: str) -> bool:
    """The CNI rule for network names and container ids."""
    return bool(_NAME_RE.match(value))


@attrs.frozen(kw_only=True)
class PluginConfig:
    """One plugin's configuration object, as written (``conf``) plus what the runtime needs."""

    type: str
    name: str = ""
    cni_version: str = ""
    capabilities: Mapping[str, bool] = attrs.field(factory=dict)
    conf: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class NetworkConfigList:
    """A network: a name, a spec version and the plugins to run in order."""

    name: str
    cni_version: str
    plugins: tuple[PluginConfig, ...]
    disable_check: bool = False
    source: str = ""  # the file it came from ("" when built from bytes)
    raw: bytes = attrs.field(default=b"", eq=False, repr=False)


def _fail(source: str, message: str) -> errdefs.InvalidArgument:
    where = f" {source}" if source else ""
    return errdefs.InvalidArgument(f"invalid cni config{where}: {message}")


def _check_version(version: Any, source: str) -> str:
    if version is None or version == "":
        return ""
    if not isinstance(version, str):
        raise _fail(source, f"cniVersion must be a string, not {type(version).__name__}")
    try:
        version_tuple(version)
    except errdefs.InvalidArgument:
        raise _fail(source, f'invalid cniVersion "{version}"') from None
    if version_tuple(version) > version_tuple(SUPPORTED_VERSIONS[-1]):
        raise _fail(
            source,
            f'cniVersion "{version}" is newer than supported ({SUPPORTED_VERSIONS[-1]})',
        )
    return version


def _plugin(obj: Any, source: str, where: str) -> PluginConfig:
    if not isinstance(obj, dict):
        raise _fail(source, f"{where} is not a json object")
    typ = obj.get("type")
    if not isinstance(typ, str) or not typ:
        raise _fail(source, f"{where} has no 'type'")
    if "/" in typ or typ in (".", ".."):
        raise _fail(source, f'{where} has an invalid type "{typ}"')
    caps = obj.get("capabilities") or {}
    if not isinstance(caps, dict) or not all(isinstance(v, bool) for v in caps.values()):
        raise _fail(source, f"{where} capabilities must map names to booleans")
    name = obj.get("name", "")
    return PluginConfig(
        type=typ,
        name=name if isinstance(name, str) else "",
        cni_version=_check_version(obj.get("cniVersion"), source),
        capabilities=dict(caps),
        conf=obj,
    )


def _loads(data: bytes | str, source: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise _fail(source, f"malformed json: {e}") from None


def _check_name(name: Any, source: str) -> str:
    if not isinstance(name, str) or not name:
        raise _fail(source, "no network name")
    if not valid_name(name):
        raise _fail(source, f'invalid network name "{name}"')
    return name


def conf_from_bytes(data: bytes | str, source: str = "") -> PluginConfig:
    """A single-plugin configuration (a ``.conf``/``.json`` file)."""
    obj = _loads(data, source)
    plugin = _plugin(obj, source, "configuration")
    _check_name(obj.get("name"), source)
    return plugin


def conf_list_from_bytes(data: bytes | str, source: str = "") -> NetworkConfigList:
    """A ``.conflist``: ``name``, ``cniVersion`` (or ``cniVersions``), ``plugins``."""
    raw = data.encode() if isinstance(data, str) else data
    obj = _loads(raw, source)
    if not isinstance(obj, dict):
        raise _fail(source, "not a json object")
    name = _check_name(obj.get("name"), source)
    version = _check_version(obj.get("cniVersion"), source)
    versions = obj.get("cniVersions")
    if versions is not None:
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise _fail(source, "cniVersions must be a list of strings")
        usable = [v for v in versions if v in SUPPORTED_VERSIONS]
        if version:
            usable.append(version)
        if usable:
            version = max(usable, key=version_tuple)
    disable_check = obj.get("disableCheck", False)
    if isinstance(disable_check, str) and disable_check.lower() in ("true", "false"):
        disable_check = disable_check.lower() == "true"
    if not isinstance(disable_check, bool):
        raise _fail(source, "disableCheck must be a boolean")
    plugins = obj.get("plugins")
    if plugins is None:
        raise _fail(source, "no 'plugins' key")
    if not isinstance(plugins, list):
        raise _fail(source, "'plugins' must be a list")
    if not plugins:
        raise _fail(source, "no plugins in list")
    return NetworkConfigList(
        name=name,
        cni_version=version,
        plugins=tuple(_plugin(p, source, f"plugin {i}") for i, p in enumerate(plugins)),
        disable_check=disable_check,
        source=source,
        raw=raw,
    )


def conf_list_from_conf(conf: PluginConfig, source: str = "") -> NetworkConfigList:
    """Wrap a single-plugin configuration into a one-element list (as libcni does)."""
    name = _check_name(conf.conf.get("name"), source)
    doc = {"name": name, "cniVersion": conf.cni_version, "plugins": [dict(conf.conf)]}
    return NetworkConfigList(
        name=name,
        cni_version=conf.cni_version,
        plugins=(conf,),
        source=source,
        raw=json.dumps(doc).encode(),
    )


def conf_list_from_file(path: str) -> NetworkConfigList:
    """Load one file; ``.conflist`` as a list, anything else as a single plugin wrapped."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise errdefs.NotFound(f'cni config file "{path}" not found') from None
    except OSError as e:
        raise errdefs.InvalidArgument(f'failed to read cni config "{path}": {e.strerror}') from e
    if path.endswith(".conflist"):
        return conf_list_from_bytes(data, path)
    return conf_list_from_conf(conf_from_bytes(data, path), path)


def conf_files(conf_dir: str, extensions: Sequence[str] = CONF_EXTENSIONS) -> list[str]:
    """Regular files in ``conf_dir`` with one of ``extensions``, sorted by name. A missing
    directory has none."""
    try:
        names = os.listdir(conf_dir)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise errdefs.FailedPrecondition(
            f'failed to read cni config dir "{conf_dir}": {e.strerror}'
        ) from e
    out = []
    for name in sorted(names):
        path = os.path.join(conf_dir, name)
        if os.path.splitext(name)[1] in extensions and os.path.isfile(path):
            out.append(path)
    return out


def load_conf_dir(conf_dir: str, max_conf_num: int = 1) -> list[NetworkConfigList]:
    """The networks of ``conf_dir``: the first ``max_conf_num`` files (all when <= 0)."""
    files = conf_files(conf_dir)
    if not files:
        raise errdefs.FailedPrecondition(
            f'{NOT_INITIALIZED}: no network config found in "{conf_dir}"'
        )
    networks: list[NetworkConfigList] = []
    for path in files:
        if max_conf_num > 0 and len(networks) >= max_conf_num:
            break
        networks.append(conf_list_from_file(path))
    return networks
