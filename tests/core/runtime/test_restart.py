"""Restart labels and policies (containerd's core/runtime/restart): parsing every policy
string, and the decision whether a stopped container's task is started again."""

from __future__ import annotations

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.runtime import restart
from pycontainerd.core.runtime.restart import Policy, should_restart


def test_label_names_are_containerds():
    assert restart.STATUS_LABEL == "containerd.io/restart.status"
    assert restart.POLICY_LABEL == "containerd.io/restart.policy"
    assert restart.LOG_URI_LABEL == "containerd.io/restart.loguri"
    assert restart.LOG_PATH_LABEL == "containerd.io/restart.logpath"
    assert restart.COUNT_LABEL == "containerd.io/restart.count"
    assert restart.EXPLICITLY_STOPPED_LABEL == "containerd.io/restart.explicitly-stopped"
    assert restart.POLICIES == ("no", "always", "on-failure", "unless-stopped")


@pytest.mark.parametrize(
    ("text", "name", "count", "shown"),
    [
        ("", "always", 0, "always"),
        ("always", "always", 0, "always"),
        ("no", "no", 0, "no"),
        ("unless-stopped", "unless-stopped", 0, "unless-stopped"),
        ("on-failure", "on-failure", 0, "on-failure"),
        ("on-failure:0", "on-failure", 0, "on-failure"),
        ("on-failure:3", "on-failure", 3, "on-failure:3"),
        ("on-failure:+2", "on-failure", 2, "on-failure:2"),
        ("on-failure:007", "on-failure", 7, "on-failure:7"),
    ],
)
def test_policies_parse_and_print(text, name, count, shown):
    p = Policy.parse(text)
    assert (p.name, p.maximum_retry_count, str(p)) == (name, count, shown)
    assert Policy.parse(str(p)) == p


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sometimes", "restart policy 'sometimes' not supported"),
        ("Always", "restart policy 'Always' not supported"),
        ("always:3", "'always' does not take a maximum retry count"),
        ("no:1", "'no' does not take a maximum retry count"),
        ("unless-stopped:1", "'unless-stopped' does not take a maximum retry count"),
        (":1", "'always' does not take a maximum retry count"),
        ("on-failure:", "maximum retry count in restart policy 'on-failure:'"),
        ("on-failure:x", "invalid maximum retry count in restart policy 'on-failure:x'"),
        ("on-failure: 2", "not an integer"),
        ("on-failure:1_0", "not an integer"),
        ("on-failure:1:2", "not an integer"),
        ("on-failure:-1", "must not be negative"),
    ],
)
def test_bad_policies_are_invalid_argument_naming_the_problem(text, message):
    with pytest.raises(errdefs.InvalidArgument, match=message):
        Policy.parse(text)


@pytest.mark.parametrize("policy", [None, "", "always"])
@pytest.mark.parametrize("exit_status", [0, 1, 137])
def test_always_and_no_policy_restart_whatever_the_exit(policy, exit_status):
    labels = {} if policy is None else {restart.POLICY_LABEL: policy}
    assert should_restart(exit_status, labels) is True


@pytest.mark.parametrize("exit_status", [0, 1, 137])
def test_no_never_restarts(exit_status):
    assert should_restart(exit_status, {restart.POLICY_LABEL: "no"}) is False


@pytest.mark.parametrize(
    ("policy", "count", "exit_status", "expected"),
    [
        ("on-failure", "", 0, False),
        ("on-failure", "", 1, True),
        ("on-failure", "100", 1, True),  # no maximum
        ("on-failure:0", "100", 2, True),  # 0 is no maximum
        ("on-failure:1", "", 1, True),
        ("on-failure:1", "0", 1, True),
        ("on-failure:1", "1", 1, False),
        ("on-failure:3", "2", 255, True),
        ("on-failure:3", "3", 255, False),
        ("on-failure:3", "4", 255, False),
        ("on-failure:3", "0", 0, False),  # a clean exit is never a failure
    ],
)
def test_on_failure_restarts_non_zero_exits_up_to_the_maximum(policy, count, exit_status, expected):
    labels = {restart.POLICY_LABEL: policy}
    if count:
        labels[restart.COUNT_LABEL] = count
    assert should_restart(exit_status, labels) is expected


@pytest.mark.parametrize("count", ["x", "1.0", " 1"])
def test_on_failure_with_a_malformed_count_is_invalid(count):
    labels = {restart.POLICY_LABEL: "on-failure:3", restart.COUNT_LABEL: count}
    with pytest.raises(errdefs.InvalidArgument, match="containerd.io/restart.count"):
        should_restart(1, labels)


@pytest.mark.parametrize(
    ("stopped", "expected"),
    [
        (None, True),
        ("", True),
        ("false", True),
        ("0", True),
        ("yes", True),  # not a Go boolean: not explicitly stopped
        ("true", False),
        ("True", False),
        ("TRUE", False),
        ("t", False),
        ("1", False),
    ],
)
def test_unless_stopped_restarts_unless_explicitly_stopped(stopped, expected):
    labels = {restart.POLICY_LABEL: "unless-stopped"}
    if stopped is not None:
        labels[restart.EXPLICITLY_STOPPED_LABEL] = stopped
    assert should_restart(1, labels) is expected
    assert should_restart(0, labels) is expected


def test_explicitly_stopped_only_matters_for_unless_stopped():
    labels = {restart.EXPLICITLY_STOPPED_LABEL: "true"}
    assert should_restart(0, {**labels, restart.POLICY_LABEL: "always"}) is True
    assert should_restart(1, {**labels, restart.POLICY_LABEL: "on-failure"}) is True


def test_a_bad_policy_label_is_invalid_argument():
    with pytest.raises(errdefs.InvalidArgument, match="'bogus' not supported"):
        should_restart(1, {restart.POLICY_LABEL: "bogus"})


def test_restart_count_reads_the_label():
    assert restart.restart_count({}) == 0
    assert restart.restart_count({restart.COUNT_LABEL: "4"}) == 4
    with pytest.raises(errdefs.InvalidArgument):
        restart.restart_count({restart.COUNT_LABEL: "four"})
