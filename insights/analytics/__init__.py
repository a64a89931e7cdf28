"""Trace analytics: baseline census, Trace SQL and cohort statistics over MLflow traces.

Work happens on a local DuckDB copy of the experiment (see ``cache``), loaded straight from
MLflow's tables for ``sqlite:///`` stores and through MLflow's API otherwise, refreshed
incrementally on every call. A census of a whole experiment on a tracking server is the
exception: the server aggregates it (see ``server_census``), so nothing is copied.

    compute_census(tracking_uri, experiment_id, filter_string=None, start_time_ms=None,
                   end_time_ms=None, progress=None, exact=False, sample_traces=None) -> dict
    execute_sql(tracking_uri, experiment_id, sql) -> SqlResult
    cohort_stats(tracking_uri, experiment_id, cohort, control, outcome, samples=5) -> dict
"""

from insights.analytics.cache import TraceTable
from insights.analytics.census import compute_census
from insights.analytics.cohorts import cohort_stats
from insights.analytics.schema import TRACES_SCHEMA_HELP
from insights.analytics.sql import SqlResult, execute_sql

__all__ = ["compute_census", "execute_sql", "cohort_stats", "SqlResult", "TRACES_SCHEMA_HELP",
           "TraceTable"]
