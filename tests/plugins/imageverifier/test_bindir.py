"""The bindir image verifier with real verifier programs (shell scripts written here)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from pycontainerd.core import errdefs
from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.imageverifier import Judgement
from pycontainerd.plugins.imageverifier.bindir import (
    OUTPUT_LIMIT_BYTES,
    BinDirVerifier,
    descriptor_json,
)

NAME = "registry.example.com/image:abc"
DIGEST = "sha256:98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4"
DESC = Descriptor(
    media_type="application/vnd.docker.distribution.manifest.list.v2+json",
    digest=DIGEST,
    size=2048,
    annotations={"a": "b"},
)


def script(bin_dir: Path, name: str, body: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def accept(bin_dir: Path, name: str, reason: str) -> Path:
    return script(bin_dir, name, f"echo '{reason}'\n")


def reject(bin_dir: Path, name: str, reason: str, code: int = 1) -> Path:
    return script(bin_dir, name, f"echo '{reason}'\nexit {code}\n")


def verifier(bin_dir: Path, max_verifiers: int = -1, timeout: float = 10.0) -> BinDirVerifier:
    return BinDirVerifier(str(bin_dir), max_verifiers=max_verifiers, per_verifier_timeout=timeout)


async def test_accepting_verifier_gets_upstream_arguments_and_descriptor_on_stdin(tmp_path):
    bins = tmp_path / "bin"
    args_file, stdin_file = tmp_path / "args.txt", tmp_path / "stdin.txt"
    script(
        bins,
        "verifier-0",
        f'echo "$@" > {args_file}\n'
        f"cat > {stdin_file}\n"
        "echo 'Reason A line 1'\n"
        "echo 'Debug A line 1' >&2\n"
        "echo 'Reason A line 2'\n",
    )
    j = await verifier(bins).verify_image(NAME, DESC)
    assert j == Judgement(ok=True, reason="verifier-0 => Reason A line 1\nReason A line 2")
    assert args_file.read_text().strip() == (
        f"-name {NAME} -digest {DIGEST} -stdin-media-type application/vnd.oci.descriptor.v1+json"
    )
    # what containerd's json.Encoder writes for the same descriptor
    assert stdin_file.read_text() == (
        '{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",'
        f'"digest":"{DIGEST}","size":2048,"annotations":{{"a":"b"}}}}\n'
    )


def test_descriptor_json_is_gos_encoding():
    desc = Descriptor(
        media_type="m", digest=DIGEST, size=1, annotations={"z": "<&>", "a": "é\u2028"}
    )
    out = descriptor_json(desc)
    assert (
        out
        == (
            '{"mediaType":"m","digest":"' + DIGEST + '","size":1,'
            '"annotations":{"a":"é\\u2028","z":"\\u003c\\u0026\\u003e"}}\n'
        ).encode()
    )
    assert json.loads(out)["annotations"] == {"a": "é\u2028", "z": "<&>"}


async def test_rejecting_verifier_refuses_with_exit_code_and_reason(tmp_path):
    bins = tmp_path / "bin"
    reject(bins, "verifier-0", "Reason D", code=3)
    j = await verifier(bins).verify_image(NAME, DESC)
    assert j == Judgement(
        ok=False, reason="verifier verifier-0 rejected image (exit code 3): Reason D"
    )


async def test_verifiers_run_in_name_order_and_one_refusal_refuses(tmp_path):
    bins = tmp_path / "bin"
    log = tmp_path / "ran"
    for name, reason in (("c", "Reason C"), ("a", "Reason A"), ("b", "Reason B")):
        script(bins, name, f"echo {name} >> {log}\necho '{reason}'\n")
    j = await verifier(bins).verify_image(NAME, DESC)
    assert j == Judgement(ok=True, reason="a => Reason A, b => Reason B, c => Reason C")
    assert log.read_text().split() == ["a", "b", "c"]

    log.unlink()
    reject(bins, "b", "Reason D")
    j = await verifier(bins).verify_image(NAME, DESC)
    assert j == Judgement(ok=False, reason="verifier b rejected image (exit code 1): Reason D")
    # the refusal stops the run: c is not asked
    assert log.read_text().split() == ["a"]


async def test_missing_or_empty_directory_allows(tmp_path):
    missing = tmp_path / "missing"
    j = await verifier(missing).verify_image(NAME, DESC)
    assert j == Judgement(ok=True, reason=f"image verifier directory {missing} does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    j = await verifier(empty).verify_image(NAME, DESC)
    assert j == Judgement(ok=True, reason=f"no image verifier binaries found in {empty}")


@pytest.mark.parametrize(
    ("max_verifiers", "ok", "reason"),
    [
        (0, True, ""),
        (1, True, "v0 => Reason A"),
        (2, True, "v0 => Reason A, v1 => Reason B"),
        (3, False, "verifier v2 rejected image (exit code 1): Reason D"),
        (-1, False, "verifier v2 rejected image (exit code 1): Reason D"),
    ],
)
async def test_max_verifiers_is_honoured(tmp_path, max_verifiers, ok, reason):
    bins = tmp_path / "bin"
    accept(bins, "v0", "Reason A")
    accept(bins, "v1", "Reason B")
    reject(bins, "v2", "Reason D")
    j = await verifier(bins, max_verifiers=max_verifiers).verify_image(NAME, DESC)
    assert j == Judgement(ok=ok, reason=reason)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


async def test_timeout_kills_the_verifier_and_its_children_and_fails(tmp_path):
    bins = tmp_path / "bin"
    pids = tmp_path / "pids"
    accept(bins, "a", "Reason A")
    script(
        bins,
        "b-slow",
        # a child that holds stdout open, then the verifier itself sleeps too
        f"sleep 300 &\necho $$ $! > {pids}\nsleep 300\necho never\n",
    )
    accept(bins, "c", "Reason C")
    with pytest.raises(errdefs.Unknown) as ei:
        await verifier(bins, timeout=1.0).verify_image(NAME, DESC)
    msg = str(ei.value)
    assert msg.startswith("failed to call verifier b-slow (runtime ")
    assert "timed out after 1s, process group killed: signal: killed" in msg
    shell, child = (int(p) for p in pids.read_text().split())
    deadline = time.monotonic() + 10
    while (_alive(shell) or _alive(child)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not _alive(shell) and not _alive(child)


async def test_cancelling_a_verification_kills_the_verifier_group(tmp_path):
    bins = tmp_path / "bin"
    pids = tmp_path / "pids"
    script(bins, "slow", f"sleep 300 &\necho $$ $! > {pids}\nsleep 300\n")
    task = asyncio.ensure_future(verifier(bins, timeout=300).verify_image(NAME, DESC))
    deadline = time.monotonic() + 10
    while not (pids.exists() and len(pids.read_text().split()) == 2):
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.05)
    shell, child = (int(p) for p in pids.read_text().split())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    while (_alive(shell) or _alive(child)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not _alive(shell) and not _alive(child)


async def test_verifier_runs_in_its_own_process_group(tmp_path):
    bins = tmp_path / "bin"
    script(bins, "pg", "ps -o pgid= -p $$ | tr -d ' '\n")
    j = await verifier(bins).verify_image(NAME, DESC)
    assert j.ok
    pgid = int(j.reason.split(" => ")[1])
    assert pgid != os.getpgrp()


async def test_huge_stdout_is_truncated_and_huge_stderr_does_not_block(tmp_path):
    bins = tmp_path / "bin"
    n = 3 * OUTPUT_LIMIT_BYTES
    script(bins, "a-stdout", f"head -c {n} /dev/zero | tr '\\0' A\n")
    script(bins, "b-stderr", f"head -c {n} /dev/zero | tr '\\0' E >&2\necho small\n")
    j = await verifier(bins, timeout=30).verify_image(NAME, DESC)
    assert j.ok
    first, second = j.reason.split(", ")
    assert first == "a-stdout => " + "A" * OUTPUT_LIMIT_BYTES + "(stdout truncated)"
    assert second == "b-stderr => small"


async def test_output_at_the_limit_is_not_marked_truncated(tmp_path):
    bins = tmp_path / "bin"
    script(bins, "a", f"head -c {OUTPUT_LIMIT_BYTES} /dev/zero | tr '\\0' A\n")
    j = await verifier(bins).verify_image(NAME, DESC)
    assert j.reason == "a => " + "A" * OUTPUT_LIMIT_BYTES


async def test_descriptor_larger_than_a_pipe_buffer_and_stdin_not_read(tmp_path):
    bins = tmp_path / "bin"
    accept(bins, "a", "Reason A")
    big = Descriptor(
        media_type="m", digest=DIGEST, size=1, annotations={"large": "0" * (2 * 64 * 1024)}
    )
    j = await verifier(bins, timeout=30).verify_image(NAME, big)
    assert j == Judgement(ok=True, reason="a => Reason A")


async def test_a_verifier_that_cannot_be_started_is_an_error(tmp_path):
    bins = tmp_path / "bin"
    bad = bins / "bad.sh"
    bins.mkdir()
    bad.write_text("BAD")
    bad.chmod(0o744)
    with pytest.raises(
        errdefs.Unknown, match=r"failed to call verifier bad\.sh .*starting process"
    ):
        await verifier(bins).verify_image(NAME, DESC)


async def test_a_verifier_killed_by_a_signal_is_an_error(tmp_path):
    bins = tmp_path / "bin"
    script(bins, "a", "kill -SEGV $$\n")
    with pytest.raises(errdefs.Unknown, match="signal: segmentation fault"):
        await verifier(bins).verify_image(NAME, DESC)
