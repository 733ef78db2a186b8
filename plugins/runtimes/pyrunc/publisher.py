"""Task events from the shim to the daemon, in order.

Events are queued and sent one at a time by one task, so they arrive in the order the shim
produced them (create -> start -> exit -> delete). Each goes as an ``Envelope`` to
``containerd.services.events.ttrpc.v1.Events/Forward`` on ``TTRPC_ADDRESS``, reconnecting and
retrying a few times; when that address cannot be reached at all, the legacy path is used:
``<publish-binary> --address <address> publish --namespace <ns> --topic <topic>`` with the
``Any`` on stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import time
from typing import Any

import attrs
from google.protobuf import any_pb2, empty_pb2, timestamp_pb2

from pycontainerd.api.containerd.services.ttrpc.events.v1 import events_pb2 as ttrpc_events_pb2
from pycontainerd.api.containerd.types import event_pb2
from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.ttrpc import Client

log = logging.getLogger(__name__)

EVENTS_SERVICE = "containerd.services.events.ttrpc.v1.Events"
ATTEMPTS = 5
RETRY_DELAY = 0.1


def pack(event: Any) -> any_pb2.Any:
    """containerd's typeurl form for protobuf events: the full message name, no prefix."""
    return any_pb2.Any(type_url=event.DESCRIPTOR.full_name, value=event.SerializeToString())


def timestamp(when: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(when * 1e9))
    return ts


@attrs.define(eq=False)
class Publisher:
    ttrpc_address: str = ""
    address: str = ""  # the daemon's grpc address, for the legacy publish binary
    publish_binary: str = ""
    _queue: asyncio.Queue[event_pb2.Envelope | None] = attrs.field(
        factory=asyncio.Queue, init=False
    )
    _task: asyncio.Task[None] | None = attrs.field(default=None, init=False)
    _client: Client | None = attrs.field(default=None, init=False)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="shim publisher")

    def publish(self, namespace: str, topic: str, event: Any) -> None:
        """Queue ``event`` (a protobuf message) under ``topic``; never blocks."""
        env = event_pb2.Envelope(
            timestamp=timestamp(time.time()), namespace=namespace, topic=topic, event=pack(event)
        )
        self._queue.put_nowait(env)

    async def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (for up to ``timeout`` seconds), then stop."""
        self._queue.put_nowait(None)
        if self._task is not None:
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self._task)
            except TimeoutError:
                log.warning("publisher: %d events not sent at exit", self._queue.qsize())
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _run(self) -> None:
        while True:
            env = await self._queue.get()
            if env is None:
                return
            try:
                await self._send(env)
            except Exception as e:  # noqa: BLE001 - a lost event must not stop the others
                log.error("failed to publish event topic=%s error=%s", env.topic, e)

    async def _send(self, env: event_pb2.Envelope) -> None:
        last: Exception | None = None
        if self.ttrpc_address:
            for attempt in range(ATTEMPTS):
                try:
                    await self._forward(env)
                    return
                except errdefs.NotFound as e:  # no socket there at all: no use retrying
                    last = e
                    break
                except (errdefs.Unavailable, errdefs.DeadlineExceeded) as e:
                    last = e
                    if self._client is not None:
                        await self._client.close()
                        self._client = None
                    await asyncio.sleep(RETRY_DELAY * (attempt + 1))
        if self.publish_binary:
            await self._publish_binary(env)
            return
        raise last or errdefs.Unavailable("no event address (TTRPC_ADDRESS) or publish binary")

    async def _forward(self, env: event_pb2.Envelope) -> None:
        if self._client is None or self._client.closed:
            self._client = await Client.connect(self.ttrpc_address, timeout=5)
        with namespaces.use(env.namespace):
            await self._client.call(
                EVENTS_SERVICE,
                "Forward",
                ttrpc_events_pb2.ForwardRequest(envelope=env),
                empty_pb2.Empty,
                timeout=10,
            )

    async def _publish_binary(self, env: event_pb2.Envelope) -> None:
        argv = [self.publish_binary, "--address", self.address, "publish"]
        argv += ["--namespace", env.namespace, "--topic", env.topic]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, err = await proc.communicate(env.event.SerializeToString())
        if proc.returncode != 0:
            raise errdefs.Unknown(
                f"{self.publish_binary} publish {env.topic} failed: "
                f"{err.decode(errors='replace').strip()}: exit status {proc.returncode}"
            )
