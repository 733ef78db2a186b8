"""scripts/test.sh and .ci/run: CI must fail when pytest collects nothing (exit 5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_scripts_and_ci_entry_point_are_executable():
    for rel in ("scripts/setup.sh", "scripts/test.sh", ".ci/run"):
        assert os.access(REPO / rel, os.X_OK), rel


@pytest.mark.root
def test_test_script_turns_no_tests_collected_into_a_failure(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "test_nothing_here.py").write_text("# no tests\n")
    res = subprocess.run(
        ["bash", str(REPO / "scripts/test.sh"), "-p", "no:cacheprovider", str(empty)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert "collected no tests" in res.stderr
    assert "setup: " in res.stdout


@pytest.mark.root
def test_test_script_passes_pytests_failure_exit_code_through(tmp_path):
    d = tmp_path / "failing"
    d.mkdir()
    (d / "test_fails.py").write_text("def test_fails():\n    assert False\n")
    res = subprocess.run(
        ["bash", str(REPO / "scripts/test.sh"), "-p", "no:cacheprovider", str(d)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert "1 failed" in res.stdout


def test_support_modules_import_without_pytest_for_bench_scripts():
    code = (
        "import sys; sys.path.insert(0, 'tests/support');"
        "import images, registry, peers;"
        "assert 'pytest' not in sys.modules, 'support modules must not import pytest'"
    )
    res = subprocess.run(
        [sys.executable, "-P", "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
