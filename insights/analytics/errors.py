"""What kind of error a failed span had: one definition for the census and the analyst.

MLflow records an exception on a span twice: an ``exception`` event whose attributes hold
``exception.type`` and ``exception.message``, and the status description
``"<Type>: <message>"`` (``LiveSpan.record_exception``). Autologgers and hand-made spans may
leave either out, so the type is read from the event first, then from a ``Type:`` prefix of
the status message; a span with neither is typed by its status message itself (cut short).
"""

from __future__ import annotations

# Spark SQL (Trace SQL), over a span struct with `events` (JSON text) and `status_message`.
_EVENT_TYPE = "regexp_extract({s}.events, '\"exception.type\": *\"([^\"]+)\"', 1)"
_STATUS_TYPE = "regexp_extract({s}.status_message, '^([A-Za-z_][A-Za-z0-9_.]*): ', 1)"
MESSAGE_CHARS = 80


def error_type_sql(span: str = "s") -> str:
    """A Trace SQL expression naming the error type of the failed span ``span``."""
    return (f"coalesce(nullif({_EVENT_TYPE.format(s=span)}, ''), "
            f"nullif({_STATUS_TYPE.format(s=span)}, ''), "
            f"substring(coalesce({span}.status_message, 'ERROR'), 1, {MESSAGE_CHARS}))")


def error_type(events_json: str | None, status_message: str | None) -> str:
    """The same as ``error_type_sql``, in Python (for rows already fetched)."""
    import re

    m = re.search(r'"exception\.type": *"([^"]+)"', events_json or "")
    if m:
        return m.group(1)
    m = re.match(r"([A-Za-z_][A-Za-z0-9_.]*): ", status_message or "")
    if m:
        return m.group(1)
    return (status_message or "ERROR")[:MESSAGE_CHARS]
