"""A span helper that uses real MLflow tracing but takes its times from a `SimClock`.

`mlflow.start_span_no_context(start_time_ns=...)` and `LiveSpan.end(end_time_ns=...)` are the
supported way to record spans with explicit timestamps; this wraps them in a context manager
that behaves like `mlflow.start_span`: exceptions are recorded (exception event + ERROR status)
and re-raised.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mlflow
from mlflow.entities import LiveSpan, SpanEvent, SpanStatus, SpanStatusCode

from .clock import SimClock


@contextmanager
def sim_span(
    name: str,
    span_type: str,
    clock: SimClock,
    *,
    parent: LiveSpan | None = None,
    inputs: Any = None,
    attributes: dict[str, Any] | None = None,
    experiment_id: str | None = None,
    tags: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
) -> Iterator[LiveSpan]:
    """Open a span at `clock`'s time; close it at `clock`'s time when the block exits."""
    span = mlflow.start_span_no_context(
        name,
        span_type=span_type,
        parent_span=parent,
        inputs=inputs,
        attributes=attributes,
        experiment_id=experiment_id,
        tags=tags,
        metadata=metadata,
        start_time_ns=clock.now_ns,
    )
    try:
        yield span
    except Exception as exc:
        record_exception(span, exc, clock)
        span.end(end_time_ns=clock.now_ns)
        raise
    span.end(end_time_ns=clock.now_ns)


def record_exception(span: LiveSpan, exc: Exception, clock: SimClock) -> None:
    """Like `LiveSpan.record_exception`, but the event is stamped with simulated time."""
    event = SpanEvent.from_exception(exc)
    span.add_event(SpanEvent(name=event.name, timestamp=clock.now_ns, attributes=event.attributes))
    span.set_status(
        SpanStatus(SpanStatusCode.ERROR, description=f"{type(exc).__name__}: {exc}")
    )
