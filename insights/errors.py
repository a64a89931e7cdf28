"""Typed errors raised by the Insights SDK.

Every failure surfaces as one of these, never as a silent ``None``. The CLI maps
``InvalidInputError`` and ``NotFoundError`` to exit code 2 and ``TrackingServerError`` and
``StorageError`` to exit code 1, each as a one-line message.
"""

from __future__ import annotations


class InsightsError(Exception):
    """Base class for every error the SDK raises on purpose."""

    exit_code = 2
    error_code = "INTERNAL_ERROR"


class InvalidInputError(InsightsError, ValueError):
    """The caller passed something malformed: a bad id, enum value or evidence entry."""

    error_code = "INVALID_PARAMETER_VALUE"


class NotFoundError(InsightsError, LookupError):
    """An analysis run, hypothesis or issue that does not exist."""

    error_code = "RESOURCE_NOT_FOUND"


class NotAnInsightsRunError(InvalidInputError):
    """The run exists but is not an Insights analysis run."""


class TrackingServerError(InsightsError):
    """The tracking server or store could not be reached or failed."""

    exit_code = 1
    error_code = "TEMPORARILY_UNAVAILABLE"


class StorageError(InsightsError):
    """A stored entity file is unreadable (malformed, empty or not an entity).

    Not the caller's bad input: the message names the file so a person can repair it.
    """

    exit_code = 1
    error_code = "STORAGE_ERROR"


class InsightsStorageWarning(UserWarning):
    """A list skipped an entity file it could not read; the message names the file."""
