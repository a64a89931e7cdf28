"""Baseline census: the counts and distributions an investigation starts from.

Every figure is one DuckDB aggregate over the cached flat tables (``trace_rows``,
``span_rows``, ``assessment_rows``), so the census costs a handful of vectorised scans
instead of a pass over Python ``Trace`` objects. Every bucket carries up to 5
``sample_trace_ids`` (failing/erroring traces first) so findings can cite evidence.
The sections and their SQL are defined once, in ``sections``; the result is a typed
``Census`` (``census_model``).
"""

from __future__ import annotations

from collections.abc import Callable

from insights.analytics.census_model import Census
from insights.analytics.scope import apply_scope
from insights.analytics.sections import exact_census
from insights.analytics.session import AnalyticsSession


def compute_census(session: AnalyticsSession, filter_string: str | None = None,
                   start_time_ms: int | None = None, end_time_ms: int | None = None,
                   progress: Callable[[str], None] | None = None, exact: bool = False,
                   sample_traces: int | None = None) -> Census:
    """Compute the baseline census of the session's experiment.

    ``filter_string`` is an MLflow trace search filter (as for ``mlflow.search_traces``),
    evaluated by MLflow itself to select trace ids; ``start_time_ms``/``end_time_ms`` bound
    the trace start time (inclusive/exclusive).

    On a tracking server, a census of the whole experiment is aggregated by the server, with
    a few sections from a sample of ``sample_traces`` traces (see ``server_census``), and the
    session's cache is not touched; pass ``exact=True`` to load every trace instead (minutes
    at 100k traces, then cached).
    """
    say = progress or (lambda _m: None)
    whole = filter_string is None and start_time_ms is None and end_time_ms is None
    if not exact and whole and session.tracking_uri.startswith(("http://", "https://")):
        from insights.analytics import server_census

        try:
            return Census.model_validate(server_census.compute_server_census(
                session.source, sample_traces or server_census.SAMPLE_TRACES, say))
        except server_census.UnsupportedByServer:
            say("the server has no trace metrics API: loading every trace")
    with session.using(progress) as con:
        session.refresh()
        apply_scope(session, filter_string, start_time_ms, end_time_ms)
        say("aggregating census")
        return Census.model_validate({**exact_census(con), "method": "exact"})
