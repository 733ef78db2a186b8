"""CDI spec files: value types, parsing (JSON or YAML), versions and validation.

A spec file declares a ``kind`` (``vendor/class``), a list of devices, each with the container
edits to make when it is requested, and spec-wide container edits made once when any of its
devices is requested. Field names are CDI's JSON names; as CDI's Go decoder does, unknown
fields are errors and field names also match case-insensitively (so ``additionalGIDs``, as
CDI's own SPEC.md spells it, reads as ``additionalGids``). ``null`` means "not set".
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.cdi import parser

#: The CDI spec version this package implements (the newest it reads).
CURRENT_VERSION = "1.1.0"

#: Every released spec version, oldest first.
KNOWN_VERSIONS: tuple[str, ...] = (
    "0.1.0",
    "0.2.0",
    "0.3.0",
    "0.4.0",
    "0.5.0",
    "0.6.0",
    "0.7.0",
    "0.8.0",
    "1.0.0",
    "1.1.0",
)
_EARLIEST_REQUIRED = "0.3.0"

#: Hook names CDI accepts (the OCI hook names, ``prestart`` included).
HOOK_NAMES: tuple[str, ...] = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)

#: ``permissions`` value asking for no cgroup access at all.
NO_PERMISSIONS = "none"

_DEVICE_TYPES = frozenset({"", "b", "c", "u", "p"})
_UINT32_MAX = 2**32 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

_T = TypeVar("_T")


class InvalidSpec(errdefs.InvalidArgument):
    """A CDI spec that cannot be parsed or does not validate."""


# --- value types -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class DeviceNode:
    """A device node to create in the container (``deviceNodes[]``)."""

    path: str
    host_path: str = ""
    type: str = ""
    major: int = 0
    minor: int = 0
    file_mode: int | None = None
    permissions: str = ""
    uid: int | None = None
    gid: int | None = None


@attrs.frozen(kw_only=True)
class Mount:
    """A mount to add to the container (``mounts[]``)."""

    host_path: str
    container_path: str
    options: tuple[str, ...] = ()
    type: str = ""


@attrs.frozen(kw_only=True)
class Hook:
    """An OCI hook to add under ``hook_name`` (``hooks[]``)."""

    hook_name: str
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None


@attrs.frozen(kw_only=True)
class IntelRdt:
    """``intelRdt``: the container's resctrl class of service. Replaces the OCI one whole."""

    clos_id: str = ""
    l3_cache_schema: str = ""
    mem_bw_schema: str = ""
    #: None when absent; an empty tuple when given empty (that needs spec 1.1.0, as in CDI).
    schemata: tuple[str, ...] | None = None
    enable_monitoring: bool = False


@attrs.frozen(kw_only=True)
class NetDevice:
    """A host network interface to move into the container (``netDevices[]``)."""

    host_interface_name: str
    name: str


@attrs.frozen(kw_only=True)
class ContainerEdits:
    """Edits to make to a container's OCI runtime spec."""

    env: tuple[str, ...] = ()
    device_nodes: tuple[DeviceNode, ...] = ()
    net_devices: tuple[NetDevice, ...] = ()
    hooks: tuple[Hook, ...] = ()
    mounts: tuple[Mount, ...] = ()
    intel_rdt: IntelRdt | None = None
    additional_gids: tuple[int, ...] = ()

    def is_empty(self) -> bool:
        return not (
            self.env
            or self.device_nodes
            or self.net_devices
            or self.hooks
            or self.mounts
            or self.additional_gids
            or self.intel_rdt is not None
        )


def merge_edits(edits: Iterable[ContainerEdits]) -> ContainerEdits:
    """One set of edits doing all of ``edits`` in order (lists concatenate; the last
    ``intel_rdt`` given wins), as CDI accumulates them before applying."""
    env: list[str] = []
    nodes: list[DeviceNode] = []
    nets: list[NetDevice] = []
    hooks: list[Hook] = []
    mounts: list[Mount] = []
    gids: list[int] = []
    rdt: IntelRdt | None = None
    for e in edits:
        env.extend(e.env)
        nodes.extend(e.device_nodes)
        nets.extend(e.net_devices)
        hooks.extend(e.hooks)
        mounts.extend(e.mounts)
        gids.extend(e.additional_gids)
        if e.intel_rdt is not None:
            rdt = e.intel_rdt
    return ContainerEdits(
        env=tuple(env),
        device_nodes=tuple(nodes),
        net_devices=tuple(nets),
        hooks=tuple(hooks),
        mounts=tuple(mounts),
        intel_rdt=rdt,
        additional_gids=tuple(gids),
    )


@attrs.frozen(kw_only=True)
class Device:
    """A device of a spec. ``vendor``/``device_class`` come from the spec's kind."""

    name: str
    vendor: str
    device_class: str
    container_edits: ContainerEdits
    annotations: Mapping[str, str] = attrs.field(factory=dict, hash=False)

    @property
    def qualified_name(self) -> str:
        return parser.qualified_name(self.vendor, self.device_class, self.name)


@attrs.frozen(kw_only=True)
class Spec:
    """A validated CDI spec, as read from ``path``. ``priority`` is the index of its spec
    directory: a device in a spec of higher priority overrides one of the same name."""

    version: str
    kind: str
    devices: tuple[Device, ...]
    container_edits: ContainerEdits = ContainerEdits()
    annotations: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    path: str = ""
    priority: int = 0

    @property
    def vendor(self) -> str:
        return parser.parse_qualifier(self.kind)[0]

    @property
    def device_class(self) -> str:
        return parser.parse_qualifier(self.kind)[1]

    def get_device(self, name: str) -> Device | None:
        """The device with the unqualified ``name``."""
        for d in self.devices:
            if d.name == name:
                return d
        return None


# --- reading -----------------------------------------------------------------------------


def read_spec(path: str | os.PathLike[str], priority: int = 0) -> Spec:
    """Read, parse and validate the spec file at ``path``.

    Raises ``FileNotFoundError`` when there is no such file and :class:`InvalidSpec` (its
    message names the file) when it cannot be read, parsed or validated.
    """
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise InvalidSpec(f"failed to read CDI spec {p!r}: {exc}") from exc
    try:
        return parse_spec(data, path=p, priority=priority)
    except InvalidSpec as exc:
        raise InvalidSpec(f"failed to load CDI spec {p!r}: {exc}") from None


def parse_spec(data: bytes | str, *, path: str = "", priority: int = 0) -> Spec:
    """Parse and validate spec data (JSON or YAML)."""
    raw = load_document(data)
    if raw is None:
        raise InvalidSpec("no spec data")
    return spec_from_dict(raw, path=path, priority=priority)


def load_document(data: bytes | str) -> Any:
    """Decode JSON or YAML (one loader would do, JSON being YAML; JSON is tried first, since
    YAML refuses tabs that JSON allows). Duplicate keys are errors."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise InvalidSpec(
            f"failed to parse: not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text, object_pairs_hook=_json_object)
        except json.JSONDecodeError:
            pass  # maybe YAML flow style; let the YAML parser say what is wrong
    return _load_yaml(text)


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise InvalidSpec(f"failed to parse: duplicate key {k!r}")
        out[k] = v
    return out


def _load_yaml(text: str) -> Any:
    import yaml  # only needed for YAML specs

    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class _Loader(base):  # type: ignore[misc, valid-type]
        pass

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool | None):
                raise InvalidSpec(f"failed to parse: invalid key {key!r}")
            if key in out:
                raise InvalidSpec(f"failed to parse: duplicate key {key!r}")
            out[key] = loader.construct_object(value_node, deep=True)
        return out

    _Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        where = ""
        if exc.problem_mark is not None:
            where = f" at line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}"
        what = " ".join(filter(None, (exc.context, exc.problem))) or "invalid YAML"
        raise InvalidSpec(f"failed to parse: {what}{where}") from None
    except yaml.YAMLError as exc:
        msg = " ".join(str(exc).split())
        raise InvalidSpec(f"failed to parse: {msg}") from None


def spec_from_dict(raw: Any, *, path: str = "", priority: int = 0) -> Spec:
    """Build and validate a :class:`Spec` from decoded JSON/YAML."""
    f = _fields(raw, "spec", ("cdiVersion", "kind", "annotations", "devices", "containerEdits"))
    version = _str(f.get("cdiVersion"), "cdiVersion")
    kind = _str(f.get("kind"), "kind")
    annotations = _str_map(f.get("annotations"), "annotations")
    edits = _edits(f.get("containerEdits"), "containerEdits")
    vendor, device_class = parser.parse_qualifier(kind)
    devices = tuple(
        _device(d, f"devices[{i}]", vendor, device_class)
        for i, d in enumerate(_list(f.get("devices"), "devices"))
    )
    spec = Spec(
        version=version,
        kind=kind,
        devices=devices,
        container_edits=edits,
        annotations=annotations,
        path=os.path.normpath(path) if path else "",
        priority=priority,
    )
    validate_spec(spec)
    return spec


def _device(raw: Any, where: str, vendor: str, device_class: str) -> Device:
    f = _fields(raw, where, ("name", "annotations", "containerEdits"))
    return Device(
        name=_str(f.get("name"), f"{where}.name"),
        vendor=vendor,
        device_class=device_class,
        annotations=_str_map(f.get("annotations"), f"{where}.annotations"),
        container_edits=_edits(f.get("containerEdits"), f"{where}.containerEdits"),
    )


def _edits(raw: Any, where: str) -> ContainerEdits:
    if raw is None:
        return ContainerEdits()
    f = _fields(
        raw,
        where,
        (
            "env",
            "deviceNodes",
            "netDevices",
            "hooks",
            "mounts",
            "intelRdt",
            "additionalGids",
        ),
    )
    rdt = f.get("intelRdt")
    return ContainerEdits(
        env=_str_list(f.get("env"), f"{where}.env"),
        device_nodes=_objects(f.get("deviceNodes"), f"{where}.deviceNodes", _device_node),
        net_devices=_objects(f.get("netDevices"), f"{where}.netDevices", _net_device),
        hooks=_objects(f.get("hooks"), f"{where}.hooks", _hook),
        mounts=_objects(f.get("mounts"), f"{where}.mounts", _mount),
        intel_rdt=None if rdt is None else _intel_rdt(rdt, f"{where}.intelRdt"),
        additional_gids=tuple(
            _int(g, f"{where}.additionalGids[{i}]", 0, _UINT32_MAX)
            for i, g in enumerate(_list(f.get("additionalGids"), f"{where}.additionalGids"))
        ),
    )


def _device_node(raw: Any, where: str) -> DeviceNode:
    f = _fields(
        raw,
        where,
        ("path", "hostPath", "type", "major", "minor", "fileMode", "permissions", "uid", "gid"),
    )
    return DeviceNode(
        path=_str(f.get("path"), f"{where}.path"),
        host_path=_str(f.get("hostPath"), f"{where}.hostPath"),
        type=_str(f.get("type"), f"{where}.type"),
        major=_int(f.get("major", 0), f"{where}.major", _INT64_MIN, _INT64_MAX),
        minor=_int(f.get("minor", 0), f"{where}.minor", _INT64_MIN, _INT64_MAX),
        file_mode=_opt_int(f.get("fileMode"), f"{where}.fileMode", 0, _UINT32_MAX),
        permissions=_str(f.get("permissions"), f"{where}.permissions"),
        uid=_opt_int(f.get("uid"), f"{where}.uid", 0, _UINT32_MAX),
        gid=_opt_int(f.get("gid"), f"{where}.gid", 0, _UINT32_MAX),
    )


def _mount(raw: Any, where: str) -> Mount:
    f = _fields(raw, where, ("hostPath", "containerPath", "options", "type"))
    return Mount(
        host_path=_str(f.get("hostPath"), f"{where}.hostPath"),
        container_path=_str(f.get("containerPath"), f"{where}.containerPath"),
        options=_str_list(f.get("options"), f"{where}.options"),
        type=_str(f.get("type"), f"{where}.type"),
    )


def _hook(raw: Any, where: str) -> Hook:
    f = _fields(raw, where, ("hookName", "path", "args", "env", "timeout"))
    return Hook(
        hook_name=_str(f.get("hookName"), f"{where}.hookName"),
        path=_str(f.get("path"), f"{where}.path"),
        args=_str_list(f.get("args"), f"{where}.args"),
        env=_str_list(f.get("env"), f"{where}.env"),
        timeout=_opt_int(f.get("timeout"), f"{where}.timeout", _INT64_MIN, _INT64_MAX),
    )


def _intel_rdt(raw: Any, where: str) -> IntelRdt:
    f = _fields(
        raw,
        where,
        ("closID", "l3CacheSchema", "memBwSchema", "schemata", "enableMonitoring"),
    )
    schemata = f.get("schemata")
    return IntelRdt(
        clos_id=_str(f.get("closID"), f"{where}.closID"),
        l3_cache_schema=_str(f.get("l3CacheSchema"), f"{where}.l3CacheSchema"),
        mem_bw_schema=_str(f.get("memBwSchema"), f"{where}.memBwSchema"),
        schemata=None if schemata is None else _str_list(schemata, f"{where}.schemata"),
        enable_monitoring=_bool(f.get("enableMonitoring", False), f"{where}.enableMonitoring"),
    )


def _net_device(raw: Any, where: str) -> NetDevice:
    f = _fields(raw, where, ("hostInterfaceName", "name"))
    return NetDevice(
        host_interface_name=_str(f.get("hostInterfaceName"), f"{where}.hostInterfaceName"),
        name=_str(f.get("name"), f"{where}.name"),
    )


# --- decoding helpers --------------------------------------------------------------------


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _fields(raw: Any, where: str, known: Sequence[str]) -> dict[str, Any]:
    """The fields of an object, keyed by their canonical names; nulls dropped."""
    if not isinstance(raw, Mapping):
        raise InvalidSpec(f"{where}: expected an object, got {_kind_of(raw)}")
    folded = {k.lower(): k for k in known}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise InvalidSpec(f"{where}: field name {key!r} is not a string")
        name = key if key in known else folded.get(key.lower())
        if name is None:
            raise InvalidSpec(f"{where}: unknown field {key!r}")
        if value is not None:
            out[name] = value
    return out


def _str(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidSpec(f"{where}: expected a string, got {_kind_of(value)}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidSpec(f"{where}: expected a boolean, got {_kind_of(value)}")
    return value


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(f"{where}: expected an integer, got {_kind_of(value)}")
    if not lo <= value <= hi:
        raise InvalidSpec(f"{where}: {value} out of range [{lo}, {hi}]")
    return value


def _opt_int(value: Any, where: str, lo: int, hi: int) -> int | None:
    return None if value is None else _int(value, where, lo, hi)


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidSpec(f"{where}: expected an array, got {_kind_of(value)}")
    return value


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    return tuple(_str_item(v, f"{where}[{i}]") for i, v in enumerate(_list(value, where)))


def _str_item(value: Any, where: str) -> str:
    if not isinstance(value, str):  # a null inside a string array is not a string either
        raise InvalidSpec(f"{where}: expected a string, got {_kind_of(value)}")
    return value


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpec(f"{where}: expected an object, got {_kind_of(value)}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise InvalidSpec(f"{where}: key {k!r} is not a string")
        out[k] = _str_item(v, f"{where}.{k}")
    return out


def _objects(value: Any, where: str, build: Callable[[Any, str], _T]) -> tuple[_T, ...]:
    return tuple(build(v, f"{where}[{i}]") for i, v in enumerate(_list(value, where)))


# --- versions ----------------------------------------------------------------------------


def _all_edits(spec: Spec) -> list[ContainerEdits]:
    return [spec.container_edits, *(d.container_edits for d in spec.devices)]


def minimum_required_version(spec: Spec) -> str:
    """The oldest spec version that has every feature ``spec`` uses."""
    edits = _all_edits(spec)
    if any(
        e.net_devices
        or (
            e.intel_rdt is not None
            and (e.intel_rdt.schemata is not None or e.intel_rdt.enable_monitoring)
        )
        for e in edits
    ):
        return "1.1.0"
    if any(e.intel_rdt is not None or e.additional_gids for e in edits):
        return "0.7.0"
    _, slash, device_class = spec.kind.partition("/")
    if spec.annotations or any(d.annotations for d in spec.devices):
        return "0.6.0"
    if slash and "." in device_class:
        return "0.6.0"
    if any(d.name and d.name[0] in "0123456789" for d in spec.devices):
        return "0.5.0"
    if any(n.host_path for e in edits for n in e.device_nodes):
        return "0.5.0"
    if any(m.type for e in edits for m in e.mounts):
        return "0.4.0"
    return _EARLIEST_REQUIRED


def _version_index(version: str) -> int:
    try:
        return KNOWN_VERSIONS.index(version)
    except ValueError:
        return -1


def validate_version(spec: Spec) -> None:
    """The spec's ``cdiVersion`` is known (an optional leading ``v`` allowed) and not older
    than the features it uses."""
    version = spec.version.removeprefix("v")
    if _version_index(version) < 0:
        raise InvalidSpec(f"invalid cdiVersion {spec.version!r}")
    required = minimum_required_version(spec)
    if _version_index(version) < _version_index(required):
        raise InvalidSpec(
            f"cdiVersion {spec.version!r} too old for the features used: must be at least "
            f"{required}"
        )


# --- validation --------------------------------------------------------------------------


def validate_spec(spec: Spec) -> None:
    """Validate a whole spec, as CDI does when it loads one. Raises :class:`InvalidSpec`."""
    validate_version(spec)
    try:
        parser.validate_kind(spec.kind)
    except parser.InvalidDeviceName as exc:
        raise InvalidSpec(f"invalid kind {spec.kind!r}: {exc}") from None
    validate_edits(spec.container_edits, "containerEdits")
    seen: set[str] = set()
    for i, d in enumerate(spec.devices):
        validate_device(d, f"devices[{i}]")
        if d.name in seen:
            raise InvalidSpec(f"device {d.name!r} defined more than once")
        seen.add(d.name)
    if not seen:
        raise InvalidSpec("no devices")


def validate_device(device: Device, where: str = "device") -> None:
    try:
        parser.validate_device_name(device.name)
    except parser.InvalidDeviceName as exc:
        raise InvalidSpec(f"{where}: {exc}") from None
    where = f"device {device.name!r}"
    if device.container_edits.is_empty():
        raise InvalidSpec(f"{where}: no container edits")
    validate_edits(device.container_edits, f"{where} containerEdits")


def validate_env(env: Iterable[str], where: str) -> None:
    for v in env:
        if v.find("=") <= 0:
            raise InvalidSpec(f"{where}: invalid environment variable {v!r}")


def validate_edits(edits: ContainerEdits, where: str = "containerEdits") -> None:
    """Validate container edits. Beyond CDI's own checks, paths the OCI runtime spec requires
    to be absolute (device node paths, hook paths) must be, and a hook timeout must be
    positive, as the CDI and OCI specifications say."""
    validate_env(edits.env, where)
    for n in edits.device_nodes:
        _validate_device_node(n, where)
    for h in edits.hooks:
        _validate_hook(h, where)
    for m in edits.mounts:
        if not m.host_path:
            raise InvalidSpec(f"{where}: mount {m.container_path!r} has an empty hostPath")
        if not m.container_path:
            raise InvalidSpec(f"{where}: mount of {m.host_path!r} has an empty containerPath")
    if edits.intel_rdt is not None:
        c = edits.intel_rdt.clos_id
        if c != "/" and (len(c) >= 4096 or c in (".", "..") or "/" in c or "\n" in c):
            raise InvalidSpec(f"{where}: invalid intelRdt closID {c!r}")
    hosts: dict[str, str] = {}
    names: dict[str, str] = {}
    for nd in edits.net_devices:
        if not nd.host_interface_name:
            raise InvalidSpec(f"{where}: net device with an empty hostInterfaceName")
        if not nd.name:
            raise InvalidSpec(f"{where}: net device {nd.host_interface_name!r} has an empty name")
        if nd.host_interface_name in hosts:
            raise InvalidSpec(
                f"{where}: net device hostInterfaceName {nd.host_interface_name!r} used twice"
            )
        if nd.name in names:
            raise InvalidSpec(f"{where}: net device name {nd.name!r} used twice")
        hosts[nd.host_interface_name] = nd.name
        names[nd.name] = nd.host_interface_name


def _validate_device_node(n: DeviceNode, where: str) -> None:
    if not n.path:
        raise InvalidSpec(f"{where}: device node with an empty path")
    if not n.path.startswith("/"):
        raise InvalidSpec(f"{where}: device node path {n.path!r} is not absolute")
    if n.host_path and not n.host_path.startswith("/"):
        raise InvalidSpec(f"{where}: device node hostPath {n.host_path!r} is not absolute")
    if n.type not in _DEVICE_TYPES:
        raise InvalidSpec(f"{where}: device node {n.path!r}: invalid type {n.type!r}")
    if n.permissions not in ("", NO_PERMISSIONS) and n.permissions.strip("rwm"):
        raise InvalidSpec(f"{where}: device node {n.path!r}: invalid permissions {n.permissions!r}")


def _validate_hook(h: Hook, where: str) -> None:
    if h.hook_name not in HOOK_NAMES:
        raise InvalidSpec(f"{where}: invalid hook name {h.hook_name!r}")
    if not h.path:
        raise InvalidSpec(f"{where}: {h.hook_name} hook with an empty path")
    if not h.path.startswith("/"):
        raise InvalidSpec(f"{where}: {h.hook_name} hook path {h.path!r} is not absolute")
    if h.timeout is not None and h.timeout <= 0:
        raise InvalidSpec(f"{where}: {h.hook_name} hook {h.path!r}: timeout must be positive")
    validate_env(h.env, f"{where}: {h.hook_name} hook {h.path!r}")
