"""The error stream's payload: a Kubernetes ``metav1.Status`` as JSON (protocol v4 and later),
or, for the older protocols, the failure message as plain text (nothing on success).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

NON_ZERO_EXIT_CODE_REASON = "NonZeroExitCode"
EXIT_CODE_CAUSE_TYPE = "ExitCode"


def success() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def _go_list(items: Sequence[str]) -> str:
    return "[" + " ".join(items) + "]"


def non_zero_exit(code: int, cmd: Sequence[str] = ()) -> dict[str, Any]:
    """``Failure`` / ``NonZeroExitCode`` with the code as an ``ExitCode`` cause, as kubelet."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            "command terminated with non-zero exit code: "
            f"error executing command {_go_list(cmd)}, exit code {code}"
        ),
        "reason": NON_ZERO_EXIT_CODE_REASON,
        "details": {"causes": [{"reason": EXIT_CODE_CAUSE_TYPE, "message": str(code)}]},
    }


def internal_error(message: str) -> dict[str, Any]:
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {message}",
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


def encode(status: dict[str, Any], *, v4: bool) -> bytes:
    """What goes on the error stream: JSON for v4+, the message (or nothing) before v4."""
    if v4:
        return json.dumps(status, separators=(",", ":")).encode()
    if status.get("status") == "Success":
        return b""
    return str(status.get("message", "")).encode()


def exit_code(status: dict[str, Any]) -> int | None:
    """The exit code a status reports: 0 for Success, the ExitCode cause for NonZeroExitCode."""
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == NON_ZERO_EXIT_CODE_REASON:
        for cause in (status.get("details") or {}).get("causes") or ():
            if cause.get("reason") == EXIT_CODE_CAUSE_TYPE:
                try:
                    return int(cause.get("message", ""))
                except ValueError:
                    return None
    return None
