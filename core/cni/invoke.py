"""Running one CNI plugin binary, per the CNI spec's execution protocol.

The plugin is found by its ``type`` in the plugin directories, started as an asyncio subprocess
with the configuration on stdin and ``CNI_*`` variables added to the daemon's environment
(plugins such as portmap run ``iptables`` through ``PATH``). Exit status 0 means success and
stdout is the result; otherwise stdout should hold a JSON error ``{code, msg, details}``, which
becomes a :class:`PluginError`. A plugin being replaced on disk ("text file busy") is retried.
"""

from __future__ import annotations

import asyncio
import errno as _errno
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs

log = logging.getLogger(__name__)

#: CNI spec error codes
ERR_INCOMPATIBLE_VERSION = 1
ERR_UNSUPPORTED_FIELD = 2
ERR_UNKNOWN_CONTAINER = 3
ERR_INVALID_ENVIRONMENT = 4
ERR_IO_FAILURE = 5
ERR_DECODING_FAILURE = 6
ERR_INVALID_NETWORK_CONFIG = 7
ERR_TRY_AGAIN_LATER = 11
ERR_INTERNAL = 999

_BUSY_RETRIES = 5


class PluginError(errdefs.Unknown):
    """A CNI plugin failed. ``cni_code``/``msg``/``details`` are the plugin's JSON error (code 0
    when it printed none); ``plugin`` its type, ``command`` ADD/DEL/CHECK/VERSION."""

    def __init__(
        self,
        message: str,
        *,
        plugin: str = "",
        command: str = "",
        cni_code: int = 0,
        msg: str = "",
        details: str = "",
    ) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.command = command
        self.cni_code = cni_code
        self.msg = msg
        self.details = details


@attrs.frozen(kw_only=True)
class Args:
    """The ``CNI_*`` environment of one invocation."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    plugin_args: tuple[tuple[str, str], ...] = ()
    path: tuple[str, ...] = ()

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in (os.environ if base is None else base).items()}
        for k in list(env):
            if k.startswith("CNI_"):
                del env[k]
        env.update(
            CNI_COMMAND=self.command,
            CNI_CONTAINERID=self.container_id,
            CNI_NETNS=self.netns,
            CNI_IFNAME=self.ifname,
            CNI_ARGS=";".join(f"{k}={v}" for k, v in self.plugin_args),
            CNI_PATH=os.pathsep.join(self.path),
        )
        return env


def find_in_path(plugin: str, paths: Sequence[str]) -> str:
    """The executable for plugin type ``plugin`` in the first of ``paths`` that has it."""
    if not plugin:
        raise errdefs.InvalidArgument("no plugin name provided")
    if "/" in plugin or plugin in (".", ".."):
        raise errdefs.InvalidArgument(f'invalid plugin name "{plugin}"')
    if not paths:
        raise errdefs.InvalidArgument("no cni plugin paths provided")
    for d in paths:
        candidate = os.path.join(d, plugin)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise errdefs.NotFound(f'failed to find plugin "{plugin}" in path [{" ".join(paths)}]')


def _plugin_error(plugin: str, command: str, rc: int, stdout: bytes, stderr: bytes) -> PluginError:
    code, msg, details = 0, "", ""
    text = stdout.strip()
    if text:
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and ("msg" in obj or "code" in obj):
            raw_code = obj.get("code")
            code = raw_code if isinstance(raw_code, int) else 0
            msg = str(obj.get("msg") or "")
            details = str(obj.get("details") or "")
        else:
            shown = text.decode(errors="replace")
            msg = f"netplugin failed but error parsing its diagnostic message {shown!r}"
    elif stderr.strip():
        msg = f"netplugin failed: {stderr.strip().decode(errors='replace')!r}: exit status {rc}"
    else:
        msg = f"netplugin failed with no error message: exit status {rc}"
    full = f"{msg}; {details}" if details else msg
    return PluginError(
        full, plugin=plugin, command=command, cni_code=code, msg=msg, details=details
    )


async def exec_plugin(
    plugin_path: str,
    stdin: bytes,
    args: Args,
    *,
    timeout: float | None = None,
) -> bytes:
    """Run the plugin and return its stdout; a failure is a :class:`PluginError`."""
    plugin = os.path.basename(plugin_path)
    env = args.environ()
    for attempt in range(_BUSY_RETRIES + 1):
        try:
            proc = await asyncio.create_subprocess_exec(
                plugin_path,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                close_fds=True,
            )
        except OSError as e:
            if e.errno == _errno.ETXTBSY and attempt < _BUSY_RETRIES:
                await asyncio.sleep(1)
                continue
            raise PluginError(
                f'failed to execute plugin "{plugin_path}": {e.strerror}',
                plugin=plugin,
                command=args.command,
            ) from e
        break
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except BaseException as e:  # timeout or cancellation: the plugin must not outlive the call
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if isinstance(e, TimeoutError):
            raise errdefs.DeadlineExceeded(
                f'plugin "{plugin}" did not finish {args.command} within {timeout}s'
            ) from None
        raise
    if stderr:
        log.debug(
            "cni plugin %s %s stderr: %s", plugin, args.command, stderr.decode(errors="replace")
        )
    if proc.returncode != 0:
        raise _plugin_error(plugin, args.command, proc.returncode or 0, stdout, stderr)
    return stdout


def decode_json(plugin: str, command: str, stdout: bytes) -> Any:
    """A plugin's successful stdout as JSON (empty output is ``None``)."""
    if not stdout.strip():
        return None
    try:
        return json.loads(stdout)
    except ValueError:
        raise PluginError(
            f"failed to decode plugin output {stdout[:200].decode(errors='replace')!r}",
            plugin=plugin,
            command=command,
            cni_code=ERR_DECODING_FAILURE,
        ) from None
