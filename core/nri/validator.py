"""NRI's built-in default validator: a policy on what plugins may adjust.

Validators see every container's merged adjustment before it is applied (the
``ValidateContainerAdjustment`` event) together with which plugin set which field and which
plugins took part, and may reject it; the container is then not created. Any plugin can
subscribe as a validator; this one is built in and configured under
``[plugins."io.containerd.nri.v1.nri".default_validator]`` as containerd's is (keys of
containerd/nri ``plugins/default-validator``), registered as ``00-default-validator``:

* ``enable``: off by default;
* ``reject_oci_hook_adjustment``: no plugin may inject OCI hooks;
* ``reject_runtime_default_seccomp_adjustment`` / ``reject_unconfined_seccomp_adjustment`` /
  ``reject_custom_seccomp_adjustment``: no plugin may change the seccomp policy of a container
  whose profile is RuntimeDefault / Unconfined (or unset) / Localhost;
* ``reject_namespace_adjustment``, ``reject_sysctl_adjustment``: no Linux namespace or sysctl
  changes;
* ``required_plugins``: plugin names (``name`` or ``NN-name``) that must take part in every
  container's creation; a pod adds its own with the annotation
  ``required-plugins.noderesource.dev`` (``/pod``, or ``/container.<name>`` for one container;
  a YAML list), and ``tolerate_missing_plugins_annotation`` names an annotation that, when
  "true", lifts the requirement.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.nri.api import pb
from pycontainerd.core.nri.config import DefaultValidatorConfig
from pycontainerd.core.nri.plugin import BuiltinPlugin, Timeouts

#: Annotation listing the plugins a pod's containers require (containerd/nri pkg/plugin).
REQUIRED_PLUGINS_ANNOTATION = "required-plugins.noderesource.dev"

NAME, INDEX = "default-validator", "00"


class ValidationError(errdefs.FailedPrecondition):
    pass


def effective_annotation(pod: pb.PodSandbox, key: str, container: str) -> str | None:
    """A pod annotation for ``container``: ``key/container.<name>``, else ``key/pod``, else
    ``key`` (containerd/nri's GetEffectiveAnnotation)."""
    for k in (f"{key}/container.{container}", f"{key}/pod", key):
        if k in pod.annotations:
            return pod.annotations[k]
    return None


def _string_list(text: str) -> list[str]:
    """A YAML list of plugin names: flow (``[a, b]``) or block (``- a``) style."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            got = json.loads(text)
        except ValueError:
            got = [x.strip().strip("'\"") for x in text[1:-1].split(",") if x.strip()]
    else:
        got = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not line.startswith("-"):
                raise ValueError(f"not a list item: {line!r}")
            got.append(line[1:].strip().strip("'\""))
    if not isinstance(got, list) or not all(isinstance(x, str) for x in got):
        raise ValueError("expected a list of plugin names")
    return got


def _truth(value: str) -> bool:
    """Go's strconv.ParseBool."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"invalid syntax: {value!r}")


@attrs.define(eq=False)
class DefaultValidator:
    cfg: DefaultValidatorConfig

    def validate(self, req: pb.ValidateContainerAdjustmentRequest) -> None:
        """Raise :class:`ValidationError` saying why the adjustment is refused."""
        owners = req.owners.owners.get(req.container.id)
        simple = dict(owners.simple) if owners is not None else {}
        compound = owners.compound if owners is not None else {}
        if req.HasField("adjust"):
            self._hooks(simple)
            self._seccomp(req, simple)
            self._namespaces(compound)
        self._required_plugins(req)
        if req.HasField("adjust"):
            self._sysctl(req, compound)

    def _hooks(self, simple: dict[int, str]) -> None:
        owner = simple.get(pb.Field.Value("OciHooks"))
        if not self.cfg.reject_oci_hook_adjustment or not owner:
            return
        who = f'plugins "{owner}"' if "," in owner else f'plugin "{owner}"'
        raise ValidationError(f"validation error: {who} attempted restricted OCI hook injection")

    def _seccomp(self, req: pb.ValidateContainerAdjustmentRequest, simple: dict[int, str]) -> None:
        owner = simple.get(pb.Field.Value("SeccompPolicy"))
        if not owner:
            return
        lin = req.container.linux
        profile = lin.seccomp_profile if lin.HasField("seccomp_profile") else None
        kind = profile.profile_type if profile is not None else pb.SecurityProfile.UNCONFINED
        if kind == pb.SecurityProfile.UNCONFINED and self.cfg.reject_unconfined_seccomp_adjustment:
            what = "unconfined"
        elif (
            kind == pb.SecurityProfile.RUNTIME_DEFAULT
            and self.cfg.reject_runtime_default_seccomp_adjustment
        ):
            what = "runtime default"
        elif kind == pb.SecurityProfile.LOCALHOST and self.cfg.reject_custom_seccomp_adjustment:
            what = "custom"
        else:
            return
        raise ValidationError(
            f"validation error: plugin {owner} attempted restricted {what} seccomp policy "
            "adjustment"
        )

    def _namespaces(self, compound: Any) -> None:
        if not self.cfg.reject_namespace_adjustment:
            return
        field = pb.Field.Value("Namespace")
        if field not in compound or not compound[field].owners:
            return
        owned = sorted(compound[field].owners.items())
        who = ", ".join(f'"{plugin}" (namespace "{ns}")' for ns, plugin in owned)
        raise ValidationError(
            f"validation error: attempted restricted namespace adjustment by plugin(s) {who}"
        )

    def _sysctl(self, req: pb.ValidateContainerAdjustmentRequest, compound: Any) -> None:
        if not self.cfg.reject_sysctl_adjustment or not req.adjust.HasField("linux"):
            return
        field = pb.Field.Value("Sysctl")
        owned = compound[field].owners if field in compound else {}
        who = [owned[k] for k in sorted(req.adjust.linux.sysctl) if k in owned]
        if who:
            raise ValidationError(
                "validation error: attempted restricted sysctl adjustment by plugin(s) "
                + ", ".join(who)
            )

    def _required_plugins(self, req: pb.ValidateContainerAdjustmentRequest) -> None:
        name = req.container.name
        required = list(self.cfg.required_plugins)
        if tolerate := self.cfg.tolerate_missing_plugins_annotation:
            value = effective_annotation(req.pod, tolerate, name)
            if value is not None:
                try:
                    if _truth(value):
                        return
                except ValueError as e:
                    raise ValidationError(f"invalid {tolerate} annotation {value!r}: {e}") from None
        value = effective_annotation(req.pod, REQUIRED_PLUGINS_ANNOTATION, name)
        if value is not None:
            try:
                required += _string_list(value)
            except ValueError as e:
                raise ValidationError(
                    f"invalid {REQUIRED_PLUGINS_ANNOTATION} annotation {value!r}: {e}"
                ) from None
        present = set()
        for p in req.plugins:
            present.add(p.name)
            present.add(f"{p.index}-{p.name}")
        missing = [r for r in required if r not in present]
        if not missing:
            return
        if len(missing) == 1:
            what = f'required plugin "{missing[0]}"'
        else:
            what = f'required plugins "{",".join(missing)}"'
        raise ValidationError(f"validation error: {what} not present")


def default_validator(
    cfg: DefaultValidatorConfig | None, timeouts: Timeouts | None = None
) -> BuiltinPlugin | None:
    """The built-in validator plugin for ``cfg``, or None when it is not enabled."""
    if cfg is None or not cfg.enable:
        return None
    v = DefaultValidator(cfg)

    def validate_container_adjustment(
        request: pb.ValidateContainerAdjustmentRequest,
    ) -> pb.ValidateContainerAdjustmentResponse:
        try:
            v.validate(request)
        except ValidationError as e:
            return pb.ValidateContainerAdjustmentResponse(reject=True, reason=str(e))
        return pb.ValidateContainerAdjustmentResponse()

    return BuiltinPlugin(
        kind="builtin",
        index=INDEX,
        base=NAME,
        timeouts=timeouts or Timeouts(),
        handlers={"ValidateContainerAdjustment": validate_container_adjustment},
    )
