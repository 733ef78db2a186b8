"""The restart monitor's reconciliation over the real metadata stores (containers,
namespaces) with a stand-in tasks service that records what it was asked; the real shims
are in tests/integration/test_restart_monitor.py."""

from __future__ import annotations

import json
import signal

import pytest

from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2
from pycontainerd.core import errdefs, namespaces
from pycontainerd.core.metadata.containers import Container, Runtime
from pycontainerd.core.metadata.metadata import Metadata
from pycontainerd.core.runtime import Status, restart
from pycontainerd.plugins.restart.monitor import Monitor, Start, Stop, decide
from pycontainerd.plugins.services.containers.local import Local as ContainersLocal
from pycontainerd.plugins.services.namespaces.local import Local as NamespacesLocal

RUNNING = {restart.STATUS_LABEL: "running"}
STOPPED = {restart.STATUS_LABEL: "stopped"}


# --- decide: the pure part -----------------------------------------------------------------


@pytest.mark.parametrize("status", [None, Status.STOPPED, Status.CREATED, Status.UNKNOWN])
def test_desired_running_without_a_running_task_starts_one(status):
    labels = {**RUNNING, restart.LOG_URI_LABEL: "file:///l", restart.COUNT_LABEL: "2"}
    assert decide("c", labels, status, 0) == Start(container_id="c", log_uri="file:///l", count=3)


@pytest.mark.parametrize("status", [Status.RUNNING, Status.PAUSED, Status.PAUSING])
def test_desired_running_leaves_running_and_paused_tasks(status):
    assert decide("c", RUNNING, status, 0) is None


def test_the_first_start_counts_one_and_a_bad_count_restarts_from_one():
    assert decide("c", RUNNING, None, 0) == Start(container_id="c", count=1)
    assert decide("c", {**RUNNING, restart.COUNT_LABEL: "x"}, None, 0) == Start(
        container_id="c", count=1
    )


def test_desired_running_follows_the_policy():
    on_failure = {**RUNNING, restart.POLICY_LABEL: "on-failure:1"}
    assert decide("c", on_failure, Status.STOPPED, 1) == Start(container_id="c", count=1)
    assert decide("c", {**on_failure, restart.COUNT_LABEL: "1"}, Status.STOPPED, 1) is None
    assert decide("c", on_failure, Status.STOPPED, 0) is None
    assert decide("c", {**RUNNING, restart.POLICY_LABEL: "no"}, Status.STOPPED, 1) is None
    with pytest.raises(errdefs.InvalidArgument, match="'later' not supported"):
        decide("c", {**RUNNING, restart.POLICY_LABEL: "later"}, Status.STOPPED, 1)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (Status.RUNNING, Stop(container_id="c")),
        (Status.CREATED, Stop(container_id="c")),
        (Status.PAUSED, Stop(container_id="c")),
        (Status.STOPPED, None),
        (None, None),
    ],
)
def test_desired_stopped_kills_a_task_that_is_not_stopped(status, expected):
    assert decide("c", STOPPED, status, 0) == expected


def test_other_desired_statuses_do_nothing():
    assert decide("c", {restart.STATUS_LABEL: "paused"}, Status.RUNNING, 0) is None
    assert decide("c", {restart.STATUS_LABEL: "paused"}, None, 0) is None


# --- the monitor over the metadata stores ---------------------------------------------------


class FakeTasks:
    """Tasks by (namespace, container id): status, exit status, the create request."""

    def __init__(self) -> None:
        self.tasks: dict[tuple[str, str], dict] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.fail_create: set[str] = set()
        self.pid = 100

    def _key(self, cid: str) -> tuple[str, str]:
        return (namespaces.required(), cid)

    def _get(self, cid: str) -> dict:
        try:
            return self.tasks[self._key(cid)]
        except KeyError:
            raise errdefs.NotFound(f"task {cid!r}: not found") from None

    async def get(self, req):
        t = self._get(req.container_id)
        return tasks_pb2.GetResponse(
            process={"pid": t["pid"], "status": int(t["status"]), "exit_status": t["exit"]}
        )

    async def create(self, req):
        self.calls.append((namespaces.required(), "create", req.container_id))
        if req.container_id in self.fail_create:
            raise errdefs.Unavailable(f"shim for {req.container_id!r} did not start")
        if self._key(req.container_id) in self.tasks:
            raise errdefs.AlreadyExists(f"task {req.container_id!r}: already exists")
        self.pid += 1
        self.tasks[self._key(req.container_id)] = {
            "pid": self.pid,
            "status": Status.CREATED,
            "exit": 0,
            "request": req,
        }
        return tasks_pb2.CreateTaskResponse(container_id=req.container_id, pid=self.pid)

    async def start(self, req):
        self.calls.append((namespaces.required(), "start", req.container_id))
        t = self._get(req.container_id)
        t["status"] = Status.RUNNING
        return tasks_pb2.StartResponse(pid=t["pid"])

    async def kill(self, req):
        self.calls.append((namespaces.required(), f"kill {req.signal} {req.all}", req.container_id))
        t = self._get(req.container_id)
        t["status"], t["exit"] = Status.STOPPED, 128 + req.signal

    async def wait(self, req):
        t = self._get(req.container_id)
        assert t["status"] == Status.STOPPED
        return tasks_pb2.WaitResponse(exit_status=t["exit"])

    async def delete(self, req):
        self.calls.append((namespaces.required(), "delete", req.container_id))
        t = self.tasks.pop(self._key(req.container_id), None)
        if t is None:
            raise errdefs.NotFound(f"task {req.container_id!r}: not found")
        return tasks_pb2.DeleteResponse(id=req.container_id, exit_status=t["exit"])

    def exit(self, ns: str, cid: str, status: int) -> None:
        t = self.tasks[(ns, cid)]
        t["status"], t["exit"] = Status.STOPPED, status


@pytest.fixture
async def env(tmp_path):
    md = await Metadata.open(str(tmp_path / "meta.db"))
    tasks = FakeTasks()
    containers = ContainersLocal(md.containers)
    m = Monitor(
        containers=containers, tasks=tasks, namespaces=NamespacesLocal(md.namespaces), interval=1
    )
    yield m, containers, tasks
    await md.close()


def _spec(terminal: bool = False) -> tuple[str, bytes]:
    doc = {"ociVersion": "1.2.0", "process": {"args": ["sh"], "terminal": terminal}}
    return ("types.containerd.io/opencontainers/runtime-spec/1/Spec", json.dumps(doc).encode())


async def _create(containers, ns: str, cid: str, labels: dict, terminal: bool = False) -> None:
    with namespaces.use(ns):
        await containers.create(
            Container(
                id=cid,
                labels=labels,
                runtime=Runtime(name="io.containerd.runc.v2"),
                spec=_spec(terminal),
            )
        )


async def _labels(containers, ns: str, cid: str) -> dict:
    with namespaces.use(ns):
        return (await containers.get(cid)).labels


async def test_starts_labelled_containers_in_every_namespace_with_the_log_uri(env):
    m, containers, tasks = env
    await _create(containers, "default", "web", {**RUNNING, restart.LOG_URI_LABEL: "file:///l"})
    await _create(containers, "other", "tty", RUNNING, terminal=True)
    await _create(containers, "other", "plain", {"a": "b"})
    await m.reconcile()
    web = tasks.tasks[("default", "web")]
    assert web["status"] == Status.RUNNING
    req = web["request"]
    assert (req.stdout, req.stderr, req.stdin, req.terminal) == (
        "file:///l",
        "file:///l",
        "",
        False,
    )
    tty = tasks.tasks[("other", "tty")]["request"]
    # no log URI: no IO, and so no terminal either
    assert (tty.stdout, tty.stderr, tty.terminal) == ("", "", False)
    assert ("other", "plain") not in tasks.tasks
    assert (await _labels(containers, "default", "web"))[restart.COUNT_LABEL] == "1"
    assert (await _labels(containers, "other", "plain")) == {"a": "b"}

    calls = len(tasks.calls)
    await m.reconcile()  # everything is as desired: nothing to do
    assert len(tasks.calls) == calls


async def test_a_terminal_spec_with_a_log_uri_gets_a_terminal(env):
    m, containers, tasks = env
    await _create(
        containers, "default", "tty", {**RUNNING, restart.LOG_URI_LABEL: "binary:///l"}, True
    )
    await m.reconcile()
    assert tasks.tasks[("default", "tty")]["request"].terminal is True


async def test_an_exited_task_is_deleted_and_started_again_counting_restarts(env):
    m, containers, tasks = env
    await _create(containers, "default", "c", RUNNING)
    await m.reconcile()
    first = tasks.tasks[("default", "c")]["pid"]
    tasks.exit("default", "c", 0)
    tasks.calls.clear()
    await m.reconcile()
    assert [c[1:] for c in tasks.calls] == [("delete", "c"), ("create", "c"), ("start", "c")]
    assert tasks.tasks[("default", "c")]["pid"] != first
    assert (await _labels(containers, "default", "c"))[restart.COUNT_LABEL] == "2"


async def test_on_failure_restarts_a_failed_task_up_to_the_maximum(env):
    m, containers, tasks = env
    await _create(containers, "default", "c", {**RUNNING, restart.POLICY_LABEL: "on-failure:1"})
    await m.reconcile()
    assert ("default", "c") not in tasks.tasks  # no task, no failure: nothing to restart
    with namespaces.use("default"):
        await tasks.create(tasks_pb2.CreateTaskRequest(container_id="c"))
    tasks.exit("default", "c", 1)
    await m.reconcile()
    assert tasks.tasks[("default", "c")]["status"] == Status.RUNNING
    assert (await _labels(containers, "default", "c"))[restart.COUNT_LABEL] == "1"
    tasks.exit("default", "c", 1)
    await m.reconcile()
    assert tasks.tasks[("default", "c")]["status"] == Status.STOPPED


async def test_desired_stopped_kills_with_sigkill_and_deletes(env):
    m, containers, tasks = env
    await _create(containers, "default", "c", RUNNING)
    await m.reconcile()
    with namespaces.use("default"):
        c = await containers.get("c")
        await containers.update(
            Container(id="c", labels=STOPPED, runtime=c.runtime, spec=c.spec),
            [f"labels.{restart.STATUS_LABEL}"],
        )
    tasks.calls.clear()
    await m.reconcile()
    assert [c[1:] for c in tasks.calls] == [
        (f"kill {int(signal.SIGKILL)} True", "c"),
        ("delete", "c"),
    ]
    assert ("default", "c") not in tasks.tasks
    tasks.calls.clear()
    await m.reconcile()
    assert tasks.calls == []


async def test_one_containers_failure_does_not_stop_the_others(env, caplog):
    m, containers, tasks = env
    await _create(containers, "default", "broken", RUNNING)
    await _create(containers, "default", "badpolicy", {**RUNNING, restart.POLICY_LABEL: "often"})
    await _create(containers, "default", "good", RUNNING)
    tasks.fail_create.add("broken")
    await m.reconcile()
    assert tasks.tasks[("default", "good")]["status"] == Status.RUNNING
    assert ("default", "broken") not in tasks.tasks
    assert ("default", "badpolicy") not in tasks.tasks
    text = caplog.text
    assert "id=broken" in text and "did not start" in text
    assert "id=badpolicy" in text and "'often' not supported" in text
