"""Container Device Interface (CDI): device names, spec files, and injection of the devices'
container edits into OCI runtime specs, as tags.cncf.io/container-device-interface does for
containerd (spec version 1.1.0).

Typical use::

    registry = Registry(["/etc/cdi", "/var/run/cdi"])
    registry.inject(oci_spec, ["vendor.com/device=dev0"])

Modules: :mod:`.parser` (qualified names), :mod:`.specs` (spec files), :mod:`.edits`
(applying edits to an OCI spec dict), :mod:`.registry` (loading directories, resolving,
injecting), :mod:`.annotations` (``cdi.k8s.io/`` annotations).
"""

from __future__ import annotations

from pycontainerd.core.cdi.annotations import (
    ANNOTATION_PREFIX,
    InvalidAnnotation,
    annotation,
    annotation_key,
    annotation_value,
    devices_from_annotations,
    parse_annotations,
    update_annotations,
)
from pycontainerd.core.cdi.edits import DeviceNodeError, apply_edits, fill_missing_info
from pycontainerd.core.cdi.parser import (
    InvalidDeviceName,
    is_qualified_name,
    parse_device,
    parse_qualified_name,
    parse_qualifier,
    qualified_name,
)
from pycontainerd.core.cdi.registry import (
    DEFAULT_SPEC_DIRS,
    InvalidDeviceNames,
    Registry,
    UnresolvableDevices,
    configure,
    default_registry,
    inject,
)
from pycontainerd.core.cdi.specs import (
    CURRENT_VERSION,
    ContainerEdits,
    Device,
    DeviceNode,
    Hook,
    IntelRdt,
    InvalidSpec,
    Mount,
    NetDevice,
    Spec,
    merge_edits,
    minimum_required_version,
    parse_spec,
    read_spec,
)

__all__ = [
    "ANNOTATION_PREFIX",
    "CURRENT_VERSION",
    "DEFAULT_SPEC_DIRS",
    "ContainerEdits",
    "Device",
    "DeviceNode",
    "DeviceNodeError",
    "Hook",
    "IntelRdt",
    "InvalidAnnotation",
    "InvalidDeviceName",
    "InvalidDeviceNames",
    "InvalidSpec",
    "Mount",
    "NetDevice",
    "Registry",
    "Spec",
    "UnresolvableDevices",
    "annotation",
    "annotation_key",
    "annotation_value",
    "apply_edits",
    "configure",
    "default_registry",
    "devices_from_annotations",
    "fill_missing_info",
    "inject",
    "is_qualified_name",
    "merge_edits",
    "minimum_required_version",
    "parse_annotations",
    "parse_device",
    "parse_qualified_name",
    "parse_qualifier",
    "parse_spec",
    "qualified_name",
    "read_spec",
    "update_annotations",
]
