"""The restart monitor (containerd's ``plugins/restart``): every ``interval`` it looks at the
containers of every namespace that carry ``containerd.io/restart.status`` and brings their
tasks to that status, through the daemon's local services (never the gRPC socket):

* desired ``running``, task not running (none, stopped, created, unknown; paused and pausing
  are left alone) and the restart policy agrees: bump ``containerd.io/restart.count``, remove
  the old task (killing it if it still runs), create a new one with stdout and stderr sent to
  ``containerd.io/restart.loguri`` (no IO without it) and start it;
* desired ``stopped``, task not stopped: kill it with SIGKILL (all processes), wait for the
  exit and delete it.

Namespaces, and the containers of a namespace, are reconciled concurrently. A failure is
logged with the container and namespace and does not stop the others or the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import urllib.parse
from collections.abc import Mapping
from typing import Any

import attrs

from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2
from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.runtime import Status, restart

log = logging.getLogger(__name__)

#: The interval used when the configured one is zero (containerd's default).
DEFAULT_INTERVAL = 10.0
#: How long to wait for a killed task to exit before giving up on it for this round.
KILL_TIMEOUT = 30.0

RUNNING = "running"
STOPPED = "stopped"


@attrs.frozen(kw_only=True)
class Start:
    """Start a new task for ``container_id``, its IO going to ``log_uri`` ("" for none);
    ``count`` is written to the restart count label first when positive."""

    container_id: str
    log_uri: str = ""
    count: int = 0


@attrs.frozen(kw_only=True)
class Stop:
    """Kill and delete the task of ``container_id``."""

    container_id: str


Change = Start | Stop


def status_name(status: Status) -> str:
    """containerd's process status string (``running``, ``stopped``, ...)."""
    return status.name.lower()


def decide(
    container_id: str, labels: Mapping[str, str], status: Status | None, exit_status: int
) -> Change | None:
    """What to do for a container with ``labels`` whose task is in ``status`` (None: no task,
    or its status could not be read) after exiting with ``exit_status``. None: nothing.
    InvalidArgument when the restart policy label is malformed."""
    desired = labels.get(restart.STATUS_LABEL, "")
    if status is not None and status_name(status) == desired:
        return None
    if desired == RUNNING:
        if status in (Status.PAUSED, Status.PAUSING):
            return None
        if not restart.should_restart(exit_status, labels):
            return None
        try:
            count = restart.restart_count(labels)
        except errdefs.InvalidArgument:
            count = 0
        return Start(
            container_id=container_id,
            log_uri=labels.get(restart.LOG_URI_LABEL, ""),
            count=count + 1,
        )
    if desired == STOPPED and status is not None:
        return Stop(container_id=container_id)
    return None


def _terminal(spec: Any) -> bool:
    """Whether the container's OCI spec (a stored ``(type_url, json bytes)``) asks for a
    terminal."""
    if spec is None:
        return False
    try:
        doc = json.loads(spec[1])
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"container spec is not valid JSON: {exc}") from None
    process = doc.get("process") if isinstance(doc, dict) else None
    return bool(isinstance(process, dict) and process.get("terminal"))


def _check_uri(uri: str) -> str:
    try:
        urllib.parse.urlsplit(uri)
    except ValueError as exc:
        raise errdefs.InvalidArgument(
            f"invalid {restart.LOG_URI_LABEL} label {uri!r}: {exc}"
        ) from None
    return uri


@attrs.define(eq=False, kw_only=True)
class Monitor:
    """Reconciles restart-labelled containers with their tasks over the local services."""

    #: the local containers service (``io.containerd.service.v1.containers-service``)
    containers: Any
    #: the local tasks service (``io.containerd.service.v1.tasks-service``)
    tasks: Any
    #: the local namespaces service (``io.containerd.service.v1.namespaces-service``)
    namespaces: Any
    #: seconds between two reconciliations (0: :data:`DEFAULT_INTERVAL`)
    interval: float = DEFAULT_INTERVAL
    #: reconciliations completed so far
    rounds: int = attrs.field(init=False, default=0)

    async def run(self) -> None:
        """Reconcile, then wait ``interval``, until cancelled."""
        interval = self.interval if self.interval > 0 else DEFAULT_INTERVAL
        log.info("restart monitor: reconciling every %ss", interval)
        while True:
            try:
                await self.reconcile()
            except Exception as exc:
                log.error("restart monitor: reconcile failed: %s", exc, exc_info=True)
            self.rounds += 1
            log.debug("restart monitor: round %d done", self.rounds)
            await asyncio.sleep(interval)

    async def reconcile(self) -> None:
        """One pass over every namespace."""
        names = [ns.name for ns in await self.namespaces.list()]
        await asyncio.gather(*(self._reconcile_namespace(name) for name in names))

    async def _reconcile_namespace(self, namespace: str) -> None:
        with namespaces.use(namespace):
            try:
                changes = await self.changes()
            except Exception as exc:
                log.error(
                    "restart monitor: listing containers failed: namespace=%s error=%s",
                    namespace,
                    exc,
                )
                return
            await asyncio.gather(*(self._apply_logged(namespace, c) for c in changes))

    async def changes(self) -> list[Change]:
        """What to do in the current namespace, one change per container at most."""
        found = await self.containers.list([f'labels."{restart.STATUS_LABEL}"'])
        out: list[Change] = []
        for c in found:
            status, exit_status = await self._task_status(c.id)
            try:
                change = decide(c.id, c.labels, status, exit_status)
            except errdefs.InvalidArgument as exc:
                log.error("restart monitor: id=%s namespace=%s error=%s", c.id, _ns(), exc)
                continue
            if isinstance(change, Start) and c.labels.get(restart.LOG_PATH_LABEL):
                log.warning(
                    "restart monitor: id=%s: label %r is no longer supported (since containerd "
                    "2.0); use %r",
                    c.id,
                    restart.LOG_PATH_LABEL,
                    restart.LOG_URI_LABEL,
                )
            if change is not None:
                out.append(change)
        return out

    async def _task_status(self, container_id: str) -> tuple[Status | None, int]:
        try:
            resp = await self.tasks.get(tasks_pb2.GetRequest(container_id=container_id))
        except errdefs.NotFound:
            return None, 0
        except errdefs.ContainerdError as exc:
            log.error(
                "restart monitor: task status failed: id=%s namespace=%s error=%s",
                container_id,
                _ns(),
                exc,
            )
            return None, 0
        return Status(resp.process.status), resp.process.exit_status

    async def _apply_logged(self, namespace: str, change: Change) -> None:
        try:
            await self.apply(change)
        except Exception as exc:
            log.error(
                "restart monitor: %s failed: id=%s namespace=%s error=%s",
                "start" if isinstance(change, Start) else "stop",
                change.container_id,
                namespace,
                exc,
            )

    async def apply(self, change: Change) -> None:
        """Carry out ``change`` in the current namespace."""
        if isinstance(change, Stop):
            await self.kill_task(change.container_id)
            log.info("restart monitor: stopped id=%s namespace=%s", change.container_id, _ns())
            return
        await self.start_task(change)

    async def start_task(self, change: Start) -> None:
        cid = change.container_id
        container = await self.containers.get(cid)
        terminal = _terminal(container.spec)
        uri = _check_uri(change.log_uri) if change.log_uri else ""
        if change.count > 0:
            labelled = attrs.evolve(container, labels={restart.COUNT_LABEL: str(change.count)})
            await self.containers.update(labelled, [f"labels.{restart.COUNT_LABEL}"])
        await self.kill_task(cid)
        await self.tasks.create(
            tasks_pb2.CreateTaskRequest(
                container_id=cid, stdout=uri, stderr=uri, terminal=terminal and bool(uri)
            )
        )
        try:
            resp = await self.tasks.start(tasks_pb2.StartRequest(container_id=cid))
        except Exception:
            with contextlib.suppress(errdefs.ContainerdError):
                await self.tasks.delete(tasks_pb2.DeleteTaskRequest(container_id=cid))
            raise
        log.info(
            "restart monitor: started id=%s namespace=%s pid=%d count=%d",
            cid,
            _ns(),
            resp.pid,
            change.count,
        )

    async def kill_task(self, container_id: str) -> None:
        """Kill (SIGKILL, all processes) the container's task unless it has stopped, wait for
        it to exit, and delete it. Nothing when there is no task."""
        try:
            resp = await self.tasks.get(tasks_pb2.GetRequest(container_id=container_id))
        except errdefs.NotFound:
            return
        if resp.process.status != Status.STOPPED:
            waiter = asyncio.ensure_future(
                self.tasks.wait(tasks_pb2.WaitRequest(container_id=container_id))
            )
            try:
                try:
                    await self.tasks.kill(
                        tasks_pb2.KillRequest(
                            container_id=container_id, signal=signal.SIGKILL, all=True
                        )
                    )
                except errdefs.NotFound:
                    return
                except errdefs.ContainerdError:
                    # gone or dead already: deleting is all that is left to do
                    await self.tasks.delete(tasks_pb2.DeleteTaskRequest(container_id=container_id))
                    return
                try:
                    async with asyncio.timeout(KILL_TIMEOUT):
                        await waiter
                except TimeoutError:
                    raise errdefs.DeadlineExceeded(
                        f"task {container_id!r} did not exit within {KILL_TIMEOUT}s of SIGKILL"
                    ) from None
            finally:
                if not waiter.done():
                    waiter.cancel()
                    await asyncio.gather(waiter, return_exceptions=True)
        try:
            await self.tasks.delete(tasks_pb2.DeleteTaskRequest(container_id=container_id))
        except errdefs.NotFound:
            pass


def _ns() -> str:
    return namespaces.get() or ""
