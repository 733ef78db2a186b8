"""A small CRI client for tests: the generated ``runtime.v1`` stubs on a daemon's gRPC socket,
with short helpers for the calls tests make most, synchronous (``CRIClient``) or asyncio
(``AsyncCRIClient``). No namespace header: the CRI pins ``k8s.io`` itself, as for kubelet.

    with CRIClient(daemon.address) as cri:
        image_id = cri.pull("127.0.0.1:5000/busybox:latest")
        assert cri.image_status(image_id).image.id == image_id
"""

from __future__ import annotations

from typing import Any

import grpc

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as pb
from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2_grpc as pb_grpc

__all__ = ["AsyncCRIClient", "CRIClient", "pb"]


def _target(address: str) -> str:
    return address if address.startswith("unix:") else f"unix://{address}"


def auth_config(**kw: str) -> Any:
    """``runtime.v1.AuthConfig(username=..., password=..., auth=..., server_address=...)``."""
    return pb.AuthConfig(**kw)


def _pull_request(
    image: str, auth: Any = None, sandbox_config: Any = None, runtime_handler: str = ""
) -> Any:
    req = pb.PullImageRequest(image=pb.ImageSpec(image=image, runtime_handler=runtime_handler))
    if auth is not None:
        req.auth.CopyFrom(auth)
    if sandbox_config is not None:
        req.sandbox_config.CopyFrom(sandbox_config)
    return req


class CRIClient:
    """Blocking client; ``runtime`` and ``images`` are the raw stubs."""

    def __init__(self, address: str, timeout: float = 120.0) -> None:
        self.channel = grpc.insecure_channel(_target(address))
        self.runtime = pb_grpc.RuntimeServiceStub(self.channel)
        self.images = pb_grpc.ImageServiceStub(self.channel)
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> CRIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # runtime
    def wait_ready(self, timeout: float = 30.0) -> CRIClient:
        """Wait until the daemon answers Version (it has just been started)."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            try:
                self.version()
                return self
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def version(self) -> Any:
        return self.runtime.Version(pb.VersionRequest(), timeout=self.timeout)

    def status(self, verbose: bool = False) -> Any:
        return self.runtime.Status(pb.StatusRequest(verbose=verbose), timeout=self.timeout)

    def runtime_config(self) -> Any:
        return self.runtime.RuntimeConfig(pb.RuntimeConfigRequest(), timeout=self.timeout)

    def update_runtime_config(self, pod_cidr: str) -> Any:
        req = pb.UpdateRuntimeConfigRequest(
            runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr=pod_cidr))
        )
        return self.runtime.UpdateRuntimeConfig(req, timeout=self.timeout)

    # images
    def pull(self, image: str, **kw: Any) -> str:
        """PullImage; returns the image ref (the image ID)."""
        return str(
            self.images.PullImage(_pull_request(image, **kw), timeout=self.timeout).image_ref
        )

    def image_status(self, image: str, verbose: bool = False) -> Any:
        req = pb.ImageStatusRequest(image=pb.ImageSpec(image=image), verbose=verbose)
        return self.images.ImageStatus(req, timeout=self.timeout)

    def list_images(self, image: str = "") -> list[Any]:
        req = pb.ListImagesRequest()
        if image:
            req.filter.image.image = image
        return list(self.images.ListImages(req, timeout=self.timeout).images)

    def stream_images(self) -> list[Any]:
        out: list[Any] = []
        for resp in self.images.StreamImages(pb.StreamImagesRequest(), timeout=self.timeout):
            out.extend(resp.images)
        return out

    def remove(self, image: str) -> Any:
        req = pb.RemoveImageRequest(image=pb.ImageSpec(image=image))
        return self.images.RemoveImage(req, timeout=self.timeout)

    def image_fs_info(self) -> Any:
        return self.images.ImageFsInfo(pb.ImageFsInfoRequest(), timeout=self.timeout)


class AsyncCRIClient:
    """grpc.aio client over an existing channel (for in-process daemons)."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float = 120.0) -> None:
        self.runtime = pb_grpc.RuntimeServiceStub(channel)
        self.images = pb_grpc.ImageServiceStub(channel)
        self.timeout = timeout

    async def version(self) -> Any:
        return await self.runtime.Version(pb.VersionRequest(), timeout=self.timeout)

    async def status(self, verbose: bool = False) -> Any:
        return await self.runtime.Status(pb.StatusRequest(verbose=verbose), timeout=self.timeout)

    async def pull(self, image: str, **kw: Any) -> str:
        resp = await self.images.PullImage(_pull_request(image, **kw), timeout=self.timeout)
        return str(resp.image_ref)

    async def image_status(self, image: str, verbose: bool = False) -> Any:
        req = pb.ImageStatusRequest(image=pb.ImageSpec(image=image), verbose=verbose)
        return await self.images.ImageStatus(req, timeout=self.timeout)

    async def list_images(self, image: str = "") -> list[Any]:
        req = pb.ListImagesRequest()
        if image:
            req.filter.image.image = image
        return list((await self.images.ListImages(req, timeout=self.timeout)).images)

    async def remove(self, image: str) -> Any:
        req = pb.RemoveImageRequest(image=pb.ImageSpec(image=image))
        return await self.images.RemoveImage(req, timeout=self.timeout)

    async def image_fs_info(self) -> Any:
        return await self.images.ImageFsInfo(pb.ImageFsInfoRequest(), timeout=self.timeout)


# --- a daemon with the CRI on a test network --------------------------------------------

_RT = 'plugins."io.containerd.cri.v1.runtime"'


def daemon_env() -> dict[str, str]:
    """The environment for a test daemon: PATH with the sbin directories (iptables, ...)."""
    import os

    import peers

    return {"PATH": ":".join(filter(None, [os.environ.get("PATH"), *peers.SBIN_DIRS]))}


def daemon_config(
    base: Any,
    network: Any,
    registry: Any,
    pause_ref: str,
    *,
    runtime: str = "",
    runtimes: dict[str, str] | None = None,
    extra: str = "",
) -> str:
    """A version-4 config with the CRI on ``network`` (a ``cni.TestNetwork``), pulling from
    the test ``registry`` over plain HTTP (a hosts.toml under ``base/certs.d``) and the pause
    image ``pause_ref`` pinned. ``runtime``: more lines for the runtime table; ``runtimes``:
    handler -> the lines of its table (default: ``runc`` with containerd's shim); ``extra``:
    more tables at the end. ``restrict_oom_score_adj`` is on: the test host may not lower
    oom_score_adj below the daemon's own."""
    certs = base / "certs.d" / registry.host
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "hosts.toml").write_text(
        f'server = "http://{registry.host}"\n'
        f'[host."http://{registry.host}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    handlers = runtimes or {"runc": 'runtime_type = "io.containerd.runc.v2"'}
    tables = "".join(
        f"[{_RT}.containerd.runtimes.{name}]\n"
        + "".join(f"  {line.strip()}\n" for line in body.strip().splitlines())
        for name, body in handlers.items()
    )
    lines = "".join(f"  {line.strip()}\n" for line in runtime.strip().splitlines())
    return f"""version = 4

[{_RT}]
  restrict_oom_score_adj = true
{lines}[{_RT}.cni]
  bin_dirs = ["{network.bin_dir}"]
  conf_dir = "{network.conf_dir}"
{tables}
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{pause_ref}"
[plugins."io.containerd.cri.v1.images".registry]
  config_path = "{base / "certs.d"}"
{extra}"""


class CRIDaemon:
    """A test daemon (``self.daemon``, a ``daemon.Daemon``) and a CRI client of it; test
    modules subclass it and add what their tests need."""

    daemon: Any
    cri: CRIClient | None = None

    def start(self) -> Any:
        self.daemon.start(timeout=60)
        self.cri = CRIClient(self.daemon.address, timeout=120)
        self.cri.wait_ready()
        return self

    def restart(self) -> None:
        """SIGTERM the daemon and start it again on the same root and state."""
        assert self.cri is not None
        self.cri.close()
        assert self.daemon.stop() == 0, self.daemon.log()[-3000:]
        self.start()

    @property
    def rs(self) -> Any:
        assert self.cri is not None
        return self.cri.runtime
