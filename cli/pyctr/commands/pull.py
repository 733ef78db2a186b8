"""``pyctr images pull|push|tag`` through the daemon's Transfer service, as containerd 2.x's
``ctr``: a progress stream (and, with ``--user``, a credentials stream) opened with the
Streaming service, then one ``Transfer`` call whose source and destination are
``containerd.types.transfer`` messages; progress is drawn while it runs.

The images command module calls :func:`register_transfer_commands` with its subparsers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import sys
import time
from typing import Any, TextIO

from pycontainerd.core import errdefs, namespaces
from pycontainerd.core import platforms as platforms_
from pycontainerd.core.transfer import Progress, UnpackConfiguration
from pycontainerd.core.transfer.imagestore import ImageStore
from pycontainerd.core.transfer.progress import ProgressView, human_size
from pycontainerd.core.transfer.registry import OCIRegistry


def register_transfer_commands(isub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = isub.add_parser("pull", help="pull an image from a registry (through the daemon)")
    p.add_argument("--platform", action="append", default=[], help="platform(s) to pull")
    p.add_argument("--all-platforms", action="store_true", help="pull every platform")
    p.add_argument(
        "--all-metadata",
        action="store_true",
        help="fetch every manifest, the layers only of the chosen platforms",
    )
    p.add_argument(
        "--snapshotter",
        default=os.environ.get("CONTAINERD_SNAPSHOTTER", ""),
        help="snapshotter to unpack into (default: the daemon's)",
    )
    p.add_argument("--skip-unpack", action="store_true", help="do not unpack the layers")
    p.add_argument("--label", action="append", default=[], help="labels of the image (k=v)")
    _registry_flags(p)
    p.add_argument("--no-progress", action="store_true", help="do not show progress")
    p.add_argument("ref", help="image reference, e.g. 127.0.0.1:5000/library/busybox:latest")
    p.set_defaults(func=run_pull)

    ps = isub.add_parser("push", help="push an image to a registry (through the daemon)")
    ps.add_argument("--platform", action="append", default=[], help="platform(s) to push")
    _registry_flags(ps)
    ps.add_argument("--no-progress", action="store_true", help="do not show progress")
    ps.add_argument("remote", help="destination reference")
    ps.add_argument("local", nargs="?", default="", help="local image (default: remote)")
    ps.set_defaults(func=run_push)

    t = isub.add_parser("tag", help="record an image under more names")
    t.add_argument("--force", action="store_true", help="replace existing names (always done)")
    t.add_argument("source")
    t.add_argument("targets", nargs="+")
    t.set_defaults(func=run_tag)


def _registry_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plain-http", action="store_true", help="use plain HTTP for the registry")
    p.add_argument("--hosts-dir", default="", help="hosts.toml configuration directory")
    p.add_argument("-u", "--user", default="", help="registry credentials, user[:password]")
    p.add_argument("--header", action="append", default=[], help="extra HTTP header (k: v)")


def _registry(args: argparse.Namespace, ref: str) -> tuple[OCIRegistry, tuple[str, str] | None]:
    headers = {}
    for h in args.header:
        k, _, v = h.partition(":")
        headers[k.strip()] = v.strip()
    creds = None
    if args.user:
        user, sep, secret = args.user.partition(":")
        if not sep:
            secret = getpass.getpass(f"Password for {user}: ")
        creds = (user, secret)
    reg = OCIRegistry(
        reference=ref,
        headers=headers,
        host_dir=os.path.abspath(args.hosts_dir) if args.hosts_dir else "",
        default_scheme="http" if args.plain_http else "",
    )
    return reg, creds


def _labels(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k] = v
    return out


class Display:
    """Draws a :class:`ProgressView`: redrawn in place on a terminal, one line per change
    otherwise."""

    def __init__(self, out: TextIO, enabled: bool = True) -> None:
        self.view = ProgressView()
        self.out = out
        self.enabled = enabled
        self.tty = out.isatty()
        self._lines = 0
        self._last = 0.0
        self._seen: dict[str, str] = {}

    def add(self, p: Progress) -> None:
        nmsg = len(self.view.messages)
        self.view.add(p)
        if not self.enabled:
            return
        if self.tty:
            if time.monotonic() - self._last > 0.1 or p.event in ("saved",):
                self.draw()
            return
        for m in self.view.messages[nmsg:]:
            print(m, file=self.out, flush=True)
        row = self.view.rows.get(p.name)
        if row is not None and self._seen.get(row.name) != row.status:
            self._seen[row.name] = row.status
            print(
                f"{row.name}: {row.status} {human_size(row.progress)}/{human_size(row.total)}",
                file=self.out,
                flush=True,
            )

    def draw(self) -> None:
        self._last = time.monotonic()
        lines = list(self.view.messages[-3:])
        for row in self.view.rows.values():
            pct = f"{100 * row.progress // row.total:3d}%" if row.total else "    "
            lines.append(
                f"{row.name[:80]:<80} {row.status:<15} {pct} "
                f"{human_size(row.progress)}/{human_size(row.total)}"
            )
        lines.append(self.summary())
        if self._lines:
            self.out.write(f"\x1b[{self._lines}F\x1b[J")
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self._lines = len(lines)

    def summary(self) -> str:
        v = self.view
        elapsed = time.monotonic() - v.started
        return (
            f"elapsed: {elapsed:.1f}s total: {human_size(v.done)} of {human_size(v.total)} "
            f"({human_size(v.rate)}/s)"
        )

    def finish(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.draw()
        else:
            print(self.summary(), file=self.out, flush=True)


class _ClientStream:
    """The client end of one Streaming.Stream call."""

    def __init__(self, call: Any) -> None:
        self.call = call
        #: a write failed because the daemon had ended the call
        self._ended = False

    @classmethod
    async def open(cls, channel: Any, stream_id: str, metadata: Any) -> _ClientStream:
        from pycontainerd.api.containerd.services.streaming.v1 import streaming_pb2 as spb
        from pycontainerd.api.containerd.services.streaming.v1 import streaming_pb2_grpc
        from pycontainerd.core.transfer.streaming import pack

        call = streaming_pb2_grpc.StreamingStub(channel).Stream(metadata=metadata)
        await call.write(pack(spb.StreamInit(id=stream_id)))
        await call.read()  # the acknowledgement: the stream is registered
        return cls(call)

    async def recv(self) -> Any:
        import grpc

        try:
            msg = await self.call.read()
        except grpc.aio.AioRpcError:
            if self._ended:
                # the late write marked the finished call failed; what the daemon sent
                # before it ended has been read
                raise EOFError("end of stream") from None
            raise
        if msg is grpc.aio.EOF:
            raise EOFError("end of stream")
        return msg

    async def send(self, msg: Any) -> None:
        import grpc

        try:
            await self.call.write(msg)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as e:
            # the daemon ended the stream (a window update after the last Data message)
            self._ended = True
            raise EOFError(f"stream closed: {e}") from None

    async def half_close(self) -> None:
        """Done writing: the daemon reads what was sent, then ends the call."""
        await self.call.done_writing()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.call.done_writing()
        self.call.cancel()


async def _answer_auth(stream: _ClientStream, creds: tuple[str, str]) -> None:
    from pycontainerd.api.containerd.types.transfer import registry_pb2
    from pycontainerd.core.transfer.streaming import pack

    while True:
        try:
            await stream.recv()
        except (EOFError, asyncio.CancelledError):
            return
        except Exception:  # noqa: BLE001 - the call ended
            return
        await stream.send(
            pack(
                registry_pb2.AuthResponse(
                    authType=registry_pb2.CREDENTIALS, username=creds[0], secret=creds[1]
                )
            )
        )


async def transfer(
    address: str,
    source: Any,
    destination: Any,
    *,
    display: Display | None = None,
    credentials: tuple[str, str] | None = None,
) -> None:
    """One Transfer call with a progress stream (and an auth stream for ``credentials``)."""
    import grpc

    from pycontainerd.api.containerd.services.transfer.v1 import transfer_pb2 as tpb
    from pycontainerd.api.containerd.services.transfer.v1 import transfer_pb2_grpc
    from pycontainerd.cli.pyctr import remote
    from pycontainerd.core.transfer import proto as tproto
    from pycontainerd.core.transfer.streaming import generate_id, type_name

    md = ((namespaces.GRPC_HEADER, namespaces.get() or namespaces.DEFAULT),)
    channel = remote.dial(address)
    streams: list[_ClientStream] = []
    tasks: list[asyncio.Task[Any]] = []
    try:
        progress_id = generate_id("progress")
        pstream = await _ClientStream.open(channel, progress_id, md)
        streams.append(pstream)

        async def read_progress() -> None:
            from pycontainerd.api.containerd.types.transfer import progress_pb2

            while True:
                try:
                    msg = await pstream.recv()
                except (EOFError, grpc.aio.AioRpcError):
                    return
                if display is not None and type_name(msg) == "containerd.types.transfer.Progress":
                    p = progress_pb2.Progress()
                    p.ParseFromString(msg.value)
                    display.add(tproto.progress_from_proto(p))

        tasks.append(asyncio.ensure_future(read_progress()))
        auth_id = ""
        if credentials is not None and isinstance(source, OCIRegistry | ImageStore):
            auth_id = generate_id("creds")
            astream = await _ClientStream.open(channel, auth_id, md)
            streams.append(astream)
            tasks.append(asyncio.ensure_future(_answer_auth(astream, credentials)))
        req = tpb.TransferRequest(
            source=tproto.to_any(
                source, auth_stream=auth_id if isinstance(source, OCIRegistry) else ""
            ),
            destination=tproto.to_any(
                destination, auth_stream=auth_id if isinstance(destination, OCIRegistry) else ""
            ),
            options=tpb.TransferOptions(progress_stream=progress_id),
        )
        try:
            await transfer_pb2_grpc.TransferStub(channel).Transfer(req, metadata=md)
        except grpc.aio.AioRpcError as e:
            raise errdefs.from_grpc(e) from None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(tasks[0]), 5)
    finally:
        for t in tasks:
            t.cancel()
        for s in streams:
            await s.close()
        await channel.close()
        if display is not None:
            display.finish()


def _run(args: argparse.Namespace, coro_fn: Any) -> int:
    async def main() -> int:
        with namespaces.use(args.namespace):
            coro = coro_fn()
            if args.timeout:
                await asyncio.wait_for(coro, args.timeout)
            else:
                await coro
        return 0

    return asyncio.run(main())


def run_pull(args: argparse.Namespace) -> int:
    reg, creds = _registry(args, args.ref)
    plats = [platforms_.parse(p) for p in args.platform]
    if not plats and not args.all_platforms:
        plats = [platforms_.default_spec()]
    unpacks = (
        []
        if args.skip_unpack
        else [
            UnpackConfiguration(platform=p, snapshotter=args.snapshotter)
            for p in (plats or [platforms_.default_spec()])
        ]
    )
    name = reg.reference
    with contextlib.suppress(errdefs.ContainerdError):
        from pycontainerd.core import reference

        name = str(reference.parse_docker_ref(reg.reference))
    store = ImageStore(
        name=name,
        labels=_labels(args.label),
        platforms=[] if args.all_platforms else plats,
        all_metadata=args.all_metadata,
        unpacks=unpacks,
    )
    display = Display(sys.stdout, enabled=not args.no_progress)
    return _run(
        args, lambda: transfer(args.address, reg, store, display=display, credentials=creds)
    )


def run_push(args: argparse.Namespace) -> int:
    reg, creds = _registry(args, args.remote)
    local = args.local or args.remote
    with contextlib.suppress(errdefs.ContainerdError):
        from pycontainerd.core import reference

        local = str(reference.parse_docker_ref(local))
    store = ImageStore(name=local, platforms=[platforms_.parse(p) for p in args.platform])
    display = Display(sys.stdout, enabled=not args.no_progress)
    return _run(
        args, lambda: transfer(args.address, store, reg, display=display, credentials=creds)
    )


def run_tag(args: argparse.Namespace) -> int:
    src = ImageStore(name=args.source)
    rc = 0
    for target in args.targets:
        dst = ImageStore(name=target)
        rc |= _run(args, lambda dst=dst: transfer(args.address, src, dst, display=None))
        print(target)
    return rc
