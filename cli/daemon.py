"""``pycontainerd``: the daemon (no subcommand), ``config default|dump|migrate``, ``publish``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

import pycontainerd

log = logging.getLogger("pycontainerd")

GRPC_SERVER = "io.containerd.server.v1.grpc"
TTRPC_SERVER = "io.containerd.server.v1.ttrpc"


class Fatal(Exception):
    """Start-up cannot go on; the message is printed and the exit code is 1."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pycontainerd",
        description="containerd's architecture in Python: a plugin-based container runtime daemon",
    )
    p.add_argument(
        "-c",
        "--config",
        help="path to the configuration file (default /etc/pycontainerd/config.toml)",
    )
    p.add_argument("-a", "--address", help="address for the gRPC server (a unix socket path)")
    p.add_argument("--root", help="root directory for persistent data")
    p.add_argument("--state", help="state directory for execution state")
    p.add_argument("-l", "--log-level", help="debug, info, warn, error (default info)")
    p.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command")
    cfg = sub.add_parser("config", help="information on the configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    cfg_sub.add_parser("default", help="print the default configuration")
    cfg_sub.add_parser("dump", help="print the effective configuration (after imports)")
    cfg_sub.add_parser("migrate", help="print the configuration migrated to the current version")
    pub = sub.add_parser(
        "publish",
        help="publish an event (a protobuf Any on stdin) to the "
        "daemon at --address; the legacy path shims use",
    )
    from pycontainerd.plugins.runtimes.v2 import publish

    publish.add_arguments(pub)
    return p


def _setup_logging(level: str | None) -> None:
    name = (level or "info").upper()
    name = {"WARN": "WARNING", "TRACE": "DEBUG", "FATAL": "CRITICAL", "PANIC": "CRITICAL"}.get(
        name, name
    )
    if name not in logging.getLevelNamesMapping():
        raise Fatal(f"invalid log level {level!r}")
    logging.basicConfig(
        level=name,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    """Config and registrations, with flags applied. Everything that can be wrong is Fatal."""
    from pycontainerd.core import config as config_
    from pycontainerd.core.plugin import loader
    from pycontainerd.plugins import builtins

    loaded = config_.load(args.config)
    from pycontainerd.plugins.snapshotters.proxy.plugin import registrations_from_config

    registry = loader.discover(
        builtins.modules(), autoload=not loaded.config.disable_plugin_autoload
    )
    registry.register_all(registrations_from_config(loaded.config.proxy_plugins))
    config_.migrate(loaded, registry)
    return loaded, registry


def _settings(args: argparse.Namespace, loaded: Any) -> Any:
    from pycontainerd.core import config as config_
    from pycontainerd.core.server.server import Settings

    cfg = loaded.config
    plugin_configs = {k: dict(v) for k, v in cfg.plugins.items()}
    grpc_table = plugin_configs.setdefault(GRPC_SERVER, {})
    if args.address:
        grpc_table["address"] = args.address
    grpc_address = grpc_table.get("address") or config_.DEFAULT_ADDRESS
    ttrpc_table = plugin_configs.setdefault(TTRPC_SERVER, {})
    ttrpc_address = ttrpc_table.get("address") or f"{grpc_address}.ttrpc"
    if args.address and not ttrpc_table.get("address"):
        ttrpc_table["address"] = ttrpc_address
    return Settings(
        root=os.path.abspath(args.root or cfg.root),
        state=os.path.abspath(args.state or cfg.state),
        grpc_address=grpc_address,
        ttrpc_address=ttrpc_address,
        disabled_plugins=tuple(cfg.disabled_plugins),
        required_plugins=tuple(cfg.required_plugins),
        plugin_configs=plugin_configs,
    )


async def _serve(args: argparse.Namespace) -> int:
    from pycontainerd.core import config as config_
    from pycontainerd.core.plugin import types
    from pycontainerd.core.server.server import Server, sd_notify
    from pycontainerd.core.warning import CONFIG_VERSION

    loaded, registry = _load(args)
    settings = _settings(args, loaded)
    for d in (settings.root, settings.state):
        os.makedirs(d, mode=0o711, exist_ok=True)
    if loaded.config.temp:
        os.environ["TMPDIR"] = loaded.config.temp
    server = Server(settings=settings, registry=registry, decode=config_.decode_plugin_config)
    server.warnings.extend(loaded.warnings)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            log.warning("second signal %s: exiting now", signal.Signals(signum).name)
            os._exit(1)
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    def on_dump() -> None:
        # containerd's SIGUSR1: the stacks in the log and in a file under the temp dir
        from pycontainerd.core.server import stacks

        text = stacks.dump(loop)
        log.info("=== BEGIN task and thread stack dump ===\n%s=== END stack dump ===", text)
        try:
            log.info("stack dump written to %s", stacks.write(text))
        except OSError as e:
            log.error("failed to write the stack dump: %s", e)

    loop.add_signal_handler(signal.SIGUSR1, on_dump)

    log.info(
        "starting pycontainerd version=%s root=%s state=%s",
        pycontainerd.__version__,
        settings.root,
        settings.state,
    )
    try:
        await server.start()
    except BaseException:
        await server.stop()
        raise
    warn = server.plugins.get(f"{types.WARNING}.deprecations")
    if warn is not None and warn.instance is not None:
        for message in loaded.deprecations:
            warn.instance.emit(CONFIG_VERSION, message)
    await server.wait_ready()
    sd_notify("READY=1")
    log.info("pycontainerd successfully booted, serving on %s", settings.grpc_address)
    await stop.wait()
    sd_notify("STOPPING=1")
    errors = await server.stop()
    log.info("pycontainerd stopped")
    return 1 if errors else 0


def _config_command(args: argparse.Namespace) -> int:
    from pycontainerd.core import config as config_
    from pycontainerd.core.plugin import loader
    from pycontainerd.plugins import builtins

    if args.config_command == "default":
        loaded = config_.LoadedConfig.defaults()
        registry = loader.discover(builtins.modules())
        out = config_.default_config(list(registry))
    else:
        loaded, registry = _load(args)
        out = config_.dump(loaded, list(registry))
    sys.stdout.write(config_.to_toml(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        print(f"pycontainerd {pycontainerd.__version__}")
        return 0
    try:
        _setup_logging(args.log_level)
        if args.command == "config":
            return _config_command(args)
        if args.command == "publish":
            from pycontainerd.core import config as config_
            from pycontainerd.plugins.runtimes.v2 import publish

            return publish.run(args.address or config_.DEFAULT_ADDRESS, args.namespace, args.topic)
        try:
            import uvloop  # type: ignore[import-not-found]

            uvloop.install()
        except ImportError:
            pass
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - start-up errors are reported, not tracebacked
        if _is_user_error(e):
            print(f"pycontainerd: {e}", file=sys.stderr)
            return 1
        raise


def _is_user_error(e: BaseException) -> bool:
    from pycontainerd.core.config import ConfigError
    from pycontainerd.core.plugin.graph import CycleError
    from pycontainerd.core.plugin.registration import RegistrationError
    from pycontainerd.core.server.server import StartupError

    return isinstance(e, ConfigError | CycleError | RegistrationError | StartupError | Fatal)


if __name__ == "__main__":
    sys.exit(main())
