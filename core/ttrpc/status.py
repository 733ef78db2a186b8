"""Statuses on the ttrpc wire (``google.rpc.Status`` with gRPC code numbers) and the errdefs
categories they stand for."""

from __future__ import annotations

import asyncio

from pycontainerd.api.google.rpc import status_pb2
from pycontainerd.core import errdefs

OK = 0


def code_of(exc: BaseException) -> errdefs.Code:
    """The status code a handler's exception is answered with."""
    if isinstance(exc, errdefs.ContainerdError):
        return exc.code
    if isinstance(exc, asyncio.CancelledError):
        return errdefs.Code.CANCELLED
    if isinstance(exc, EOFError):
        return errdefs.Code.OUT_OF_RANGE
    if isinstance(exc, BrokenPipeError):
        return errdefs.Code.FAILED_PRECONDITION
    return errdefs.code_of(exc)


def status_of(exc: BaseException) -> status_pb2.Status:
    return make(code_of(exc), str(exc) or type(exc).__name__)


def make(code: errdefs.Code, message: str = "") -> status_pb2.Status:
    return status_pb2.Status(code=errdefs.code_number(code), message=message)


def ok() -> status_pb2.Status:
    return status_pb2.Status(code=OK)


def error_of(status: status_pb2.Status) -> errdefs.ContainerdError | None:
    """The categorised error for a non-OK status; None for OK."""
    if status.code == OK:
        return None
    return errdefs.from_code(int(status.code), status.message)
