"""pyctr loads only the module of the command it runs (grpc and protobuf modules included)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pycontainerd.cli.pyctr import app, commands


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["version"], "version"),
        (["-a", "/x.sock", "-n", "k8s.io", "images", "ls"], "images"),
        (["--timeout", "3", "ns", "ls"], "ns"),
        (["--help"], None),
        (["-n", "x"], None),
        ([], None),
    ],
)
def test_the_command_word_is_found_after_global_flags(argv, word):
    assert app._command_word(argv) == word


def test_aliases_map_to_their_module_and_unknown_commands_load_everything():
    assert commands.module_for("ns") == "namespaces"
    assert commands.module_for("c") == "containers"
    assert commands.module_for("nosuch") is None
    assert len(commands.modules("nosuch")) == len(commands.COMMANDS)
    assert [m.__name__ for m in commands.modules("i")] == ["pycontainerd.cli.pyctr.commands.images"]


def test_running_version_does_not_import_the_other_commands():
    code = (
        "import sys\n"
        "from pycontainerd.cli.pyctr import app\n"
        "app.parser(['version'])\n"
        "prefix = 'pycontainerd.cli.pyctr.commands.'\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(prefix))\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "pycontainerd.cli.pyctr.commands.version"


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        app.main(["--help"])
    text = capsys.readouterr().out
    for name, _, _ in commands.COMMANDS:
        assert name in text
