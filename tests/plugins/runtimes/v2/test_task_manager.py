"""The runtime v2 task manager driving Debian's containerd-shim-runc-v2 (task API v2 over
ttrpc) with real runc: stdio through FIFOs, exit codes, kill, exec, pause/resume, pids,
metrics, a shim killed under a running task, and a daemon restart (a second manager over the
same state) that reconnects to a running shim."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from pycontainerd.api.containerd.events import task_pb2
from pycontainerd.core import errdefs
from pycontainerd.core.runtime import IO, ExecOpts, Status, cio
from pycontainerd.core.runtime import spec as oci

pytestmark = [pytest.mark.root, pytest.mark.integration]

NAMESPACE = "rtv2test"


async def _capture(env, id: str, *, stderr: bool = True) -> cio.Capture:  # noqa: A002
    fifos = cio.new_fifo_set_in_dir(env.fifo_dir(), id, stderr=stderr)
    return await cio.Capture(fifos).start()


def _io(cap: cio.Capture) -> IO:
    return IO(stdout=cap.fifos.stdout, stderr=cap.fifos.stderr)


async def _events_until(sub, topic: str, count: int = 1, timeout: float = 15):
    out = []
    seen = 0
    async with asyncio.timeout(timeout):
        async for env in sub:
            out.append(env)
            if env.topic == topic:
                seen += 1
                if seen == count:
                    return out
    return out


async def test_task_prints_hello_into_stdout_fifo_and_events_come_in_order(runtime_env) -> None:
    env = runtime_env
    tm = env.new_manager()
    sub = env.exchange.subscribe(f'namespace=="{NAMESPACE}"')
    cap = await _capture(env, "hello")
    task = await tm.create("hello", env.opts("hello", ["echo", "hello"], _io(cap)))
    assert env.bundle("hello").joinpath("config.json").is_file()
    assert env.bundle("hello").joinpath("bootstrap.json").is_file()
    assert os.path.islink(env.bundle("hello") / "work")
    pid = await task.pid()
    assert pid > 0
    state = await task.state()
    assert state.status is Status.CREATED and state.pid == pid
    assert await task.start() == pid
    exit_ = await task.wait()
    assert exit_.status == 0 and exit_.timestamp is not None
    await cap.wait(timeout=10)
    assert bytes(cap.stdout) == b"hello\n"
    deleted = await tm.delete("hello")
    assert (deleted.pid, deleted.status) == (pid, 0)
    assert not env.bundle("hello").exists()
    assert not os.path.exists(os.path.join(env.root, NAMESPACE, "hello"))
    with pytest.raises(errdefs.NotFound):
        await tm.get("hello")
    events = await _events_until(sub, "/tasks/delete")
    await sub.aclose()
    await cap.close()
    assert [e.topic for e in events] == [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/delete",
    ]


async def test_exit_code_propagates(runtime_env) -> None:
    env = runtime_env
    tm = env.new_manager()
    task = await tm.create("exit3", env.opts("exit3", ["sh", "-c", "exit 3"]))
    await task.start()
    assert (await task.wait()).status == 3
    state = await task.state()
    assert state.status is Status.STOPPED and state.exit_status == 3
    assert (await tm.delete("exit3")).status == 3


async def test_a_delete_that_lost_the_race_is_not_found_at_once(runtime_env) -> None:
    """Two deletes of one task (ctr's and the restart monitor's): the one whose shim was shut
    down by the other gets NotFound, not a wait for a dead-shim cleanup that never comes."""
    env = runtime_env
    tm = env.new_manager()
    task = await tm.create("twice", env.opts("twice", ["true"]))
    await task.start()
    await task.wait()
    stale = await tm.get("twice")  # what the losing delete looked up before the winner ran
    assert (await tm.delete("twice")).status == 0
    with pytest.raises(errdefs.NotFound):
        await asyncio.wait_for(stale.delete(sandboxed=False, remove_task=lambda: None), 10)
    with pytest.raises(errdefs.NotFound):
        await asyncio.wait_for(tm.delete("twice"), 10)


async def test_a_task_recreated_right_after_delete_gets_a_live_shim(runtime_env) -> None:
    """Delete shuts the task's shim down; a task of the same id created right away must get
    a shim that stays (not join the one on its way out, nor lose its socket to it)."""
    env = runtime_env
    tm = env.new_manager()
    for _ in range(3):
        task = await tm.create("again", env.opts("again", ["true"]))
        await task.start()
        await task.wait()
        await tm.delete("again")
    task = await tm.create("again", env.opts("again", ["sleep", "60"]))
    await task.start()
    address = (env.bundle("again") / "address").read_text().removeprefix("unix://")
    await asyncio.sleep(4)  # the shims deleted above have gone by now
    assert (await task.state()).status is Status.RUNNING
    # the socket is still there: a restarted daemon can reconnect to the shim
    assert os.path.exists(address)
    other = env.new_manager()
    await other.load()
    assert (await (await other.get("again")).state()).status is Status.RUNNING
    await task.kill(signal.SIGKILL)
    await task.wait()
    await tm.delete("again")


async def test_kill_exec_pause_resume_pids_metrics_of_a_running_task(runtime_env) -> None:
    env = runtime_env
    tm = env.new_manager()
    task = await tm.create("sleeper", env.opts("sleeper", ["sleep", "1000"]))
    pid = await task.start()
    assert (await task.state()).status is Status.RUNNING

    # a running task cannot be deleted
    with pytest.raises(errdefs.FailedPrecondition):
        await tm.delete("sleeper")
    assert (await tm.get("sleeper")).id == "sleeper"

    # exec
    cap = await _capture(env, "x1")
    proc_spec = oci.default_spec(NAMESPACE, "sleeper", args=["echo", "x"])["process"]
    proc = await task.exec(
        "x1", ExecOpts(spec=oci.to_any(proc_spec, oci.PROCESS_TYPE_URL), io=_io(cap))
    )
    exec_pid = await proc.start()
    assert exec_pid > 0 and exec_pid != pid
    assert (await proc.wait()).status == 0
    await cap.wait(timeout=10)
    assert bytes(cap.stdout) == b"x\n"
    assert (await proc.delete()).status == 0
    await cap.close()
    with pytest.raises(errdefs.NotFound):
        await task.process("x1")
    with pytest.raises(errdefs.InvalidArgument):
        await task.exec("bad id!", ExecOpts(spec=oci.to_any(proc_spec, oci.PROCESS_TYPE_URL)))

    # pids
    pids = await task.pids()
    assert pid in [p.pid for p in pids]

    # pause / resume
    await task.pause()
    assert (await task.state()).status is Status.PAUSED
    await task.resume()
    assert (await task.state()).status is Status.RUNNING

    # metrics (cgroup stats from the shim)
    stats = await task.stats()
    assert (
        stats is not None
        and stats[0].endswith("io.containerd.cgroups.v1.Metrics")
        or stats[0].endswith("io.containerd.cgroups.v2.Metrics")
    )
    assert stats[1]

    # kill
    await task.kill(signal.SIGKILL)
    exit_ = await task.wait()
    assert exit_.status == 128 + signal.SIGKILL
    assert (await tm.delete("sleeper")).status == 137


async def test_duplicate_task_and_bad_runtime_leave_nothing_behind(runtime_env) -> None:
    env = runtime_env
    tm = env.new_manager()
    await tm.create("dup", env.opts("dup", ["sleep", "1000"]))
    with pytest.raises(errdefs.AlreadyExists):
        await tm.create("dup", env.opts("dup", ["sleep", "1000"]))
    assert (await tm.get("dup")).id == "dup"

    opts = env.opts("nort", ["true"])
    import attrs

    with pytest.raises(errdefs.NotFound, match="containerd-shim-nope-v9"):
        await tm.create("nort", attrs.evolve(opts, runtime="io.containerd.nope.v9"))
    with pytest.raises(errdefs.InvalidArgument, match="invalid runtime name"):
        await tm.create("nort", attrs.evolve(opts, runtime="runc"))
    with pytest.raises(errdefs.InvalidArgument, match="invalid runtime name"):
        await tm.create("nort", attrs.evolve(opts, runtime="bin/shim"))
    # an invalid spec: the shim's create fails, the shim goes away, no bundle is left
    bad = attrs.evolve(opts, spec=oci.to_any({"ociVersion": "1.0.2", "process": {"args": []}}))
    with pytest.raises(errdefs.ContainerdError):
        await tm.create("nort", bad)
    assert not env.bundle("nort").exists()
    assert not os.path.exists(os.path.join(env.root, NAMESPACE, "nort"))
    with pytest.raises(errdefs.InvalidArgument, match="invalid task id"):
        await tm.create("bad/id", opts)


async def test_shim_killed_under_running_task_reports_exit_and_cleans_up(runtime_env) -> None:
    env = runtime_env
    tm = env.new_manager()
    sub = env.exchange.subscribe(f'namespace=="{NAMESPACE}",topic~="/tasks/(exit|delete)"')
    task = await tm.create("crash", env.opts("crash", ["sleep", "1000"]))
    pid = await task.start()
    shim_pid, task_pid = await task.connect()
    assert task_pid == pid
    socket_path = task.shim.params.address.removeprefix("unix://")
    assert os.path.exists(socket_path)
    waiter = asyncio.ensure_future(task.wait())
    await asyncio.sleep(0.2)
    os.kill(shim_pid, signal.SIGKILL)
    exit_ = await asyncio.wait_for(waiter, 30)
    assert exit_.status == 137
    events = await _events_until(sub, "/tasks/delete")
    await sub.aclose()
    assert [e.topic for e in events] == ["/tasks/exit", "/tasks/delete"]
    ev = events[0].event
    if not isinstance(ev, task_pb2.TaskExit):  # forwarded by a shim: a packed Any
        ev = task_pb2.TaskExit.FromString(ev.value)
    assert ev.container_id == "crash" and ev.exit_status == 137
    with pytest.raises(errdefs.NotFound):
        await tm.get("crash")
    assert not env.bundle("crash").exists()
    assert not os.path.exists(socket_path)  # the dead shim's socket is removed
    # the container's process is gone too
    await asyncio.sleep(0.2)
    assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


async def test_restart_reconnects_to_a_running_shim(runtime_env) -> None:
    env = runtime_env
    first = env.new_manager()
    task = await first.create("survivor", env.opts("survivor", ["sleep", "1000"]))
    pid = await task.start()
    # the daemon goes away: connections drop, the shim and the container keep running
    await first.shims.close()
    assert (os.path.exists(f"/proc/{pid}")) and not _is_zombie(pid)

    # a dead bundle beside it (its shim is gone): cleaned up at load
    second = env.new_manager()
    sub = env.exchange.subscribe(f'namespace=="{NAMESPACE}"')
    await second.load()
    again = await second.get("survivor")
    state = await again.state()
    assert state.status is Status.RUNNING and state.pid == pid
    assert [t.id for t in await second.tasks()] == ["survivor"]
    waiter = asyncio.ensure_future(again.wait())
    # (sleep as pid 1 ignores SIGTERM)
    await again.kill(signal.SIGKILL)
    assert (await asyncio.wait_for(waiter, 20)).status == 137
    assert (await second.delete("survivor")).status == 137
    assert not env.bundle("survivor").exists()
    events = await _events_until(sub, "/tasks/delete")
    await sub.aclose()
    # the shim forwards its own events asynchronously: on a loaded machine its /tasks/start
    # may still be in flight when the second manager subscribes; it must come first if it does
    topics = [e.topic for e in events]
    if topics[:1] == ["/tasks/start"]:
        topics = topics[1:]
    assert topics == ["/tasks/exit", "/tasks/delete"]


async def test_restart_cleans_up_bundles_of_dead_shims(runtime_env) -> None:
    env = runtime_env
    first = env.new_manager()
    task = await first.create("gone", env.opts("gone", ["sleep", "1000"]))
    pid = await task.start()
    shim_pid, _ = await task.connect()
    await first.shims.close()
    os.kill(shim_pid, signal.SIGKILL)
    await asyncio.sleep(0.3)
    second = env.new_manager()
    sub = env.exchange.subscribe(f'namespace=="{NAMESPACE}"')
    await second.load()
    with pytest.raises(errdefs.NotFound):
        await second.get("gone")
    assert not env.bundle("gone").exists()
    events = await _events_until(sub, "/tasks/delete")
    await sub.aclose()
    assert [e.topic for e in events] == ["/tasks/exit", "/tasks/delete"]
    await asyncio.sleep(0.2)
    assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid)
