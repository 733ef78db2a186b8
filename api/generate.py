"""Regenerate the Python protobuf/gRPC modules from the ``.proto`` sources under ``api/``.

Usage::

    python -m pycontainerd.api.generate          # rewrite the committed *_pb2* modules
    python -m pycontainerd.api.generate --check  # exit 1 listing files that would change

protoc (from grpcio-tools, a dev dependency) emits ``x_pb2.py``, ``x_pb2.pyi`` and
``x_pb2_grpc.py`` next to each ``x.proto``. Imports of our own generated modules are then
made absolute under ``pycontainerd.api`` (protoc writes them relative to the include root,
e.g. ``from containerd.types import descriptor_pb2``); imports of the well-known types
(``google.protobuf``) are left alone. Every folder that receives modules gets an empty
``__init__.py``. The output depends only on the ``.proto`` files and the grpcio-tools version.
"""

from __future__ import annotations

import argparse
import filecmp
import logging
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

API_DIR = Path(__file__).resolve().parent
PACKAGE = "pycontainerd.api"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")

# "from a.b import c_pb2 ..." and "import a.b.c_pb2 ..." at the start of a line.
_FROM_IMPORT = re.compile(
    r"^(?P<indent>\s*)from (?P<pkg>[\w.]+) import (?P<mod>\w+_pb2(?:_grpc)?)\b", re.M
)
_PLAIN_IMPORT = re.compile(r"^(?P<indent>\s*)import (?P<mod>[\w.]+_pb2(?:_grpc)?)\b", re.M)
_BUILDER_MODULE = re.compile(
    r"(?P<head>BuildTopDescriptorsAndMessages\(DESCRIPTOR, )'(?P<mod>[\w.]+_pb2)'"
)


def find_protos(api_dir: Path = API_DIR) -> list[str]:
    """Return the ``.proto`` files under ``api_dir`` as sorted POSIX paths relative to it."""
    return sorted(p.relative_to(api_dir).as_posix() for p in api_dir.rglob("*.proto"))


def _module_to_proto(module: str) -> str:
    """``containerd.types.descriptor_pb2`` -> ``containerd/types/descriptor.proto``."""
    stem = module.removesuffix("_grpc").removesuffix("_pb2")
    return stem.replace(".", "/") + ".proto"


def _defines_service(grpc_module_text: str) -> bool:
    return re.search(r"^class \w+Stub\b", grpc_module_text, re.M) is not None


def rewrite_imports(text: str, own_protos: set[str]) -> str:
    """Make imports of modules generated from ``own_protos`` absolute under ``PACKAGE``."""

    def from_import(m: re.Match[str]) -> str:
        if _module_to_proto(f"{m['pkg']}.{m['mod']}") not in own_protos:
            return m.group(0)
        return f"{m['indent']}from {PACKAGE}.{m['pkg']} import {m['mod']}"

    def plain_import(m: re.Match[str]) -> str:
        if _module_to_proto(m["mod"]) not in own_protos:
            return m.group(0)
        return f"{m['indent']}import {PACKAGE}.{m['mod']}"

    def module_name(m: re.Match[str]) -> str:
        if _module_to_proto(m["mod"]) not in own_protos:
            return m.group(0)
        return f"{m['head']}'{PACKAGE}.{m['mod']}'"

    text = _FROM_IMPORT.sub(from_import, text)
    text = _PLAIN_IMPORT.sub(plain_import, text)
    # the module name protobuf gives the generated classes (their __module__)
    return _BUILDER_MODULE.sub(module_name, text)


def _run_protoc(api_dir: Path, protos: Sequence[str], out_dir: Path) -> None:
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "grpcio-tools is required to generate code: pip install -e '.[dev]'"
        ) from exc

    include = Path(grpc_tools.__file__).resolve().parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{api_dir}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")


def generate(out_dir: Path, api_dir: Path = API_DIR) -> list[str]:
    """Generate every module into ``out_dir``; return the written files relative to it."""
    protos = find_protos(api_dir)
    if not protos:
        raise SystemExit(f"no .proto files found under {api_dir}")
    _run_protoc(api_dir, protos, out_dir)

    own = set(protos)
    written: set[str] = set()
    for path in sorted(out_dir.rglob("*")):
        if not path.is_file() or not path.name.endswith(GENERATED_SUFFIXES):
            continue
        text = path.read_text(encoding="utf-8")
        if path.name.endswith("_pb2_grpc.py") and not _defines_service(text):
            # protoc emits a near-empty module (that still imports grpc) for files without
            # services; nothing would import it, so it is not kept.
            path.unlink()
            continue
        path.write_text(rewrite_imports(text, own), encoding="utf-8")
        rel = path.relative_to(out_dir)
        written.add(rel.as_posix())
        for parent in rel.parents:
            if parent != Path("."):
                init = out_dir / parent / "__init__.py"
                init.touch()
                written.add((parent / "__init__.py").as_posix())
    return sorted(written)


def committed_files(api_dir: Path = API_DIR) -> list[str]:
    """Generated modules (and package markers beside them) currently under ``api_dir``."""
    found: set[str] = set()
    for path in api_dir.rglob("*"):
        if path.is_file() and path.name.endswith(GENERATED_SUFFIXES):
            rel = path.relative_to(api_dir)
            found.add(rel.as_posix())
            for parent in rel.parents:
                if parent != Path(".") and (api_dir / parent / "__init__.py").exists():
                    found.add((parent / "__init__.py").as_posix())
    return sorted(found)


def diff(api_dir: Path = API_DIR) -> list[str]:
    """Return human-readable lines describing how the committed code differs from fresh output."""
    with tempfile.TemporaryDirectory(prefix="pycontainerd-api-") as tmp:
        out = Path(tmp)
        fresh = generate(out, api_dir)
        problems = []
        for rel in fresh:
            target = api_dir / rel
            if not target.exists():
                problems.append(f"missing: {rel}")
            elif not filecmp.cmp(out / rel, target, shallow=False):
                problems.append(f"differs: {rel}")
        stale = set(committed_files(api_dir)) - set(fresh)
        problems.extend(f"stale: {rel}" for rel in sorted(stale))
        return problems


def write(api_dir: Path = API_DIR) -> list[str]:
    """Regenerate in place; remove stale generated modules. Return the files that changed."""
    changed = []
    with tempfile.TemporaryDirectory(prefix="pycontainerd-api-") as tmp:
        out = Path(tmp)
        fresh = generate(out, api_dir)
        for rel in fresh:
            target = api_dir / rel
            if target.exists() and filecmp.cmp(out / rel, target, shallow=False):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / rel, target)
            changed.append(rel)
        for rel in sorted(set(committed_files(api_dir)) - set(fresh)):
            if rel.endswith(GENERATED_SUFFIXES):
                (api_dir / rel).unlink()
                changed.append(rel)
    return changed


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pycontainerd.api.generate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the committed code is out of date",
    )
    args = parser.parse_args(None if argv is None else list(argv))
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.check:
        problems = diff()
        for line in problems:
            print(line)
        if problems:
            print(
                "generated code is out of date: run python -m pycontainerd.api.generate",
                file=sys.stderr,
            )
            return 1
        return 0

    changed = write()
    for rel in changed:
        log.info("updated %s", rel)
    log.info("%d file(s) changed", len(changed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
