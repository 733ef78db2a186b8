"""The shim's ``delete`` answers a DeleteResponse encoded by hand (no protobuf import on a path
containerd 1.6 runs after every shim disconnect): the bytes must be exactly protobuf's."""

from __future__ import annotations

import pytest

from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2
from pycontainerd.plugins.runtimes.pyrunc.main import delete_response


@pytest.mark.parametrize(
    ("pid", "status", "ns"),
    [
        (0, 0, 0),
        (1, 137, 1_700_000_000_123_456_789),
        (4_194_304, 255, 1_000_000_000),
        (2**31 - 1, 2**32 - 1, 42),
    ],
)
def test_delete_response_bytes_equal_protobufs(pid: int, status: int, ns: int) -> None:
    want = shim_pb2.DeleteResponse(pid=pid, exit_status=status)
    if ns:
        want.exited_at.FromNanoseconds(ns)
    assert delete_response(pid, status, ns) == want.SerializeToString()
    got = shim_pb2.DeleteResponse.FromString(delete_response(pid, status, ns))
    assert (got.pid, got.exit_status, got.exited_at.ToNanoseconds()) == (pid, status, ns)


def test_delete_does_not_import_protobuf() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from pycontainerd.plugins.runtimes.pyrunc import main; "
        "main.delete_response(1, 137, 5); "
        "print(any(m.startswith('google.protobuf') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
