"""The plugin framework: registrations, discovery (pluggy), ordering (networkx), init."""

from pycontainerd.core.plugin.context import InitContext, Meta, Platform, Plugin, Status
from pycontainerd.core.plugin.hookspecs import hookimpl
from pycontainerd.core.plugin.registration import Registration, RegistrationError, SkipPlugin

__all__ = [
    "InitContext",
    "Meta",
    "Platform",
    "Plugin",
    "Registration",
    "RegistrationError",
    "SkipPlugin",
    "Status",
    "hookimpl",
]
