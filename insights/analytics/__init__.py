"""Trace analytics: baseline census, Trace SQL and cohort statistics over MLflow traces.

Work happens in an ``AnalyticsSession``: one DuckDB connection per experiment over a local
cache of its traces (see ``session``), loaded straight from MLflow's tables for
``sqlite:///`` stores and through MLflow's API otherwise, and brought up to date (a cheap
fingerprint check, then only the delta) on every call. A census of a whole experiment on a
tracking server is the exception: the server aggregates it (see ``server_census``), so
nothing is copied.

    with AnalyticsSession(tracking_uri, experiment_id) as session:
        compute_census(session, filter_string=None, start_time_ms=None, end_time_ms=None,
                       progress=None, exact=False, sample_traces=None) -> Census
        execute_sql(session, sql) -> SqlResult
        cohort_stats(session, cohort, control, outcome, samples=5) -> dict

``InsightsClient`` keeps one session per experiment and closes them in ``close()``.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Imported on first use: the submodules pull in duckdb, sqlglot and scipy, which a command
# that only needs, say, ``assessments`` should not pay for.
_EXPORTS = {
    "AnalyticsSession": "session", "Census": "census_model", "SqlResult": "sql",
    "TRACES_SCHEMA_HELP": "schema", "TraceSource": "source", "cohort_stats": "cohorts",
    "compute_census": "census", "execute_sql": "sql",
}

if TYPE_CHECKING:
    from insights.analytics.census import compute_census
    from insights.analytics.census_model import Census
    from insights.analytics.cohorts import cohort_stats
    from insights.analytics.schema import TRACES_SCHEMA_HELP
    from insights.analytics.session import AnalyticsSession
    from insights.analytics.source import TraceSource
    from insights.analytics.sql import SqlResult, execute_sql

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'insights.analytics' has no attribute {name!r}")
    return getattr(importlib.import_module(f"insights.analytics.{_EXPORTS[name]}"), name)
