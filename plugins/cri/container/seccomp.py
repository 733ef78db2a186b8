"""Seccomp profiles for CRI containers.

``runtime/default``: a built-in profile in the OCI ``linux.seccomp`` form. Unlike containerd's
allow-list (``contrib/seccomp``), it allows by default and refuses with EPERM the system calls
that containerd's profile leaves out for a container without extra capabilities (module and
kexec loading, mount and namespace changes, keyrings, clock setting, swap, reboot, ptrace,
BPF, perf, ...); a capability the container holds lifts the calls it guards, as in
containerd's profile (``CAP_SYS_ADMIN``: mount/unshare/setns/...; ``CAP_SYS_PTRACE``:
ptrace/process_vm_*; ``CAP_SYS_TIME``: clock setting; ...).

``localhost/<path>``: a profile file, in the OCI form or Docker's (``archMap``) form.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from typing import Any

from pycontainerd.core import errdefs

#: calls refused unless the container holds the capability named
_GUARDED: dict[str, tuple[str, ...]] = {
    "CAP_SYS_ADMIN": (
        "bpf", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
        "lookup_dcookie", "mount", "mount_setattr", "move_mount", "name_to_handle_at",
        "open_tree", "perf_event_open", "quotactl", "quotactl_fd", "setdomainname",
        "sethostname", "setns", "syslog", "umount", "umount2", "unshare",
    ),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": (),
    "CAP_SYS_MODULE": ("delete_module", "init_module", "finit_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                       "process_vm_writev", "ptrace"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64",
                     "clock_adjtime", "clock_adjtime64", "adjtimex"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
}  # fmt: skip

#: calls refused whatever the capabilities
_ALWAYS = (
    "add_key", "create_module", "get_kernel_syms", "kexec_file_load", "kexec_load", "keyctl",
    "nfsservctl", "open_by_handle_at", "pivot_root", "query_module", "request_key",
    "swapoff", "swapon", "_sysctl", "sysfs", "uselib", "userfaultfd", "ustat", "vm86",
    "vm86old",
)  # fmt: skip

_EPERM = 1

_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "ppc64le": ["SCMP_ARCH_PPC64LE"],
    "s390x": ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
    "riscv64": ["SCMP_ARCH_RISCV64"],
}


def default_profile(capabilities: Sequence[str]) -> dict[str, Any]:
    """The ``runtime/default`` profile for a container holding ``capabilities``."""
    held = set(capabilities)
    allowed: set[str] = set()
    for cap, calls in _GUARDED.items():
        if cap in held:
            allowed.update(calls)
    denied: set[str] = set(_ALWAYS)
    for cap, calls in _GUARDED.items():
        if cap not in held:
            denied.update(c for c in calls if c not in allowed)
    syscalls: list[dict[str, Any]] = [
        {"names": sorted(denied), "action": "SCMP_ACT_ERRNO", "errnoRet": _EPERM}
    ]
    # clone with namespace flags is CAP_SYS_ADMIN's (CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|
    # NEWNET|NEWCGROUP = 0x7E020000)
    if "CAP_SYS_ADMIN" not in held:
        syscalls.append(
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": _EPERM,
                "args": [
                    {"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
                ],
            }
        )
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": list(_ARCHES.get(platform.machine(), [])),
        "syscalls": syscalls,
    }


def _from_docker(doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"defaultAction": doc.get("defaultAction", "SCMP_ACT_ERRNO")}
    if "defaultErrnoRet" in doc:
        out["defaultErrnoRet"] = doc["defaultErrnoRet"]
    arches: list[str] = list(doc.get("architectures") or [])
    for entry in doc.get("archMap") or []:
        arches.append(entry.get("architecture", ""))
        arches.extend(entry.get("subArchitectures") or [])
    if arches:
        out["architectures"] = [a for a in arches if a]
    if doc.get("flags"):
        out["flags"] = list(doc["flags"])
    calls = []
    for s in doc.get("syscalls") or []:
        names = list(s.get("names") or ([s["name"]] if s.get("name") else []))
        if not names:
            continue
        call: dict[str, Any] = {"names": names, "action": s.get("action", "SCMP_ACT_ALLOW")}
        for key in ("args", "errnoRet"):
            if s.get(key) is not None:
                call[key] = s[key]
        calls.append(call)
    out["syscalls"] = calls
    return out


def load_profile(path: str) -> dict[str, Any]:
    """A ``localhost`` profile from ``path`` (InvalidArgument when unreadable)."""
    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise errdefs.InvalidArgument(f"failed to load seccomp profile {path!r}: {e}") from None
    if not isinstance(doc, dict) or "defaultAction" not in doc:
        raise errdefs.InvalidArgument(f"seccomp profile {path!r} has no defaultAction")
    return _from_docker(doc)
