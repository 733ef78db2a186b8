"""``pyctr images``: import, export, ls, rm (client-side, as containerd 1.6's ``ctr``: Content
Write + Images Create/Update + Snapshots Prepare/Commit + Diff Apply under a lease)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from pycontainerd.cli.pyctr.progress import ImportProgress, human_bytes
from pycontainerd.cli.pyctr.table import print_table
from pycontainerd.core import errdefs, namespaces
from pycontainerd.core import platforms as platforms_


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("images", aliases=["image", "i"], help="manage images")
    isub = p.add_subparsers(dest="images_command", required=True)

    imp = isub.add_parser("import", help="import images from a tar stream (oci.v1, docker.v1.x)")
    imp.add_argument("--base-name", default="", help="base image name for added images")
    imp.add_argument("--digests", action="store_true", help="create digest images")
    imp.add_argument(
        "--skip-digest-for-named",
        action="store_true",
        help="no digest image for images named in the tar",
    )
    imp.add_argument("--index-name", default="", help="image name to keep the index as")
    imp.add_argument(
        "--all-platforms", action="store_true", help="imports content for all platforms"
    )
    imp.add_argument("--platform", default="", help="imports content for a specific platform")
    imp.add_argument("--no-unpack", action="store_true", help="skip unpacking the images")
    imp.add_argument("--snapshotter", default="", help="snapshotter name (default overlayfs)")
    imp.add_argument("--label", action="append", default=[], help="labels of the images")
    imp.add_argument("--no-progress", action="store_true", help="do not show progress")
    imp.add_argument("file", help="archive file, or - for stdin")
    imp.set_defaults(func=run_import)

    exp = isub.add_parser("export", help="export images as an OCI archive")
    exp.add_argument("--all-platforms", action="store_true", help="export every platform")
    exp.add_argument("--platform", action="append", default=[], help="platforms to export")
    exp.add_argument(
        "--skip-manifest-json",
        action="store_true",
        help="do not add a Docker compatible manifest.json",
    )
    exp.add_argument("out", help="output file, or - for stdout")
    exp.add_argument("names", nargs="+", help="images to export")
    exp.set_defaults(func=run_export)

    ls = isub.add_parser("ls", aliases=["list"], help="list images known to the daemon")
    ls.add_argument("-q", "--quiet", action="store_true", help="print only the image refs")
    ls.add_argument("filters", nargs="*", help="filters, e.g. name~=busybox")
    ls.set_defaults(func=run_ls)

    rm = isub.add_parser("rm", aliases=["remove", "delete", "del"], help="remove images")
    rm.add_argument("--sync", action="store_true", help="wait for garbage collection")
    rm.add_argument("names", nargs="+")
    rm.set_defaults(func=run_rm)

    # pull, push and tag go through the Transfer service: cli/pyctr/commands/pull.py
    from pycontainerd.cli.pyctr.commands.pull import register_transfer_commands

    register_transfer_commands(isub)


def run_async(args: argparse.Namespace, fn: Callable[[Any], Awaitable[int]]) -> int:
    """Run ``fn(channel)`` in a fresh loop, with the namespace of ``args`` current."""
    from pycontainerd.cli.pyctr import remote

    async def main() -> int:
        with namespaces.use(args.namespace):
            channel = remote.dial(args.address)
            try:
                coro = fn(channel)
                if args.timeout:
                    return await asyncio.wait_for(coro, args.timeout)
                return await coro
            finally:
                await channel.close()

    return asyncio.run(main())


def _default_snapshotter() -> str:
    import os

    return os.environ.get("CONTAINERD_SNAPSHOTTER") or "overlayfs"


def run_import(args: argparse.Namespace) -> int:
    from pycontainerd.cli.pyctr import remote
    from pycontainerd.core.images import archive
    from pycontainerd.core.images.importer import Importer
    from pycontainerd.core.snapshots.proxy import ProxySnapshotter

    if args.base_name:
        translator = archive.filter_ref_prefix(args.base_name)
        prefix = args.base_name
    else:
        import datetime

        prefix = "import-" + datetime.date.today().isoformat()
        translator = archive.add_ref_prefix(prefix)
    labels = dict(kv.partition("=")[::2] for kv in args.label)
    opts = archive.ImportOptions(
        index_name=args.index_name,
        all_platforms=args.all_platforms,
        platform=platforms_.only(platforms_.parse(args.platform)) if args.platform else None,
        ref_translator=translator,
        digest_ref=archive.digest_translator(prefix) if args.digests else None,
        skip_digest_for_named=args.skip_digest_for_named,
        labels=labels or None,
    )
    snapshotter = args.snapshotter or _default_snapshotter()
    progress = None if args.no_progress else ImportProgress(out=sys.stdout)

    async def go(channel: Any) -> int:
        importer = Importer(
            content=remote.RemoteContentStore(channel),
            images=remote.RemoteImageStore(channel),
            leases=remote.RemoteLeases(channel),
            snapshotter=lambda name: ProxySnapshotter(channel, name, owns_channel=False),
            applier=remote.RemoteApplier(channel),
        )

        def on_unpack(img: Any, p: Any) -> None:
            if p.status == "done":
                print("done", flush=True)

        finished = []

        def finish_progress() -> None:
            if progress is not None and not finished:
                finished.append(True)
                progress.finish()

        def on_image(img: Any) -> None:
            finish_progress()
            if not args.no_unpack:
                print(f"unpacking {img.name} ({img.target.digest})...", end="", flush=True)

        if args.file == "-":
            stream = sys.stdin.buffer
            done = await importer.import_archive(
                stream,
                opts,
                unpack_into=None if args.no_unpack else snapshotter,
                progress=progress,
                unpack_progress=on_unpack,
                on_image=on_image,
            )
        else:
            with open(args.file, "rb") as stream:
                done = await importer.import_archive(
                    stream,
                    opts,
                    unpack_into=None if args.no_unpack else snapshotter,
                    progress=progress,
                    unpack_progress=on_unpack,
                    on_image=on_image,
                )
        finish_progress()
        if args.no_unpack:
            for d in done:
                print(f"imported {d.image.name} ({d.image.target.digest})")
        return 0

    return run_async(args, go)


def run_export(args: argparse.Namespace) -> int:
    from pycontainerd.cli.pyctr import remote
    from pycontainerd.core.images import archive

    matcher = None
    if args.platform:
        matcher = platforms_.ordered(*[platforms_.parse(p) for p in args.platform])

    async def go(channel: Any) -> int:
        store = remote.RemoteContentStore(channel)
        images = remote.RemoteImageStore(channel)
        imgs = [await images.get(n) for n in args.names]
        if args.out == "-":
            await archive.export(
                store,
                sys.stdout.buffer,
                imgs,
                platform=matcher,
                all_platforms=args.all_platforms,
                skip_manifest_json=args.skip_manifest_json,
            )
            sys.stdout.buffer.flush()
        else:
            with open(args.out, "wb") as f:
                await archive.export(
                    store,
                    f,
                    imgs,
                    platform=matcher,
                    all_platforms=args.all_platforms,
                    skip_manifest_json=args.skip_manifest_json,
                )
        return 0

    return run_async(args, go)


def _type_name(media_type: str) -> str:
    return media_type or "-"


def run_ls(args: argparse.Namespace) -> int:
    from pycontainerd.cli.pyctr import remote
    from pycontainerd.core.images import image as image_

    async def go(channel: Any) -> int:
        store = remote.RemoteContentStore(channel)
        imgs = await remote.RemoteImageStore(channel).list(args.filters)
        if args.quiet:
            for img in imgs:
                print(img.name)
            return 0
        rows = []
        for img in imgs:
            try:
                size = human_bytes(await image_.size(store, img.target, platforms_.default()))
            except errdefs.ContainerdError:
                size = "-"
            try:
                plats = await image_.platforms(store, img.target)
                plat = ",".join(sorted({platforms_.format(p) for p in plats})) or "-"
            except errdefs.ContainerdError:
                plat = "-"
            labels = ",".join(sorted(f"{k}={v}" for k, v in img.labels.items())) or "-"
            rows.append(
                [img.name, _type_name(img.target.media_type), img.target.digest, size, plat, labels]
            )
        print_table(["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"], rows, padding=1)
        return 0

    return run_async(args, go)


def run_rm(args: argparse.Namespace) -> int:
    from pycontainerd.cli.pyctr import remote

    async def go(channel: Any) -> int:
        images = remote.RemoteImageStore(channel)
        rc = 0
        for name in args.names:
            try:
                await images.delete(name, sync=args.sync)
            except errdefs.NotFound:
                print(f"pyctr: {name}: image not found", file=sys.stderr)
                continue
            except errdefs.ContainerdError as e:
                print(f"pyctr: unable to delete {name}: {e}", file=sys.stderr)
                rc = 1
                continue
            print(name)
        return rc

    return run_async(args, go)
