"""Namespaces travel with a request in a context variable, as containerd's in a context.

Server interceptors set it from the ``containerd-namespace`` gRPC metadata (ttrpc:
``containerd-namespace-ttrpc``); in-process clients (CRI) set it with :func:`use`.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Iterator

from pycontainerd.core import errdefs

GRPC_HEADER = "containerd-namespace"
TTRPC_HEADER = "containerd-namespace-ttrpc"
DEFAULT = "default"
NAMESPACE_ENV = "CONTAINERD_NAMESPACE"

_LABEL = r"[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*"
_VALID = re.compile(rf"^{_LABEL}$")
_MAX_LEN = 76

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("namespace", default=None)


def validate(name: str) -> None:
    """Raise InvalidArgument unless ``name`` is a valid namespace name."""
    if not name or len(name) > _MAX_LEN or not _VALID.match(name):
        raise errdefs.InvalidArgument(
            f"namespace {name!r} must match {_VALID.pattern} and be 1..{_MAX_LEN} characters"
        )


def get() -> str | None:
    """The namespace of the current request, or None."""
    return _current.get()


def required() -> str:
    """The namespace of the current request; FailedPrecondition when there is none."""
    ns = _current.get()
    if not ns:
        raise errdefs.FailedPrecondition("namespace is required")
    validate(ns)
    return ns


def set_current(name: str | None) -> contextvars.Token[str | None]:
    return _current.set(name)


def reset(token: contextvars.Token[str | None]) -> None:
    _current.reset(token)


@contextlib.contextmanager
def use(name: str) -> Iterator[str]:
    """Run a block in namespace ``name``."""
    token = _current.set(name)
    try:
        yield name
    finally:
        _current.reset(token)


def default_from_env() -> str:
    return os.environ.get(NAMESPACE_ENV) or DEFAULT
