"""Interop with a real Go client: kubectl (client-go) exec and port-forward.

kubectl talks to an apiserver, so the test puts a minimal one in front of the streaming server:
it answers the pod GET, and for ``/exec`` and ``/portforward`` it does what kubelet and the
apiserver do together — turns the query into a CRI request, gets a streaming URL, and relays
the upgraded connection to it byte for byte. The protocols on the wire are kubectl's own:
WebSocket v5 (kubectl's default), SPDY when ``KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false``, and
SPDY ``portforward.k8s.io`` when ``KUBECTL_PORT_FORWARD_WEBSOCKETS=false``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import urllib.parse
from collections.abc import AsyncIterator

import pytest

from pycontainerd.core.streaming.server import StreamServer
from pycontainerd.core.streaming.types import ExecRequest, PortForwardRequest

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web", "namespace": "default", "uid": "1234"},
    "spec": {"containers": [{"name": "c1", "image": "busybox"}]},
    "status": {"phase": "Running"},
}

# just enough discovery for kubectl to find pods and their subresources
DISCOVERY = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "pods",
                "singularName": "pod",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["get", "list"],
                "shortNames": ["po"],
            },
            {
                "name": "pods/exec",
                "singularName": "",
                "namespaced": True,
                "kind": "PodExecOptions",
                "verbs": ["create", "get"],
            },
            {
                "name": "pods/portforward",
                "singularName": "",
                "namespaced": True,
                "kind": "PodPortForwardOptions",
                "verbs": ["create", "get"],
            },
        ],
    },
}


def _truthy(values: list[str]) -> bool:
    return bool(values) and values[0].lower() in ("1", "true")


class FakeAPIServer:
    def __init__(self, streaming: StreamServer) -> None:
        self.streaming = streaming
        self.seen: list[str] = []
        self.upgrades: list[str] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                u = urllib.parse.urlsplit(target)
                self.seen.append(f"{method} {u.path}")
                parts = u.path.strip("/").split("/")
                if method == "GET" and u.path in DISCOVERY:
                    self._reply(writer, 200, json.dumps(DISCOVERY[u.path]).encode())
                    await writer.drain()
                    continue
                # /api/v1/namespaces/<ns>/pods/<name>[/<sub>]
                if parts[:3] == ["api", "v1", "namespaces"] and len(parts) >= 6:
                    sub = parts[6] if len(parts) > 6 else ""
                    if not sub and method == "GET":
                        self._reply(writer, 200, json.dumps(POD).encode())
                        await writer.drain()
                        continue
                    if sub in ("exec", "portforward"):
                        self.upgrades.append(headers.get("upgrade", "").lower())
                        await self._relay(sub, u.query, head, method, reader, writer)
                        return
                self._reply(writer, 404, b'{"kind":"Status","status":"Failure","code":404}')
                await writer.drain()
        finally:
            writer.close()

    @staticmethod
    def _reply(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    async def _relay(
        self,
        sub: str,
        query: str,
        head: bytes,
        method: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        q = urllib.parse.parse_qs(query)
        if sub == "exec":
            url = self.streaming.get_exec(
                ExecRequest(
                    container_id=q.get("container", ["c1"])[0],
                    cmd=q.get("command", []),
                    stdin=_truthy(q.get("stdin", [])),
                    stdout=_truthy(q.get("stdout", [])),
                    stderr=_truthy(q.get("stderr", [])),
                    tty=_truthy(q.get("tty", [])),
                )
            )
        else:
            url = self.streaming.get_port_forward(PortForwardRequest(pod_sandbox_id="web"))
        target = urllib.parse.urlsplit(url)
        up_r, up_w = await asyncio.open_connection(target.hostname, target.port)
        first, rest = head.split(b"\r\n", 1)
        up_w.write(f"{method} {target.path}?{query} HTTP/1.1\r\n".encode() + rest)

        async def splice(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(splice(reader, up_w), splice(up_r, writer))


@pytest.fixture
async def apiserver(server: StreamServer) -> AsyncIterator[FakeAPIServer]:
    api = FakeAPIServer(server)
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


async def kubectl(
    api: FakeAPIServer, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> tuple[int, bytes, bytes]:
    assert KUBECTL is not None
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "KUBECONFIG": "/dev/null",
        **(env or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        f"--server=http://127.0.0.1:{api.port}",
        "--namespace=default",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=full_env,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out, err


SPDY_ENV = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}


@pytest.mark.parametrize("env", [None, SPDY_ENV], ids=["websocket-v5", "spdy"])
async def test_kubectl_exec_separates_stdout_and_stderr(
    apiserver: FakeAPIServer, env: dict[str, str] | None
) -> None:
    code, out, err = await kubectl(
        apiserver,
        "exec",
        "web",
        "-c",
        "c1",
        "--",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2",
        env=env,
    )
    assert code == 0, err
    assert out == b"to-out\n"
    assert b"to-err\n" in err
    assert apiserver.upgrades == (["spdy/3.1"] if env else ["websocket"])


@pytest.mark.parametrize("env", [None, SPDY_ENV], ids=["websocket-v5", "spdy"])
async def test_kubectl_exec_reports_exit_code(
    apiserver: FakeAPIServer, env: dict[str, str] | None
) -> None:
    code, out, err = await kubectl(apiserver, "exec", "web", "--", "sh", "-c", "exit 7", env=env)
    assert code == 7, err
    assert b"command terminated with exit code 7" in err


@pytest.mark.parametrize("env", [None, SPDY_ENV], ids=["websocket-v5", "spdy"])
async def test_kubectl_exec_passes_stdin_until_eof(
    apiserver: FakeAPIServer, env: dict[str, str] | None
) -> None:
    code, out, err = await kubectl(
        apiserver,
        "exec",
        "-i",
        "web",
        "--",
        "sh",
        "-c",
        "cat; echo done",
        env=env,
        stdin=b"hello\n",
    )
    assert code == 0, err
    assert out == b"hello\ndone\n"


async def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "env",
    [{"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}, None],
    ids=["spdy", "default"],
)
async def test_kubectl_port_forward_reaches_the_port(
    apiserver: FakeAPIServer, echo_port: int, env: dict[str, str] | None
) -> None:
    assert KUBECTL is not None
    local = await _free_port()
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        f"--server=http://127.0.0.1:{apiserver.port}",
        "--namespace=default",
        "port-forward",
        "pod/web",
        f"{local}:{echo_port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": "/tmp",
            "KUBECONFIG": "/dev/null",
            **(env or {}),
        },
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert b"Forwarding from" in line, line
        for round_ in range(2):  # two forwarded connections over one upgraded connection
            r, w = await asyncio.open_connection("127.0.0.1", local)
            msg = f"ping {round_}\n".encode()
            w.write(msg)
            await w.drain()
            assert await asyncio.wait_for(r.readexactly(len(msg)), 10) == msg
            w.close()
    finally:
        proc.terminate()
        _, err = await proc.communicate()
    assert b"error" not in err.lower(), err
    # kubectl's default tries WebSocket tunnelling first (an apiserver feature kubelet never
    # serves) and falls back to SPDY, as it does against kubelet's server
    assert apiserver.upgrades[-1] == "spdy/3.1"
