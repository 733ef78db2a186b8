"""``pyctr cri`` logic that needs no daemon: CRI log lines to output (partial lines joined per
stream), the exec status object to an exit code, config files in crictl's JSON shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as pb
from pycontainerd.cli.pyctr.commands import cri
from pycontainerd.core import errdefs


def test_log_lines_join_partial_parts_per_stream() -> None:
    lines = [
        b"2026-01-01T00:00:00.1Z stdout P abc\n",
        b"2026-01-01T00:00:00.2Z stderr F err line\n",
        b"2026-01-01T00:00:00.3Z stdout P def\n",
        b"2026-01-01T00:00:00.4Z stdout F ghi\n",
        b"2026-01-01T00:00:00.5Z stdout F \n",
    ]
    assert cri.parse_log_lines(lines) == [
        ("stderr", b"err line\n"),
        ("stdout", b"abcdefghi\n"),
        ("stdout", b"\n"),
    ]
    ts = cri.parse_log_lines(lines[:1] + lines[2:4], timestamps=True)
    assert ts == [("stdout", b"2026-01-01T00:00:00.1Z abcdefghi\n")]


def test_log_trailing_partial_is_printed_without_newline() -> None:
    assert cri.parse_log_lines([b"t stdout P tail\n"]) == [("stdout", b"tail")]


def test_exec_status_to_exit_code() -> None:
    assert cri.exit_code_of({}) == (0, "")
    assert cri.exit_code_of({"status": "Success"}) == (0, "")
    failed = {
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "7"}]},
    }
    assert cri.exit_code_of(failed) == (7, "")
    assert cri.exit_code_of({"status": "Failure", "message": "no such file"}) == (
        1,
        "no such file",
    )


def test_config_files_take_proto_and_json_names_and_ignore_unknown(tmp_path: Path) -> None:
    path = tmp_path / "pod.json"
    path.write_text(
        json.dumps(
            {
                "metadata": {"name": "p", "uid": "u", "namespace": "n", "attempt": 1},
                "log_directory": "/tmp/logs",
                "dnsConfig": {"servers": ["10.0.0.1"]},
                "linux": {"security_context": {"namespace_options": {"network": "NODE"}}},
                "somethingNew": True,
            }
        )
    )
    cfg = cri._load(str(path), pb.PodSandboxConfig())
    assert cfg.metadata.name == "p" and cfg.metadata.attempt == 1
    assert cfg.log_directory == "/tmp/logs" and list(cfg.dns_config.servers) == ["10.0.0.1"]
    assert cfg.linux.security_context.namespace_options.network == pb.NODE


def test_bad_config_files_are_invalid_argument(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"metadata": {"attempt": "many"}}')
    with pytest.raises(errdefs.InvalidArgument, match="bad.json"):
        cri._load(str(bad), pb.PodSandboxConfig())
    bad.write_text("[1, 2]")
    with pytest.raises(errdefs.InvalidArgument, match="not an object"):
        cri._load(str(bad), pb.PodSandboxConfig())
