"""The one exception hierarchy of the Python services; gRPC codes stay at the edges."""

from __future__ import annotations

import sqlite3

from bson import errors as bson_errors


class ChatbotError(Exception):
    """Base class of every error this system raises on purpose."""


class InvalidInputError(ChatbotError):
    """The caller sent something malformed; nothing changed. Maps to INVALID_ARGUMENT."""


class NotFoundError(ChatbotError):
    """The addressed entity does not exist. Maps to NOT_FOUND."""


class PreconditionError(ChatbotError):
    """The system is not in a state that allows the request. Maps to FAILED_PRECONDITION."""


class UnavailableError(ChatbotError):
    """A dependency (store, peer service) cannot be reached now; retry. Maps to UNAVAILABLE."""


# Failures of a store or library call that the input itself caused: retrying the same
# input fails the same way, so the caller must be told it is invalid, never to retry.
_CAUSED_BY_INPUT: tuple[type[BaseException], ...] = (
    OverflowError,  # an integer beyond what SQLite / BSON hold
    UnicodeError,  # a lone surrogate reaching an encoder
    sqlite3.DataError,
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,  # a value SQLite cannot bind
    bson_errors.InvalidDocument,
    bson_errors.InvalidStringData,
)
# Failures of a dependency that may well succeed later.
_DEPENDENCY_DOWN: tuple[type[BaseException], ...] = (
    sqlite3.OperationalError,  # locked, disk I/O, cannot open
    ConnectionError,
    TimeoutError,
    OSError,
)


def classify(error: BaseException) -> ChatbotError | None:
    """The one place that decides what a failure means to the caller.

    Invalid input (nothing changed, do not resend) becomes InvalidInputError; an
    unreachable dependency becomes UnavailableError (resend later). Domain errors pass
    through unchanged. None means a bug: reported as internal, with its traceback logged.
    """
    if isinstance(error, ChatbotError):
        return error
    if isinstance(error, _CAUSED_BY_INPUT):
        return InvalidInputError(f"the input cannot be stored: {type(error).__name__}: {error}")
    if isinstance(error, _DEPENDENCY_DOWN):
        return UnavailableError(f"a dependency failed: {type(error).__name__}: {error}")
    return None
