from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from pycontainerd.api import generate

API_DIR = Path(generate.__file__).resolve().parent


def _generated_modules() -> list[str]:
    names = []
    for path in sorted(API_DIR.rglob("*_pb2*.py")):
        rel = path.relative_to(API_DIR).with_suffix("")
        names.append("pycontainerd.api." + ".".join(rel.parts))
    return names


def test_committed_generated_code_matches_proto_sources() -> None:
    problems = generate.diff()
    assert problems == [], "run `python -m pycontainerd.api.generate`:\n" + "\n".join(problems)


def test_every_proto_has_a_committed_message_module() -> None:
    for proto in generate.find_protos():
        module = API_DIR / proto.replace(".proto", "_pb2.py")
        assert module.is_file(), f"{proto} has no generated module"


@pytest.mark.parametrize("name", _generated_modules())
def test_generated_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_own_imports_are_rewritten_under_the_package_and_well_known_ones_are_not() -> None:
    own = {"containerd/types/platform.proto", "google/rpc/status.proto"}
    text = (
        "from containerd.types import platform_pb2 as _p\n"
        "from google.rpc import status_pb2 as _s\n"
        "from google.protobuf import any_pb2 as _a\n"
        "import grpc\n"
        "import containerd.types.platform_pb2\n"
        "_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, 'containerd.types.platform_pb2', g)\n"
    )
    assert generate.rewrite_imports(text, own) == (
        "from pycontainerd.api.containerd.types import platform_pb2 as _p\n"
        "from pycontainerd.api.google.rpc import status_pb2 as _s\n"
        "from google.protobuf import any_pb2 as _a\n"
        "import grpc\n"
        "import pycontainerd.api.containerd.types.platform_pb2\n"
        "_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, "
        "'pycontainerd.api.containerd.types.platform_pb2', g)\n"
    )


def test_check_reports_a_hand_edited_module(tmp_path: Path) -> None:
    api = tmp_path / "api"
    (api / "demo").mkdir(parents=True)
    (api / "demo" / "thing.proto").write_text(
        'syntax = "proto3";\npackage demo;\nmessage Thing { string name = 1; }\n'
    )
    assert generate.write(api)
    assert generate.diff(api) == []
    module = api / "demo" / "thing_pb2.py"
    module.write_text(module.read_text() + "# edited\n")
    (api / "demo" / "old_pb2.py").write_text("")
    assert generate.diff(api) == ["differs: demo/thing_pb2.py", "stale: demo/old_pb2.py"]


def test_generated_classes_report_their_installed_module() -> None:
    from pycontainerd.api.containerd.types import descriptor_pb2

    assert (
        descriptor_pb2.Descriptor.__module__ == "pycontainerd.api.containerd.types.descriptor_pb2"
    )
