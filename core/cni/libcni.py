"""Running a network (a list of plugins) for one attachment, as libcni does it.

- ADD runs the plugins in order; each gets the network's ``name`` and ``cniVersion``, the
  previous plugin's result as ``prevResult``, and, in ``runtimeConfig``, those capability
  arguments its ``capabilities`` declares. The last result is the network's result and is cached.
- CHECK (spec >= 0.4.0, unless ``disableCheck``) runs the plugins in order with the cached
  result as ``prevResult``; no cached result is NotFound.
- DEL runs the plugins in reverse with the cached result (spec >= 0.4.0) and then drops the
  cache entry; a missing or unreadable cache entry is not an error. Unlike libcni, a failing
  plugin does not stop the others from running (so they still release what they hold); the
  first error is raised and the cache entry kept for a retry.
- Before ADD runs anything, every plugin binary of the list must be found (a missing one is
  NotFound and nothing was changed).

The cache is ``<cache_dir>/results/<network>-<container id>-<ifname>``, one JSON document in
libcni's ``cniCacheV1`` format (so ``cnitool`` and other libcni users can read it).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.cni.config import NetworkConfigList, PluginConfig, valid_name
from pycontainerd.core.cni.invoke import Args, PluginError, decode_json, exec_plugin, find_in_path
from pycontainerd.core.cni.types import PluginResult, parse_result, version_at_least

log = logging.getLogger(__name__)

#: libcni's default cache directory
DEFAULT_CACHE_DIR = "/var/lib/cni"
CACHE_KIND = "cniCacheV1"

_IFNAME_BAD = re.compile(r"[/:\s]")


def _json_default(value: Any) -> Any:
    to_json = getattr(value, "to_json", None)
    if to_json is not None:
        return to_json()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as json")


@attrs.frozen(kw_only=True)
class RuntimeConf:
    """One attachment: container id, netns path, interface name, ``CNI_ARGS`` pairs, and the
    capability arguments offered to plugins (``portMappings``, ``bandwidth``, ``dns``, ...)."""

    container_id: str
    netns: str
    ifname: str
    args: tuple[tuple[str, str], ...] = ()
    capability_args: Mapping[str, Any] = attrs.field(factory=dict)


def validate_ifname(ifname: str) -> None:
    if not ifname:
        raise errdefs.InvalidArgument("interface name is missing")
    if len(ifname) > 15:
        raise errdefs.InvalidArgument(f'interface name "{ifname}" is too long')
    if ifname in (".", "..") or _IFNAME_BAD.search(ifname):
        raise errdefs.InvalidArgument(f'interface name "{ifname}" contains invalid characters')


def _describe(plugin: PluginConfig) -> str:
    out = f'type="{plugin.type}"'
    if plugin.name:
        out += f' name="{plugin.name}"'
    return out


@attrs.define(eq=False)
class CNIConfig:
    """Executes network lists with plugins from ``paths``; results cached under ``cache_dir``."""

    paths: tuple[str, ...] = attrs.field(converter=tuple)
    cache_dir: str = DEFAULT_CACHE_DIR
    timeout: float | None = None

    # --- configuration sent to a plugin --------------------------------------------------

    def build_config(
        self,
        network: NetworkConfigList,
        plugin: PluginConfig,
        prev_result: Mapping[str, Any] | None,
        rt: RuntimeConf | None,
    ) -> bytes:
        conf = dict(plugin.conf)
        conf["name"] = network.name
        conf["cniVersion"] = network.cni_version
        if prev_result is not None:
            conf["prevResult"] = prev_result
        if rt is not None:
            runtime_config = {
                cap: rt.capability_args[cap]
                for cap, supported in plugin.capabilities.items()
                if supported and cap in rt.capability_args
            }
            if runtime_config:
                conf["runtimeConfig"] = runtime_config
        return json.dumps(conf, default=_json_default).encode()

    def _args(self, command: str, rt: RuntimeConf) -> Args:
        return Args(
            command=command,
            container_id=rt.container_id,
            netns=rt.netns,
            ifname=rt.ifname,
            plugin_args=rt.args,
            path=self.paths,
        )

    async def _run(
        self,
        command: str,
        network: NetworkConfigList,
        plugin: PluginConfig,
        prev: Mapping[str, Any] | None,
        rt: RuntimeConf,
    ) -> Any:
        path = find_in_path(plugin.type, self.paths)
        stdin = self.build_config(network, plugin, prev, rt)
        log.debug(
            "cni %s: network=%s plugin=%s id=%s ifname=%s",
            command,
            network.name,
            plugin.type,
            rt.container_id,
            rt.ifname,
        )
        out = await exec_plugin(path, stdin, self._args(command, rt), timeout=self.timeout)
        return decode_json(plugin.type, command, out) if command == "ADD" else None

    @staticmethod
    def _wrap(e: errdefs.ContainerdError, plugin: PluginConfig, op: str) -> errdefs.ContainerdError:
        message = f"plugin {_describe(plugin)} failed ({op}): {e}"
        if isinstance(e, PluginError):
            return PluginError(
                message,
                plugin=plugin.type,
                command=e.command,
                cni_code=e.cni_code,
                msg=e.msg,
                details=e.details,
            )
        return type(e)(message)

    # --- operations ----------------------------------------------------------------------

    async def add_network_list(self, network: NetworkConfigList, rt: RuntimeConf) -> PluginResult:
        if not valid_name(rt.container_id):
            raise errdefs.InvalidArgument(f'invalid container id "{rt.container_id}"')
        validate_ifname(rt.ifname)
        for plugin in network.plugins:  # every binary present before anything is changed
            try:
                find_in_path(plugin.type, self.paths)
            except errdefs.ContainerdError as e:
                raise self._wrap(e, plugin, "add") from e
        prev: Mapping[str, Any] | None = None
        for plugin in network.plugins:
            try:
                out = await self._run("ADD", network, plugin, prev, rt)
                if not isinstance(out, dict):
                    raise PluginError("plugin printed no result", plugin=plugin.type, command="ADD")
                parse_result(out, network.cni_version)  # validates before it is chained
            except errdefs.ContainerdError as e:
                raise self._wrap(e, plugin, "add") from e
            prev = out
        assert prev is not None
        result = parse_result(prev, network.cni_version)
        try:
            self._cache_add(network, rt, prev)
        except OSError as e:
            raise errdefs.Internal(
                f'failed to set network "{network.name}" cached result: {e}'
            ) from e
        return result

    async def check_network_list(self, network: NetworkConfigList, rt: RuntimeConf) -> None:
        if not version_at_least(network.cni_version, "0.4.0"):
            raise errdefs.NotImplemented_(
                f'configuration version "{network.cni_version}" does not support the CHECK command'
            )
        if network.disable_check:
            return
        cached = self.cached_result(network.name, rt)
        if cached is None:
            raise errdefs.NotFound(f'failed to get network "{network.name}" cached result')
        for plugin in network.plugins:
            try:
                await self._run("CHECK", network, plugin, cached, rt)
            except errdefs.ContainerdError as e:
                raise self._wrap(e, plugin, "check") from e

    async def del_network_list(self, network: NetworkConfigList, rt: RuntimeConf) -> None:
        cached: Mapping[str, Any] | None = None
        if version_at_least(network.cni_version, "0.4.0"):
            cached = self.cached_result(network.name, rt)
        first: errdefs.ContainerdError | None = None
        for plugin in reversed(network.plugins):
            try:
                await self._run("DEL", network, plugin, cached, rt)
            except errdefs.ContainerdError as e:
                # unlike libcni, go on: the other plugins still release what they hold
                wrapped = self._wrap(e, plugin, "delete")
                wrapped.__cause__ = e
                log.warning("cni DEL of %s: %s", rt.container_id, wrapped)
                first = first or wrapped
        if first is not None:
            raise first  # the cache entry stays for the retry
        self._cache_del(network.name, rt)

    async def version_info(self, plugin_type: str, cni_version: str = "1.0.0") -> dict[str, Any]:
        """The plugin's answer to VERSION (``cniVersion``, ``supportedVersions``)."""
        path = find_in_path(plugin_type, self.paths)
        stdin = json.dumps({"cniVersion": cni_version}).encode()
        out = await exec_plugin(path, stdin, Args(command="VERSION", path=self.paths))
        info = decode_json(plugin_type, "VERSION", out)
        if not isinstance(info, dict):
            raise PluginError("invalid VERSION answer", plugin=plugin_type, command="VERSION")
        return info

    # --- result cache --------------------------------------------------------------------

    def cache_path(self, network_name: str, rt: RuntimeConf) -> str:
        if not (network_name and rt.container_id and rt.ifname):
            raise errdefs.InvalidArgument(
                "cache file path requires network name, container id and interface name"
            )
        return os.path.join(
            self.cache_dir, "results", f"{network_name}-{rt.container_id}-{rt.ifname}"
        )

    def _cache_add(
        self, network: NetworkConfigList, rt: RuntimeConf, result: Mapping[str, Any]
    ) -> None:
        doc: dict[str, Any] = {
            "kind": CACHE_KIND,
            "containerId": rt.container_id,
            "config": base64.b64encode(network.raw).decode(),
            "ifName": rt.ifname,
            "networkName": network.name,
        }
        if rt.netns:
            doc["netns"] = rt.netns
        if rt.args:
            doc["cniArgs"] = [list(a) for a in rt.args]
        if rt.capability_args:
            doc["capabilityArgs"] = dict(rt.capability_args)
        doc["result"] = result
        path = self.cache_path(network.name, rt)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, default=_json_default)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def _cache_del(self, network_name: str, rt: RuntimeConf) -> None:
        try:
            os.unlink(self.cache_path(network_name, rt))
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("failed to remove cni cache entry for %s: %s", rt.container_id, e)

    def cached_entry(self, network_name: str, rt: RuntimeConf) -> dict[str, Any] | None:
        """The whole cache document, or None when absent or unreadable."""
        try:
            with open(self.cache_path(network_name, rt), "rb") as f:
                doc = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable cni cache entry for %s: %s", rt.container_id, e)
            return None
        if not isinstance(doc, dict) or doc.get("kind") != CACHE_KIND:
            return None
        return doc

    def cached_result(self, network_name: str, rt: RuntimeConf) -> dict[str, Any] | None:
        doc = self.cached_entry(network_name, rt)
        result = doc.get("result") if doc else None
        return result if isinstance(result, dict) else None


def merge_args(
    *pairs: Sequence[tuple[str, str]] | Mapping[str, str],
) -> tuple[tuple[str, str], ...]:
    """``CNI_ARGS`` pairs from mappings or pair lists, later keys replacing earlier ones."""
    out: dict[str, str] = {}
    for p in pairs:
        items = p.items() if isinstance(p, Mapping) else p
        for k, v in items:
            out[k] = v
    return tuple(out.items())
