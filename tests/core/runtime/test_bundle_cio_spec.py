"""Bundle layout and atomic deletion, the default OCI spec, stdio FIFOs, and the runtime
value types (no shim involved)."""

from __future__ import annotations

import asyncio
import json
import os
import stat

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.runtime import CreateOpts, Status, cio, to_typed
from pycontainerd.core.runtime import bundle as bundles
from pycontainerd.core.runtime import spec as oci


def test_new_bundle_layout(tmp_path) -> None:
    root, state = str(tmp_path / "root"), str(tmp_path / "state")
    spec = json.dumps(oci.default_spec("ns1", "t1", args=["true"])).encode()
    b = bundles.new_bundle(root, state, "ns1", "t1", spec)
    assert b.path == os.path.join(state, "ns1", "t1")
    assert stat.S_IMODE(os.stat(b.path).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.dirname(b.path)).st_mode) == 0o711
    assert os.path.isdir(b.rootfs)
    assert os.readlink(b.file("work")) == os.path.join(root, "ns1", "t1")
    assert os.path.isdir(os.path.join(root, "ns1", "t1"))
    with open(b.file("config.json"), "rb") as f:
        assert f.read() == spec
    assert b.spec()["process"]["args"] == ["true"]  # type: ignore[index]


def test_new_bundle_refuses_duplicates_and_bad_ids(tmp_path) -> None:
    root, state = str(tmp_path / "root"), str(tmp_path / "state")
    bundles.new_bundle(root, state, "ns1", "t1", None)
    with pytest.raises(errdefs.AlreadyExists):
        bundles.new_bundle(root, state, "ns1", "t1", None)
    with pytest.raises(errdefs.InvalidArgument, match="invalid task id"):
        bundles.new_bundle(root, state, "ns1", "../x", None)
    with pytest.raises(errdefs.InvalidArgument, match="invalid oci spec"):
        bundles.new_bundle(root, state, "ns1", "t2", b"[1, 2")
    # nothing of the failed one remains
    assert sorted(os.listdir(os.path.join(state, "ns1"))) == ["t1"]


def test_bundle_delete_removes_bundle_and_work_dir(tmp_path) -> None:
    root, state = str(tmp_path / "root"), str(tmp_path / "state")
    b = bundles.new_bundle(root, state, "ns1", "t1", b"{}")
    work = b.work_dir()
    assert work is not None
    with open(os.path.join(work, "data"), "w") as f:
        f.write("x")
    b.delete()
    assert not os.path.exists(b.path) and not os.path.exists(work)
    assert os.listdir(os.path.join(state, "ns1")) == []
    b.delete()  # again: nothing to do


def test_atomic_delete_survives_a_stale_hidden_dir(tmp_path) -> None:
    (tmp_path / ".x").mkdir()
    (tmp_path / ".x" / "old").write_text("1")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "new").write_text("2")
    bundles.atomic_delete(str(tmp_path / "x"))
    assert os.listdir(tmp_path) == []


def test_default_spec_is_containerds_shape() -> None:
    spec = oci.default_spec("default", "c1", args=["sh", "-c", "true"], terminal=True)
    assert spec["process"]["args"] == ["sh", "-c", "true"]
    assert spec["process"]["terminal"] is True
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    assert spec["linux"]["cgroupsPath"] == "/default/c1"
    assert {n["type"] for n in spec["linux"]["namespaces"]} == {
        "pid",
        "ipc",
        "uts",
        "mount",
        "network",
    }
    assert [m["destination"] for m in spec["mounts"]][:2] == ["/proc", "/dev"]
    type_url, value = oci.to_any(spec)
    assert type_url == oci.SPEC_TYPE_URL
    assert oci.from_any((type_url, value)) == spec


def test_create_opts_prefers_task_options() -> None:
    rt = ("containerd.runc.v1.Options", b"\x01")
    task = ("containerd.runc.v1.Options", b"\x02")
    assert CreateOpts(runtime_options=rt).options() == rt
    assert CreateOpts(runtime_options=rt, task_options=task).options() == task
    assert CreateOpts(runtime_options=rt, task_options=("x", b"")).options() == rt
    assert to_typed(None) is None
    assert Status(2) is Status.RUNNING


async def test_fifo_set_and_capture(tmp_path) -> None:
    fifos = cio.new_fifo_set_in_dir(str(tmp_path), "p1", stdin=True)
    for p in (fifos.stdin, fifos.stdout, fifos.stderr):
        assert stat.S_ISFIFO(os.stat(p).st_mode)
    cap = await cio.Capture(fifos).start()

    def write() -> None:
        with open(fifos.stdout, "wb") as out, open(fifos.stderr, "wb") as err:
            out.write(b"hello ")
            out.write(b"world\n")
            err.write(b"oops\n")

    await asyncio.to_thread(write)
    await cap.wait(timeout=5)
    assert bytes(cap.stdout) == b"hello world\n"
    assert bytes(cap.stderr) == b"oops\n"
    await cap.close()
    assert not os.path.exists(fifos.dir)


async def test_terminal_fifo_set_has_no_stderr(tmp_path) -> None:
    fifos = cio.new_fifo_set_in_dir(str(tmp_path), "p2", terminal=True)
    assert fifos.stdout and not fifos.stderr and not fifos.stdin
    fifos.close()
