"""Task bundles (containerd ``core/runtime/v2/bundle.go``).

A bundle is the state directory ``<state>/<namespace>/<id>`` (mode 0700) holding the OCI
``config.json``, the ``rootfs`` mount target, and ``work``, a symlink to the persistent work
directory ``<root>/<namespace>/<id>``. Shim managers add ``log``, ``shim-binary-path`` and
``bootstrap.json``. Deletion unmounts ``rootfs`` and renames each directory to ``.<name>``
before removing it, so a crash half-way leaves a hidden directory a later start skips and
cleans up, never a half-removed bundle.

These functions do blocking file work and unmount; async callers run them in a thread.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import attrs

from pycontainerd.core import errdefs
from pycontainerd.core.metadata.validation import validate_identifier

log = logging.getLogger(__name__)

CONFIG_FILENAME = "config.json"
ROOTFS = "rootfs"
WORK = "work"
LOG = "log"
SHIM_BINARY_PATH = "shim-binary-path"
BOOTSTRAP = "bootstrap.json"
ADDRESS = "address"
SANDBOX = "sandbox"

#: The type URL of an OCI runtime spec in a container record.
SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"


@attrs.frozen(kw_only=True)
class Bundle:
    id: str
    namespace: str
    path: str

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def rootfs(self) -> str:
        return self.file(ROOTFS)

    def work_dir(self) -> str | None:
        try:
            return os.readlink(self.file(WORK))
        except OSError:
            return None

    def spec(self) -> dict[str, object] | None:
        """The bundle's OCI spec, or None when there is none or it is unreadable."""
        try:
            with open(self.file(CONFIG_FILENAME), "rb") as f:
                value = json.load(f)
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def delete(self) -> None:
        """Unmount ``rootfs`` and remove the bundle and its work directory (blocking)."""
        from pycontainerd.core.mount import linux

        work = self.work_dir()
        rootfs = self.rootfs
        try:
            linux.unmount_recursive(rootfs)
        except errdefs.ContainerdError as e:
            raise errdefs.FailedPrecondition(f"unmount rootfs {rootfs}: {e}") from e
        try:
            os.rmdir(rootfs)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise errdefs.FailedPrecondition(f"failed to remove bundle rootfs {rootfs}: {e}") from e
        atomic_delete(self.path)
        if work is not None:
            atomic_delete(work)


def atomic_delete(path: str) -> None:
    """Rename ``path`` to ``.<name>`` beside it, then remove that (missing is fine)."""
    hidden = os.path.join(os.path.dirname(path), "." + os.path.basename(path))
    try:
        os.rename(path, hidden)
    except FileNotFoundError:
        return
    except OSError as e:
        # a stale hidden dir from an earlier crash is in the way
        if not os.path.exists(hidden):
            raise errdefs.Internal(f"failed to delete {path}: {e}") from e
        shutil.rmtree(hidden, ignore_errors=True)
        os.rename(path, hidden)
    shutil.rmtree(hidden, ignore_errors=False)


def load_bundle(state: str, namespace: str, id: str) -> Bundle:  # noqa: A002
    return Bundle(id=id, namespace=namespace, path=os.path.join(state, namespace, id))


def _remapped_root_gid(spec: dict[str, object]) -> int | None:
    linux = spec.get("linux")
    if not isinstance(linux, dict):
        return None
    namespaces = linux.get("namespaces") or []
    if not any(isinstance(n, dict) and n.get("type") == "user" for n in namespaces):
        return None
    for m in linux.get("gidMappings") or []:
        if isinstance(m, dict) and m.get("containerID") == 0:
            return int(m.get("hostID", 0))
    return None


def new_bundle(root: str, state: str, namespace: str, id: str, spec: bytes | None) -> Bundle:  # noqa: A002
    """Create the bundle of task ``id`` (blocking). ``spec``: the OCI spec JSON, or None.

    AlreadyExists when the bundle exists; nothing is left behind on failure.
    """
    try:
        validate_identifier(id)
    except errdefs.InvalidArgument as e:
        raise errdefs.InvalidArgument(f"invalid task id {id!r}: {e}") from None
    parsed: dict[str, object] | None = None
    if spec:
        try:
            value = json.loads(spec)
        except ValueError as e:
            raise errdefs.InvalidArgument(f"invalid oci spec of task {id!r}: {e}") from None
        if not isinstance(value, dict):
            raise errdefs.InvalidArgument(f"invalid oci spec of task {id!r}: not an object")
        parsed = value
    bundle = Bundle(id=id, namespace=namespace, path=os.path.join(state, namespace, id))
    work = os.path.join(root, namespace, id)
    os.makedirs(os.path.dirname(bundle.path), mode=0o711, exist_ok=True)
    try:
        os.mkdir(bundle.path, 0o700)
    except FileExistsError:
        raise errdefs.AlreadyExists(f"bundle of task {id!r} in namespace {namespace!r}") from None
    created = [bundle.path]
    try:
        if parsed is not None:
            gid = _remapped_root_gid(parsed)
            if gid is not None:
                # the remapped root must be able to reach the rootfs below the bundle
                os.chown(bundle.path, -1, gid)
                os.chmod(bundle.path, 0o710)
        os.makedirs(os.path.dirname(work), mode=0o711, exist_ok=True)
        os.makedirs(bundle.rootfs, mode=0o711, exist_ok=True)
        try:
            os.mkdir(work, 0o711)
        except FileExistsError:
            shutil.rmtree(work, ignore_errors=True)
            os.mkdir(work, 0o711)
        created.append(work)
        os.symlink(work, bundle.file(WORK))
        if spec:
            with open(bundle.file(CONFIG_FILENAME), "wb") as f:
                f.write(spec)
    except BaseException:
        for p in reversed(created):
            shutil.rmtree(p, ignore_errors=True)
        raise
    return bundle
