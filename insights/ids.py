"""Validation of ids before they reach a file name, a tag filter or the tracking store."""

from __future__ import annotations

import re

from insights.errors import InvalidInputError

# Run ids and our entity ids are hex or uuid-like; nothing with a slash, a dot-dot or a space.
_ENTITY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# Trace ids are "tr-<hex>" in MLflow 3 but other stores use other shapes; stay permissive
# about the alphabet while refusing anything path-like.
_TRACE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,255}$")
_EXPERIMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_id(value: object, what: str) -> str:
    """Return ``value`` stripped, or raise InvalidInputError if it is not a plain id."""
    return _check(value, what, _ENTITY_ID)


def check_experiment_id(value: object) -> str:
    return _check(value, "experiment id", _EXPERIMENT_ID)


def check_trace_id(value: object) -> str:
    text = _check(value, "trace id", _TRACE_ID)
    if ".." in text:
        raise InvalidInputError(f"Invalid trace id {text!r}: must not contain '..'")
    return text


def _check(value: object, what: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"Invalid {what}: it must be a non-empty string")
    text = value.strip()
    if not pattern.match(text):
        allowed = "letters, digits, '-', '_', '.' and ':'" if pattern is _TRACE_ID else "letters, digits, '-' and '_'"
        raise InvalidInputError(f"Invalid {what} {text!r}: only {allowed} are allowed")
    return text
