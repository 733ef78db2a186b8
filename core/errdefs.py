"""Error categories, as containerd's errdefs, and their gRPC status codes.

Services raise these; one server interceptor (and the ttrpc server) turns them into statuses,
and clients turn statuses back into them with :func:`from_grpc`. Messages are lowercase and say
what failed: ``failed to prepare snapshot "k1": parent "p" not found``.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # grpc is imported only where a gRPC status is really needed (not in shims)
    import grpc


class Code(enum.IntEnum):
    """gRPC status codes, by number and by grpc's names (without importing grpc)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class ContainerdError(Exception):
    """Base of every categorised error. ``code`` is its gRPC status code."""

    code: Code = Code.UNKNOWN

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.default_message)

    default_message = "unknown"

    @property
    def message(self) -> str:
        return str(self)


class Unknown(ContainerdError):
    code = Code.UNKNOWN
    default_message = "unknown"


class InvalidArgument(ContainerdError):
    code = Code.INVALID_ARGUMENT
    default_message = "invalid argument"


class NotFound(ContainerdError):
    code = Code.NOT_FOUND
    default_message = "not found"


class AlreadyExists(ContainerdError):
    code = Code.ALREADY_EXISTS
    default_message = "already exists"


class PermissionDenied(ContainerdError):
    code = Code.PERMISSION_DENIED
    default_message = "permission denied"


class ResourceExhausted(ContainerdError):
    code = Code.RESOURCE_EXHAUSTED
    default_message = "resource exhausted"


class FailedPrecondition(ContainerdError):
    code = Code.FAILED_PRECONDITION
    default_message = "failed precondition"


class Conflict(FailedPrecondition):
    default_message = "conflict"


class NotModified(FailedPrecondition):
    default_message = "not modified"


class Aborted(ContainerdError):
    code = Code.ABORTED
    default_message = "aborted"


class OutOfRange(ContainerdError):
    code = Code.OUT_OF_RANGE
    default_message = "out of range"


class NotImplemented_(ContainerdError):  # noqa: N801 - avoid shadowing the builtin constant
    code = Code.UNIMPLEMENTED
    default_message = "not implemented"


class Internal(ContainerdError):
    code = Code.INTERNAL
    default_message = "internal"


class Unavailable(ContainerdError):
    code = Code.UNAVAILABLE
    default_message = "unavailable"


class DataLoss(ContainerdError):
    code = Code.DATA_LOSS
    default_message = "data loss"


class Unauthenticated(ContainerdError):
    code = Code.UNAUTHENTICATED
    default_message = "unauthenticated"


class DeadlineExceeded(ContainerdError):
    code = Code.DEADLINE_EXCEEDED
    default_message = "deadline exceeded"


class Canceled(ContainerdError):
    code = Code.CANCELLED
    default_message = "canceled"


_BY_CODE: dict[Code, type[ContainerdError]] = {
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


def code_of(exc: BaseException) -> Code:
    """The status code for any exception: categorised ones by class, a few builtins by kind."""
    if isinstance(exc, ContainerdError):
        return exc.code
    if isinstance(exc, FileNotFoundError):
        return Code.NOT_FOUND
    if isinstance(exc, FileExistsError):
        return Code.ALREADY_EXISTS
    if isinstance(exc, PermissionError):
        return Code.PERMISSION_DENIED
    if isinstance(exc, NotImplementedError):
        return Code.UNIMPLEMENTED
    if isinstance(exc, TimeoutError):
        return Code.DEADLINE_EXCEEDED
    return Code.UNKNOWN


def to_grpc_code(exc: BaseException) -> grpc.StatusCode:
    """:func:`code_of` as grpc's enum (imports grpc)."""
    import grpc

    return getattr(grpc.StatusCode, code_of(exc).name)


def code_number(code: Any) -> int:
    """The number of a :class:`Code` or a ``grpc.StatusCode``."""
    if isinstance(code, int):
        return int(code)
    return int(code.value[0])


def code_from_number(number: int) -> Code:
    try:
        return Code(number)
    except ValueError:
        return Code.UNKNOWN


def from_code(code: Any, message: str) -> ContainerdError:
    """Build the categorised error for a status (a Code, a number or a ``grpc.StatusCode``)."""
    c = code_from_number(code_number(code))
    return _BY_CODE.get(c, Unknown)(message)


def from_grpc(err: Any) -> ContainerdError:
    """Turn a grpc client error back into a category, keeping the server's message."""
    code = err.code() if hasattr(err, "code") else Code.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return from_code(code, details or "")


def is_not_found(exc: BaseException) -> bool:
    return code_of(exc) == Code.NOT_FOUND


def is_already_exists(exc: BaseException) -> bool:
    return code_of(exc) == Code.ALREADY_EXISTS
