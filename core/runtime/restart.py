"""Restart labels and policies (containerd's ``core/runtime/restart``).

A container that carries :data:`STATUS_LABEL` is watched by the restart monitor
(``io.containerd.monitor.container.v1.restart``), which keeps its task in that status:
``running`` (start a task again when there is none running) or ``stopped`` (kill a running
one). Beside it:

* :data:`POLICY_LABEL` decides whether a stopped task is started again: ``always`` (also the
  empty string), ``no``, ``on-failure[:N]`` (only after a non-zero exit, at most ``N`` times
  when ``N`` > 0) and ``unless-stopped`` (unless :data:`EXPLICITLY_STOPPED_LABEL` is true);
* :data:`LOG_URI_LABEL` is where the new task's stdout and stderr go (``file://``,
  ``binary://`` URIs as the shims understand them); none: no IO;
* :data:`COUNT_LABEL` counts the starts the monitor made.

This module is the pure part: parsing policies and deciding whether to restart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

from pycontainerd.core import errdefs

#: The status the monitor keeps the container's task in (``running`` or ``stopped``).
STATUS_LABEL = "containerd.io/restart.status"
#: The restart policy (``no``, ``always``, ``on-failure[:N]``, ``unless-stopped``).
POLICY_LABEL = "containerd.io/restart.policy"
#: The URI the restarted task's stdout and stderr are sent to.
LOG_URI_LABEL = "containerd.io/restart.loguri"
#: Deprecated since containerd 2.0 and ignored (a warning is logged): use :data:`LOG_URI_LABEL`.
LOG_PATH_LABEL = "containerd.io/restart.logpath"
#: How many times the monitor started the container's task.
COUNT_LABEL = "containerd.io/restart.count"
#: Set (to a true boolean) when a user stopped the container: ``unless-stopped`` then holds.
EXPLICITLY_STOPPED_LABEL = "containerd.io/restart.explicitly-stopped"

#: Every label this module defines.
LABELS = (
    STATUS_LABEL,
    POLICY_LABEL,
    LOG_URI_LABEL,
    LOG_PATH_LABEL,
    COUNT_LABEL,
    EXPLICITLY_STOPPED_LABEL,
)

NO = "no"
ALWAYS = "always"
ON_FAILURE = "on-failure"
UNLESS_STOPPED = "unless-stopped"
#: The policy names, as the plugin advertises them in its capabilities.
POLICIES = (NO, ALWAYS, ON_FAILURE, UNLESS_STOPPED)

# Go's strconv.Atoi: an optional sign and decimal digits, nothing else (no spaces, no "_")
_INT = re.compile(r"[+-]?[0-9]+")
# Go's strconv.ParseBool
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})


def _atoi(text: str, what: str) -> int:
    if not _INT.fullmatch(text):
        raise errdefs.InvalidArgument(f"invalid {what} {text!r}: not an integer")
    return int(text)


@attrs.frozen(kw_only=True)
class Policy:
    """A parsed restart policy. ``maximum_retry_count`` 0 means no limit (``on-failure``)."""

    name: str
    maximum_retry_count: int = 0

    @classmethod
    def parse(cls, text: str) -> Policy:
        """The policy in ``text``; the empty string is ``always``. InvalidArgument naming the
        problem for an unknown policy, a retry count on a policy other than ``on-failure``,
        or a retry count that is not a non-negative integer."""
        name, sep, count = text.partition(":")
        if name in ("", NO, ALWAYS, UNLESS_STOPPED):
            if sep:
                raise errdefs.InvalidArgument(
                    f"restart policy {text!r}: {name or ALWAYS!r} does not take a maximum "
                    "retry count (only on-failure does)"
                )
            return cls(name=name or ALWAYS)
        if name == ON_FAILURE:
            if not sep:
                return cls(name=ON_FAILURE)
            retries = _atoi(count, f"maximum retry count in restart policy {text!r}")
            if retries < 0:
                raise errdefs.InvalidArgument(
                    f"invalid maximum retry count in restart policy {text!r}: must not be negative"
                )
            return cls(name=ON_FAILURE, maximum_retry_count=retries)
        raise errdefs.InvalidArgument(
            f"restart policy {text!r} not supported (use one of {', '.join(POLICIES)}; "
            "on-failure takes an optional :N)"
        )

    def __str__(self) -> str:
        if self.maximum_retry_count > 0:
            return f"{self.name}:{self.maximum_retry_count}"
        return self.name


def explicitly_stopped(labels: Mapping[str, str]) -> bool:
    """Whether :data:`EXPLICITLY_STOPPED_LABEL` holds a true boolean (Go's ParseBool; any
    other value, or none, is false)."""
    return labels.get(EXPLICITLY_STOPPED_LABEL, "") in _TRUE


def restart_count(labels: Mapping[str, str]) -> int:
    """The value of :data:`COUNT_LABEL` (0 when absent); InvalidArgument when malformed."""
    value = labels.get(COUNT_LABEL, "")
    if not value:
        return 0
    return _atoi(value, f"{COUNT_LABEL} label")


def should_restart(exit_status: int, labels: Mapping[str, str]) -> bool:
    """Whether a container whose task is not running (its last exit status ``exit_status``;
    0 when there was no task) gets a new one, by the policy in ``labels``:

    * ``always`` (or no policy): yes;
    * ``no``: never;
    * ``on-failure[:N]``: when ``exit_status`` is non-zero and, for ``N`` > 0, fewer than
      ``N`` restarts were counted in :data:`COUNT_LABEL`;
    * ``unless-stopped``: unless the container was explicitly stopped.

    InvalidArgument for a malformed policy (or, with ``on-failure``, a malformed count)."""
    policy = Policy.parse(labels.get(POLICY_LABEL, ""))
    if policy.name == ALWAYS:
        return True
    if policy.name == ON_FAILURE:
        count = restart_count(labels)
        if exit_status == 0:
            return False
        return policy.maximum_retry_count == 0 or count < policy.maximum_retry_count
    if policy.name == UNLESS_STOPPED:
        return not explicitly_stopped(labels)
    return False
