"""NRI protocol constants and helpers: the generated messages (``pb``), service names, event
masks, plugin name and index rules, environment variable names and defaults."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from pycontainerd.api.nri.pkg.api.v1alpha1 import api_pb2 as pb
from pycontainerd.core import errdefs

PACKAGE = "nri.pkg.api.v1alpha1"
RUNTIME_SERVICE = f"{PACKAGE}.Runtime"
PLUGIN_SERVICE = f"{PACKAGE}.Plugin"

DEFAULT_SOCKET_PATH = "/var/run/nri/nri.sock"
DEFAULT_PLUGIN_PATH = "/opt/nri/plugins"
DEFAULT_PLUGIN_CONFIG_PATH = "/etc/nri/conf.d"
DEFAULT_REGISTRATION_TIMEOUT = 5.0
DEFAULT_REQUEST_TIMEOUT = 2.0
#: The containerd/nri release whose API we speak, sent in ConfigureRequest.NRI_version (as
#: containerd sends the version of the NRI module it is built with). Go plugin stubs log it and
#: otherwise try to infer it from the runtime's name, which they only know for containerd and
#: CRI-O.
NRI_VERSION = "v0.12.2"

PLUGIN_SOCKET_ENV = "NRI_PLUGIN_SOCKET"
PLUGIN_NAME_ENV = "NRI_PLUGIN_NAME"
PLUGIN_IDX_ENV = "NRI_PLUGIN_IDX"

Event = pb.Event
#: Every event a plugin may subscribe to: bits 0 .. LAST-2.
VALID_EVENTS = (1 << (pb.LAST - 1)) - 1

#: RPC name of each event (the dedicated Plugin RPCs).
EVENT_NAMES: dict[int, str] = {
    pb.RUN_POD_SANDBOX: "RunPodSandbox",
    pb.UPDATE_POD_SANDBOX: "UpdatePodSandbox",
    pb.POST_UPDATE_POD_SANDBOX: "PostUpdatePodSandbox",
    pb.STOP_POD_SANDBOX: "StopPodSandbox",
    pb.REMOVE_POD_SANDBOX: "RemovePodSandbox",
    pb.CREATE_CONTAINER: "CreateContainer",
    pb.POST_CREATE_CONTAINER: "PostCreateContainer",
    pb.START_CONTAINER: "StartContainer",
    pb.POST_START_CONTAINER: "PostStartContainer",
    pb.UPDATE_CONTAINER: "UpdateContainer",
    pb.POST_UPDATE_CONTAINER: "PostUpdateContainer",
    pb.STOP_CONTAINER: "StopContainer",
    pb.REMOVE_CONTAINER: "RemoveContainer",
    pb.VALIDATE_CONTAINER_ADJUSTMENT: "ValidateContainerAdjustment",
}
_BY_LOWER = {name.lower(): ev for ev, name in EVENT_NAMES.items()}

#: Events that older plugins (NRI < 0.10/0.12) receive through ``StateChange``.
STATE_CHANGE_EVENTS = frozenset(
    {
        pb.RUN_POD_SANDBOX,
        pb.POST_UPDATE_POD_SANDBOX,
        pb.STOP_POD_SANDBOX,
        pb.REMOVE_POD_SANDBOX,
        pb.POST_CREATE_CONTAINER,
        pb.START_CONTAINER,
        pb.POST_START_CONTAINER,
        pb.POST_UPDATE_CONTAINER,
        pb.REMOVE_CONTAINER,
    }
)


def event_bit(event: int) -> int:
    return 1 << (event - 1)


def event_mask(*events: int | str) -> int:
    """A subscription mask from events (enum values or names: ``"CreateContainer"``,
    ``"createcontainer,stopcontainer"``, ``"all"``, ``"pod"``, ``"container"``)."""
    mask = 0
    for ev in events:
        if isinstance(ev, int):
            mask |= event_bit(ev)
            continue
        for name in ev.lower().split(","):
            name = name.strip()
            if name == "all":
                mask |= VALID_EVENTS
            elif name in ("pod", "podsandbox"):
                mask |= _mask_where(lambda n: "pod" in n)
            elif name == "container":
                mask |= _mask_where(lambda n: "container" in n)
            elif name in _BY_LOWER:
                mask |= event_bit(_BY_LOWER[name])
            else:
                raise errdefs.InvalidArgument(f"unknown nri event {name!r}")
    return mask


def _mask_where(pred: Callable[[str], bool]) -> int:
    return sum(event_bit(e) for n, e in _BY_LOWER.items() if pred(n))


def is_set(mask: int, event: int) -> bool:
    return bool(mask & event_bit(event))


def mask_events(mask: int) -> list[str]:
    """Event names in a mask, for logs."""
    return [name for ev, name in sorted(EVENT_NAMES.items()) if is_set(mask, ev)]


_INDEX = re.compile(r"^[0-9]{2}$")
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


def check_plugin_index(idx: str) -> None:
    if not _INDEX.match(idx):
        raise errdefs.InvalidArgument(f"invalid plugin index {idx!r}, must be 2 digits")


def check_plugin_name(name: str) -> None:
    if not name:
        raise errdefs.InvalidArgument("invalid plugin name: name is empty")
    if not _NAME.match(name):
        raise errdefs.InvalidArgument(f"invalid plugin name {name!r}: contains invalid characters")


def parse_plugin_name(name: str) -> tuple[str, str]:
    """``"10-logger"`` -> ``("10", "logger")``."""
    idx, sep, base = name.partition("-")
    if not sep:
        raise errdefs.InvalidArgument(f"invalid plugin name {name!r}, idx-pluginname expected")
    check_plugin_index(idx)
    return idx, base


# -- removal markers ("-key" asks to remove key)


def is_marked_for_removal(key: str) -> tuple[str, bool]:
    if key.startswith("-"):
        return key[1:], True
    return key, False


def mark_for_removal(key: str) -> str:
    return "-" + key


def split_env(entries: Iterable[str]) -> list[tuple[str, str]]:
    out = []
    for e in entries:
        k, _, v = e.partition("=")
        out.append((k, v))
    return out
