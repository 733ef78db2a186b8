"""Kubernetes image volumes (KEP-4639): a CRI ``Mount`` whose ``image`` field names an image
the kubelet has pulled is the image's unpacked filesystem, read-only, at ``container_path``
(or only its ``image_sub_path`` directory).

As containerd 2.1 does it (``internal/cri/server/container_image_mount.go``): the image
(already in the CRI image store) is unpacked into the container's snapshotter if it is not
there yet, a snapshot of its layers is mounted on the host under ``<cri state>/image-volumes``
(the snapshot key is the mount path, as containerd's), and the mount becomes a read-only bind
of that directory (or of the sub path inside it). Two differences: the directory is
``<container id>/<image id>``, not ``<pod id>/<image id>`` (containerd shares a view among a
pod's containers and frees it at StopPodSandbox; here removing a container frees its views),
and the snapshot is a read-only *view*, not an active snapshot with a writable upper layer.
Mounts of one image in one container share one view.

The views are held by the creating call's lease until the container record exists; from then on
the record holds them through ``containerd.io/gc.ref.snapshot.<snapshotter>/image-volume.<n>``
labels, so garbage collection keeps them exactly as long as the container. They are unmounted
and removed when CreateContainer fails, when the container is removed, and, at start-up, for
containers that no longer exist (found by the snapshot label :data:`CONTAINER_LABEL` and by
the directories under ``image-volumes``); views of live containers whose mount went away (a
reboot emptied the state dir) are mounted again.

Sub paths are relative and free of ``..``; symlinks inside the image are followed as the image
means them (an absolute link is relative to the image root), and one that climbs out of the
image is refused. Only directories can be mounted (as containerd).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from pycontainerd.core import errdefs, leases
from pycontainerd.core import mount as mount_
from pycontainerd.core.images.image import snapshot_gc_label

log = logging.getLogger(__name__)

#: the directory below the CRI state dir holding one directory per container
VOLUMES_DIR = "image-volumes"
#: label on each view snapshot: the container it belongs to
CONTAINER_LABEL = "io.cri-containerd.image-volume.container"
#: suffix of the container record's GC reference labels (after ``<snapshotter>/``)
GC_LABEL_NAME = "image-volume."
#: cri-api's error name for this feature (``k8s.io/cri-api/pkg/errors``), at the start of every
#: CreateContainer error here, as containerd reports it
MOUNT_FAILED = "ImageVolumeMountFailed"
#: symlinks followed while resolving a sub path before giving up (the kernel's limit)
MAX_SYMLINKS = 40


def _failed(cls: type[errdefs.ContainerdError], dst: str, what: str) -> errdefs.ContainerdError:
    return cls(f"{MOUNT_FAILED}: image volume at {dst!r}: {what}")


def is_image_mount(m: Any) -> bool:
    """Whether a CRI ``Mount`` asks for an image volume."""
    return bool(m.HasField("image") and m.image.image)


def validate_sub_path(sub_path: str) -> tuple[str, ...]:
    """The components of an ``image_sub_path`` ("" or "." = the image root): relative, no
    ``..``, no NUL. InvalidArgument otherwise."""
    if "\x00" in sub_path:
        raise errdefs.InvalidArgument(f"image sub path {sub_path!r} contains a NUL byte")
    if sub_path.startswith("/"):
        raise errdefs.InvalidArgument(f"image sub path {sub_path!r} must be relative")
    parts = tuple(p for p in sub_path.split("/") if p and p != ".")
    if ".." in parts:
        raise errdefs.InvalidArgument(f"image sub path {sub_path!r} must not contain '..'")
    return parts


def resolve_sub_path(root: str, sub_path: str) -> str:
    """The host path of directory ``sub_path`` inside the image mounted at ``root``, every
    symlink on the way resolved inside the image (absolute targets from the image root).
    NotFound when it does not exist, InvalidArgument when it is not a directory, a symlink
    leads out of the image, or there are too many symlinks."""
    pending = list(validate_sub_path(sub_path))
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":  # only ever from a symlink's target
            if not resolved:
                raise errdefs.InvalidArgument(
                    f"image sub path {sub_path!r}: a symlink leads out of the image"
                )
            resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                raise errdefs.NotFound(
                    f"image sub path {sub_path!r} does not exist in the image"
                ) from None
            raise errdefs.Unknown(f"failed to resolve image sub path {sub_path!r}: {e}") from None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > MAX_SYMLINKS:
                raise errdefs.InvalidArgument(
                    f"image sub path {sub_path!r}: too many levels of symbolic links"
                )
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending[:0] = [p for p in target.split("/") if p and p != "."]
            continue
        resolved.append(part)
    final = os.path.join(root, *resolved)
    if not os.path.isdir(final):
        # the KEP leaves mounting single files out; containerd refuses them too
        raise errdefs.InvalidArgument(
            f"image sub path {sub_path!r} is not a directory (only directories can be mounted)"
        )
    return final


def gc_labels(snapshotter: str, keys: Sequence[str]) -> dict[str, str]:
    """The container record labels holding ``keys`` (view snapshots) against GC."""
    prefix = f"{snapshot_gc_label(snapshotter)}/{GC_LABEL_NAME}"
    return {f"{prefix}{i}": key for i, key in enumerate(keys)}


def keys_from_labels(snapshotter: str, labels: Mapping[str, str]) -> list[str]:
    """The view snapshot keys a container record's labels hold (:func:`gc_labels`)."""
    prefix = f"{snapshot_gc_label(snapshotter)}/{GC_LABEL_NAME}"
    return [v for k, v in sorted(labels.items()) if k.startswith(prefix) and v]


@attrs.frozen(kw_only=True)
class Request:
    """One image mount of a CreateContainer call, checked: the index into
    ``ContainerConfig.mounts`` and the CRI image it names."""

    index: int
    image: Any


@attrs.define(eq=False)
class ImageVolumes:
    """Image volumes of the CRI containers (owned by the container manager)."""

    #: the CRI service (its ``client``, ``images`` and ``runtime.state_dir``)
    c: Any

    @property
    def base_dir(self) -> str:
        return os.path.join(self.c.runtime.state_dir, VOLUMES_DIR)

    def container_dir(self, container_id: str) -> str:
        return os.path.join(self.base_dir, container_id)

    def target(self, container_id: str, image_id: str) -> str:
        """Where the view of image ``image_id`` is mounted for a container (also its key)."""
        return os.path.join(
            self.container_dir(container_id), image_id.partition(":")[2] or image_id
        )

    # --- create ----------------------------------------------------------------------

    def check(self, config: Any) -> list[Request]:
        """Validate the image mounts of a ContainerConfig and find their images, before
        anything is created: read-only, no host path, a well-formed sub path, the image in the
        CRI image store (NotFound otherwise)."""
        out = []
        for i, m in enumerate(config.mounts):
            if not is_image_mount(m):
                continue
            dst = m.container_path
            if m.host_path:
                raise _failed(errdefs.InvalidArgument, dst, "host_path must be empty")
            if not m.readonly:
                raise _failed(
                    errdefs.InvalidArgument,
                    dst,
                    "readonly must be true (image volumes are read-only)",
                )
            try:
                validate_sub_path(m.image_sub_path)
            except errdefs.InvalidArgument as e:
                raise _failed(errdefs.InvalidArgument, dst, str(e)) from None
            ref = m.image.image
            try:
                image = self.c.images.local_resolve(ref)
            except errdefs.NotFound:
                raise _failed(
                    errdefs.NotFound, dst, f"image {ref!r} not found (it must be pulled first)"
                ) from None
            out.append(Request(index=i, image=image))
        return out

    async def prepare(
        self,
        container_id: str,
        config: Any,
        requests: Sequence[Request],
        *,
        snapshotter: str,
        handler: str,
        lease_id: str,
        keys: list[str],
    ) -> None:
        """Mount a view of each requested image (in ``lease_id``) and turn the mounts into
        read-only binds: ``host_path`` set to the view or its sub path, ``image.image_ref`` to
        the image ID. ``keys`` collects the views' snapshot keys as they are created (the
        caller undoes them with :meth:`remove` on failure)."""
        if not requests:
            return
        client = self.c.client
        sn = client.snapshotter(snapshotter)
        await asyncio.to_thread(os.makedirs, self.container_dir(container_id), 0o755, True)
        for req in requests:
            m = config.mounts[req.index]
            dst, image = m.container_path, req.image
            target = self.target(container_id, image.id)
            if target not in keys:
                try:
                    with leases.use(lease_id or None):
                        await self.c.images.ensure_unpacked(
                            image, m.image.image, snapshotter, handler
                        )
                        with client.scope():
                            mounts = await sn.view(
                                target, image.chain_id, labels={CONTAINER_LABEL: container_id}
                            )
                except errdefs.ContainerdError as e:
                    raise _failed(type(e), dst, f"failed to prepare image {image.id!r}: {e}") from e
                keys.append(target)
                try:
                    await _mount(mounts, target)
                except errdefs.ContainerdError as e:
                    raise _failed(type(e), dst, f"failed to mount image {image.id!r}: {e}") from e
            try:
                source = await asyncio.to_thread(resolve_sub_path, target, m.image_sub_path)
            except errdefs.ContainerdError as e:
                raise _failed(type(e), dst, str(e)) from None
            m.host_path = source
            m.image.image_ref = image.id
            log.debug(
                "image volume %s of container %s: %s at %s", image.id, container_id, source, dst
            )

    # --- remove and recover ------------------------------------------------------------

    async def remove(self, container_id: str, snapshotter: str, keys: Iterable[str] = ()) -> None:
        """Unmount and remove the views of a container: ``keys`` and whatever its directory
        holds. Idempotent."""
        todo = list(dict.fromkeys(keys))
        cdir = self.container_dir(container_id)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            names = await asyncio.to_thread(os.listdir, cdir)
            todo.extend(p for p in (os.path.join(cdir, n) for n in sorted(names)) if p not in todo)
        sn = self.c.client.snapshotters.get(snapshotter)
        for key in todo:
            await self._remove_view(sn, key)
        await asyncio.to_thread(_rmdir, cdir)

    async def _remove_view(self, sn: Any, key: str) -> None:
        # views live below our own directory; whatever else a record's labels name is left
        # alone (garbage collection takes views of an earlier state dir once unreferenced)
        if not key.startswith(self.base_dir + "/"):
            log.warning("cri: not removing image volume %r: not below %s", key, self.base_dir)
            return
        await mount_.unmount_all(key)
        if sn is not None:
            with contextlib.suppress(errdefs.NotFound), self.c.client.scope():
                await sn.remove(key)
        await asyncio.to_thread(_rmdir, key)

    async def recover(self, live: Mapping[str, str]) -> None:
        """At start-up (``live``: container id -> snapshotter of every container recovered):
        remove the views of containers that are gone, mount again the views of live ones
        that are not mounted. Errors are logged."""
        client = self.c.client
        for name, sn in sorted(client.snapshotters.items()):
            try:
                with client.scope():
                    infos = [i async for i in sn.walk([f'labels."{CONTAINER_LABEL}"'])]
            except Exception as e:  # noqa: BLE001 - one snapshotter does not stop the rest
                log.warning("cri: failed to list image volumes in snapshotter %s: %s", name, e)
                continue
            for info in infos:
                cid = info.labels.get(CONTAINER_LABEL, "")
                try:
                    if live.get(cid) == name:
                        await self._remount(sn, info.name)
                    else:
                        log.info(
                            "cri: removing image volume %s of gone container %s", info.name, cid
                        )
                        await self._remove_view(sn, info.name)
                except Exception as e:  # noqa: BLE001 - every view is tried
                    log.error("cri: failed to recover image volume %s: %s", info.name, e)
        try:
            gone = [d for d in await asyncio.to_thread(os.listdir, self.base_dir) if d not in live]
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("cri: failed to list %s: %s", self.base_dir, e)
            return
        for cid in gone:
            try:
                await self.remove(cid, "")
            except Exception as e:  # noqa: BLE001 - every directory is tried
                log.error("cri: failed to remove image volumes of gone container %s: %s", cid, e)

    async def _remount(self, sn: Any, key: str) -> None:
        if not key.startswith(self.base_dir + "/"):
            return
        from pycontainerd.core.mount import linux

        if await asyncio.to_thread(linux.is_mount_point, key):
            return
        with self.c.client.scope():
            mounts = await sn.mounts(key)
        await _mount(mounts, key)
        log.info("cri: mounted image volume %s again", key)


async def _mount(mounts: Sequence[Any], target: str) -> None:
    """Mount a view read-only at ``target`` (made here); undone on failure."""
    await asyncio.to_thread(os.makedirs, target, 0o755, True)
    ro = mount_.readonly_mounts(mount_.remove_volatile_option(mounts))
    try:
        await mount_.mount_all(ro, target)
    except BaseException:
        await asyncio.shield(mount_.unmount_all(target))
        raise


def _rmdir(path: str) -> None:
    """Remove an empty directory (never anything in it: a view may still be mounted there)."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise errdefs.FailedPrecondition(
            f"failed to remove image volume directory {path!r}: {e.strerror}"
        ) from None
