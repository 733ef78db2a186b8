"""The real daemon, started as a process, against Debian's containerd ``ctr`` and our ``pyctr``:
plugin statuses, start-up errors, config subcommands, signals, sd_notify, metrics."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
from daemon import Daemon, run_daemon_once

pytestmark = pytest.mark.integration

TEST_MODULES = {"PYCONTAINERD_PLUGIN_MODULES": "testplugins"}


def need_ctr() -> None:
    if not shutil.which("ctr"):
        if os.environ.get("CI"):
            pytest.fail("ctr (Debian package containerd) is not installed")
        pytest.skip("ctr (Debian package containerd) is not installed")


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path / "d", env=TEST_MODULES)
    d.start()
    yield d
    d.stop()


def test_ctr_version_reaches_our_version_and_introspection(daemon):
    need_ctr()
    out = daemon.ctr("version").stdout
    assert "Server:" in out
    assert "Version:  0.1.0" in out.split("Server:")[1]
    assert "UUID:" in out.split("Server:")[1]
    uuid = out.split("UUID:")[1].split()[0]
    # the UUID is persisted under the introspection plugin's root
    assert (daemon.root / "io.containerd.grpc.v1.introspection" / "uuid").read_text() == uuid


def _rows(out: str) -> dict[str, list[str]]:
    rows = {}
    for line in out.splitlines()[1:]:
        cols = line.split()
        rows[f"{cols[0]}.{cols[1]}"] = cols
    return rows


def test_ctr_plugins_ls_shows_ok_skip_and_error(daemon):
    need_ctr()
    res = daemon.ctr("plugins", "ls")
    assert res.stdout.splitlines()[0].split() == ["TYPE", "ID", "PLATFORMS", "STATUS"]
    rows = _rows(res.stdout)
    assert rows["io.containerd.grpc.v1.introspection"][-1] == "ok"
    assert rows["io.containerd.server.v1.grpc"][-1] == "ok"
    assert rows["io.pycontainerd.test.v1.skipper"][-1] == "skip"
    assert rows["io.pycontainerd.test.v1.failer"][-1] == "error"


def test_ctr_plugins_ls_detailed_shows_the_error_with_its_cause(daemon):
    need_ctr()
    out = daemon.ctr("plugins", "ls", "-d", "id==failer").stdout
    assert "io.pycontainerd.test.v1" in out
    assert "failed to open test device: device not ready" in out
    out = daemon.ctr("plugins", "ls", "-d", "id==skipper").stdout
    assert "skip plugin: test plugin cannot work on this host" in out


def test_ctr_plugins_ls_filters_and_bad_filter(daemon):
    need_ctr()
    out = daemon.ctr("plugins", "ls", "-q", "type==io.containerd.server.v1").stdout.split()
    assert out == ["grpc", "ttrpc", "metrics", "debug"]
    res = daemon.ctr("plugins", "ls", 'type==io.containerd.server.v1,id=="grpc"')
    assert _rows(res.stdout).keys() == {"io.containerd.server.v1.grpc"}
    bad = daemon.ctr("plugins", "ls", "id~=[", check=False)
    assert bad.returncode != 0
    assert "invalid argument" in bad.stderr.lower() or "InvalidArgument" in bad.stderr


def test_pyctr_version_and_plugins_ls(daemon):
    out = daemon.pyctr("version").stdout
    assert "Server:" in out and "0.1.0" in out
    rows = _rows(daemon.pyctr("plugins", "ls").stdout)
    assert rows["io.pycontainerd.test.v1.failer"][-1] == "error"
    assert rows["io.pycontainerd.test.v1.skipper"][-1] == "skip"
    detailed = daemon.pyctr("plugins", "ls", "-d", "id==failer").stdout
    assert "device not ready" in detailed and "UNKNOWN" in detailed
    assert daemon.pyctr("plugins", "ls", "-q", "id==version").stdout.split() == ["version"]
    bad = daemon.pyctr("plugins", "ls", "id~=[", check=False)
    assert bad.returncode == 1 and "parse error" in bad.stderr


def test_plugin_config_section_reaches_the_plugin(tmp_path):
    config = textwrap.dedent("""
        version = 4
        [plugins."io.pycontainerd.test.v1.failer"]
          fail = false
    """)
    with Daemon(tmp_path / "d", config=config, env=TEST_MODULES) as d:
        rows = _rows(d.pyctr("plugins", "ls").stdout)
        assert rows["io.pycontainerd.test.v1.failer"][-1] == "ok"


def test_disabled_plugins_are_absent(tmp_path):
    config = 'version = 4\ndisabled_plugins = ["io.pycontainerd.test.v1.failer"]\n'
    with Daemon(tmp_path / "d", config=config, env=TEST_MODULES) as d:
        rows = _rows(d.pyctr("plugins", "ls").stdout)
        assert "io.pycontainerd.test.v1.failer" not in rows
        assert "io.pycontainerd.test.v1.skipper" in rows


def test_unknown_key_is_a_warning_and_start_continues(tmp_path):
    config = textwrap.dedent("""
        version = 4
        [plugins."io.containerd.server.v1.grpc"]
          max_recv_mesage_size = 10
    """)
    with Daemon(tmp_path / "d", config=config) as d:
        assert 'plugins."io.containerd.server.v1.grpc".max_recv_mesage_size' in d.log()
        d.pyctr("version")


@pytest.mark.parametrize(
    "config, env, expected",
    [
        ("version = 4\nroot = \n", {}, "config.toml:2:"),
        ("version = 5\n", {}, "newer"),
        ('version = 4\ndisabled_plugins = ["cri"]\n', {}, "invalid disabled plugin URI 'cri'"),
        (
            'version = 4\nrequired_plugins = ["io.pycontainerd.test.v1.failer"]\n',
            TEST_MODULES,
            "load required plugin io.pycontainerd.test.v1.failer: failed to open test device",
        ),
        (
            'version = 4\nrequired_plugins = ["io.containerd.grpc.v1.version"]\n'
            'disabled_plugins = ["io.containerd.grpc.v1.version"]\n',
            {},
            "disabled",
        ),
        (
            'version = 4\nrequired_plugins = ["io.containerd.grpc.v1.nosuch"]\n',
            {},
            "not registered",
        ),
        ("version = 4\n", {"PYCONTAINERD_PLUGIN_MODULES": "cycleplugins"}, "cycle"),
        (
            "version = 4\n",
            {"PYCONTAINERD_PLUGIN_MODULES": "no_such_module_xyz"},
            "no_such_module_xyz",
        ),
    ],
    ids=[
        "malformed-toml",
        "newer-version",
        "short-name-v4",
        "required-fails",
        "required-disabled",
        "required-unknown",
        "cycle",
        "missing-module",
    ],
)
def test_startup_errors_exit_nonzero_with_a_clear_message(tmp_path, config, env, expected):
    res = run_daemon_once(tmp_path / "d", config, env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    assert expected in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "d" / "pycontainerd.sock").exists()


def _fake_dist(site: Path, dist: str, module: str, ep: str) -> None:
    (site / f"{module}.py").write_text(
        textwrap.dedent("""
        from pycontainerd.core.plugin import Registration, hookimpl
        async def _init(ic):
            return object()
        @hookimpl
        def pycontainerd_registrations():
            return [Registration(type="io.pycontainerd.dup.v1", id="same", init=_init)]
    """)
    )
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[pycontainerd.plugins]\n{ep} = {module}\n")


def test_duplicate_uri_from_two_entry_points_names_both(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _fake_dist(site, "dupone", "dup_one_mod", "one")
    _fake_dist(site, "duptwo", "dup_two_mod", "two")
    res = run_daemon_once(tmp_path / "d", "version = 4\n", env={"PYTHONPATH": str(site)})
    assert res.returncode == 1
    assert "io.pycontainerd.dup.v1.same" in res.stderr
    assert "dupone 1.0" in res.stderr and "duptwo 1.0" in res.stderr


def test_sigterm_stops_gracefully_and_removes_the_socket(tmp_path):
    d = Daemon(tmp_path / "d").start()
    assert os.path.exists(d.address)
    import stat

    st = os.stat(d.address)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert stat.S_IMODE(os.stat(d.address + ".ttrpc").st_mode) == 0o660
    assert d.stop() == 0
    assert not os.path.exists(d.address)
    log = d.log()
    assert "received SIGTERM" in log and "pycontainerd stopped" in log


def test_sd_notify_ready_is_sent(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        s.settimeout(30)
        with Daemon(tmp_path / "d", env={"NOTIFY_SOCKET": path}):
            assert s.recv(100) == b"READY=1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_server_serves_prometheus_text(tmp_path):
    port = _free_port()
    config = (
        f'version = 4\n[plugins."io.containerd.server.v1.metrics"]\naddress = "127.0.0.1:{port}"\n'
    )
    with Daemon(tmp_path / "d", config=config) as d:
        d.pyctr("version")
        body = (
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/metrics", timeout=10)
            .read()
            .decode()
        )
    assert "process_resident_memory_bytes" in body
    assert (
        'grpc_server_handled_total{grpc_service="containerd.services.version.v1.Version",'
        'grpc_method="Version",grpc_code="OK"}' in body
    )
    assert (
        'pycontainerd_plugin_status{type="io.containerd.server.v1",id="metrics",status="ok"} 1'
        in body
    )


def _config_cmd(*args: str, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "pycontainerd.cli.daemon", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_config_default_is_valid_toml_that_round_trips(tmp_path):
    out = _config_cmd("config", "default")
    data = tomllib.loads(out)
    assert data["version"] == 4
    assert (
        data["plugins"]["io.containerd.server.v1.grpc"]["address"]
        == "/run/pycontainerd/pycontainerd.sock"
    )
    path = tmp_path / "config.toml"
    path.write_text(out)
    assert tomllib.loads(_config_cmd("--config", str(path), "config", "dump")) == data


def test_config_migrate_moves_v2_server_tables_into_server_plugins(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        textwrap.dedent("""
        version = 2
        root = "/var/lib/x"
        [grpc]
          address = "/run/x/x.sock"
          max_recv_message_size = 1000
        [debug]
          address = "/run/x/debug.sock"
          level = "debug"
        [metrics]
          address = "127.0.0.1:1338"
    """)
    )
    data = tomllib.loads(_config_cmd("--config", str(path), "config", "migrate"))
    assert data["version"] == 4
    assert data["root"] == "/var/lib/x"
    assert data["plugins"]["io.containerd.server.v1.grpc"]["address"] == "/run/x/x.sock"
    assert data["plugins"]["io.containerd.server.v1.grpc"]["max_recv_message_size"] == 1000
    assert data["plugins"]["io.containerd.server.v1.debug"]["address"] == "/run/x/debug.sock"
    assert data["plugins"]["io.containerd.server.v1.metrics"]["address"] == "127.0.0.1:1338"
    assert data["debug"]["level"] == "debug"


def test_v2_config_starts_and_reports_a_deprecation(tmp_path):
    with Daemon(tmp_path / "d", config='version = 2\n[debug]\n  level = "info"\n') as d:
        res = d.pyctr("version")
        assert "0.1.0" in res.stdout
        # Introspection.Server() carries the config deprecation; pyctr prints it like ctr 2.x
        assert "DEPRECATION: io.containerd.deprecation/config-version" in res.stderr, res.stderr
        assert "version 2" in res.stderr


def test_sigusr1_dumps_task_and_thread_stacks_and_keeps_serving(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    d = Daemon(tmp_path / "d", env={"TMPDIR": str(tmp)}).start()
    try:
        d.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not list(tmp.glob("pycontainerd.*.stacks.log")):
            time.sleep(0.1)
        [path] = tmp.glob("pycontainerd.*.stacks.log")
        text = path.read_text()
        # the daemon's own background tasks and the main thread, with their frames
        assert "task 'gc-scheduler'" in text and "scheduler.py" in text
        assert "MainThread" in text
        assert "stack dump written to" in d.log()
        assert d.pyctr("version").returncode == 0
    finally:
        assert d.stop() == 0


def test_second_signal_forces_exit(tmp_path):
    # a plugin whose close never returns would block a graceful stop; the second signal wins
    d = Daemon(tmp_path / "d").start()
    d.proc.send_signal(signal.SIGINT)
    d.proc.send_signal(signal.SIGINT)
    assert d.proc.wait(15) in (0, 1)


def _publish_cmd(daemon: Daemon) -> list[str]:
    """The shims' legacy event path: ``pycontainerd --address SOCK publish`` for a TaskExit."""
    cmd = [sys.executable, "-m", "pycontainerd.cli.daemon", "--address", daemon.address]
    return [*cmd, "publish", "--namespace", "testns", "--topic", "/tasks/exit"]


def test_publish_subcommand_delivers_an_event_to_subscribers(daemon):
    """The legacy shim path: ``pycontainerd --address SOCK publish`` with an Any on stdin."""
    import grpc
    from google.protobuf import any_pb2

    from pycontainerd.api.containerd.events import task_pb2
    from pycontainerd.api.containerd.services.events.v1 import events_pb2, events_pb2_grpc

    event = any_pb2.Any()
    event.Pack(task_pb2.TaskExit(container_id="c1", exit_status=7), type_url_prefix="")
    with grpc.insecure_channel(f"unix:{daemon.address}") as ch:
        stream = events_pb2_grpc.EventsStub(ch).Subscribe(
            events_pb2.SubscribeRequest(filters=['topic=="/tasks/exit"']), timeout=30
        )
        res = subprocess.run(
            _publish_cmd(daemon),
            input=event.SerializeToString(),
            capture_output=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        envelope = next(iter(stream))
        stream.cancel()
    assert envelope.namespace == "testns" and envelope.topic == "/tasks/exit"
    got = task_pb2.TaskExit()
    assert envelope.event.Unpack(got) and got.exit_status == 7


def test_publish_subcommand_refuses_garbage(daemon):
    res = subprocess.run(
        _publish_cmd(daemon),
        input=b"\xff\xff",
        capture_output=True,
        timeout=60,
    )
    assert res.returncode == 1 and b"failed to read event payload" in res.stderr
