"""Error categories, as containerd's errdefs, and their gRPC status codes.

Services raise these; one server interceptor (and the ttrpc server) turns them into statuses,
and clients turn statuses back into them with :func:`from_grpc`. Messages are lowercase and say
what failed: ``failed to prepare snapshot "k1": parent "p" not found``.
"""

from __future__ import annotations

import grpc


class ContainerdError(Exception):
    """Base of every categorised error. ``code`` is the gRPC status code."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.default_message)

    default_message = "unknown"

    @property
    def message(self) -> str:
        return str(self)


class Unknown(ContainerdError):
    code = grpc.StatusCode.UNKNOWN
    default_message = "unknown"


class InvalidArgument(ContainerdError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    default_message = "invalid argument"


class NotFound(ContainerdError):
    code = grpc.StatusCode.NOT_FOUND
    default_message = "not found"


class AlreadyExists(ContainerdError):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_message = "already exists"


class PermissionDenied(ContainerdError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_message = "permission denied"


class ResourceExhausted(ContainerdError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_message = "resource exhausted"


class FailedPrecondition(ContainerdError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_message = "failed precondition"


class Conflict(FailedPrecondition):
    default_message = "conflict"


class NotModified(FailedPrecondition):
    default_message = "not modified"


class Aborted(ContainerdError):
    code = grpc.StatusCode.ABORTED
    default_message = "aborted"


class OutOfRange(ContainerdError):
    code = grpc.StatusCode.OUT_OF_RANGE
    default_message = "out of range"


class NotImplemented_(ContainerdError):  # noqa: N801 - avoid shadowing the builtin constant
    code = grpc.StatusCode.UNIMPLEMENTED
    default_message = "not implemented"


class Internal(ContainerdError):
    code = grpc.StatusCode.INTERNAL
    default_message = "internal"


class Unavailable(ContainerdError):
    code = grpc.StatusCode.UNAVAILABLE
    default_message = "unavailable"


class DataLoss(ContainerdError):
    code = grpc.StatusCode.DATA_LOSS
    default_message = "data loss"


class Unauthenticated(ContainerdError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_message = "unauthenticated"


class DeadlineExceeded(ContainerdError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_message = "deadline exceeded"


class Canceled(ContainerdError):
    code = grpc.StatusCode.CANCELLED
    default_message = "canceled"


_BY_CODE: dict[grpc.StatusCode, type[ContainerdError]] = {
    cls.code: cls
    for cls in (
        Unknown,
        InvalidArgument,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        NotImplemented_,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
        DeadlineExceeded,
        Canceled,
    )
}

_BY_NUMBER: dict[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}


def to_grpc_code(exc: BaseException) -> grpc.StatusCode:
    """The status code for any exception: categorised ones by class, a few builtins by kind."""
    if isinstance(exc, ContainerdError):
        return exc.code
    if isinstance(exc, FileNotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, FileExistsError):
        return grpc.StatusCode.ALREADY_EXISTS
    if isinstance(exc, PermissionError):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(exc, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.UNKNOWN


def code_number(code: grpc.StatusCode) -> int:
    return int(code.value[0])


def code_from_number(number: int) -> grpc.StatusCode:
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def from_code(code: grpc.StatusCode | int, message: str) -> ContainerdError:
    """Build the categorised error for a status (used by clients and the ttrpc layer)."""
    if isinstance(code, int):
        code = code_from_number(code)
    return _BY_CODE.get(code, Unknown)(message)


def from_grpc(err: grpc.RpcError) -> ContainerdError:
    """Turn a grpc client error back into a category, keeping the server's message."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return from_code(code, details or "")


def is_not_found(exc: BaseException) -> bool:
    return to_grpc_code(exc) == grpc.StatusCode.NOT_FOUND


def is_already_exists(exc: BaseException) -> bool:
    return to_grpc_code(exc) == grpc.StatusCode.ALREADY_EXISTS
