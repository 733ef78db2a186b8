"""Settings of NRI parts that operators configure in TOML (kept free of heavy imports, since
plugin registrations name their config classes before anything initialises)."""

from __future__ import annotations

import attrs


@attrs.define(kw_only=True)
class DefaultValidatorConfig:
    """``[plugins."io.containerd.nri.v1.nri".default_validator]``, containerd's keys; see
    :mod:`pycontainerd.core.nri.validator`."""

    enable: bool = False
    reject_oci_hook_adjustment: bool = False
    reject_runtime_default_seccomp_adjustment: bool = False
    reject_unconfined_seccomp_adjustment: bool = False
    reject_custom_seccomp_adjustment: bool = False
    reject_namespace_adjustment: bool = False
    reject_sysctl_adjustment: bool = False
    required_plugins: list[str] = attrs.Factory(list)
    tolerate_missing_plugins_annotation: str = ""
