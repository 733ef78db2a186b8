from __future__ import annotations

from pycontainerd.core.events import Forwarder, Publisher, Subscriber
from pycontainerd.core.events.exchange import Exchange
from pycontainerd.core.plugin import InitContext, types
from pycontainerd.core.plugin.context import PluginSet
from pycontainerd.plugins.events import plugin


def test_registers_the_exchange_as_containerd_does() -> None:
    [reg] = plugin.pycontainerd_registrations()
    assert reg.uri == "io.containerd.event.v1.exchange"
    assert reg.type == types.EVENT
    assert reg.requires == ()
    assert reg.config is None
    reg.validate()


async def test_init_returns_an_exchange_that_publishes_forwards_and_subscribes() -> None:
    [reg] = plugin.pycontainerd_registrations()
    ic = InitContext(registration=reg, config=None, properties={}, plugins=PluginSet())
    instance = await reg.init(ic)
    assert isinstance(instance, Exchange)
    assert isinstance(instance, Publisher)
    assert isinstance(instance, Forwarder)
    assert isinstance(instance, Subscriber)


def test_builtin_loader_discovers_the_exchange_registration() -> None:
    from pycontainerd.core.plugin import loader
    from pycontainerd.plugins import builtins

    assert "pycontainerd.plugins.events.plugin" in builtins.modules()
    registry = loader.discover(["pycontainerd.plugins.events.plugin"], autoload=False)
    reg = registry.get("io.containerd.event.v1.exchange")
    assert reg is not None and reg.source == "builtin"


async def test_exchange_close_is_what_the_daemon_calls_at_shutdown() -> None:
    ex = Exchange()
    sub = ex.subscribe()
    assert ex.close() is None  # synchronous; the daemon awaits only awaitables
    assert not sub.active
    assert ex.subscriber_count == 0
