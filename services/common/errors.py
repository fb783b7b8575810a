"""The one exception hierarchy of the Python services; gRPC codes stay at the edges."""

from __future__ import annotations


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
