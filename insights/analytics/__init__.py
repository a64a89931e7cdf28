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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from insights.analytics.cache import TraceTable
    from insights.analytics.census import compute_census
    from insights.analytics.cohorts import cohort_stats
    from insights.analytics.schema import TRACES_SCHEMA_HELP
    from insights.analytics.sql import SqlResult, execute_sql

# Imported on first use (PEP 562): DuckDB, SciPy and MLflow load in seconds, and the CLI reads
# ``insights.analytics.schema`` for its --help without paying for them.
_LAZY = {
    "TraceTable": "insights.analytics.cache",
    "compute_census": "insights.analytics.census",
    "cohort_stats": "insights.analytics.cohorts",
    "TRACES_SCHEMA_HELP": "insights.analytics.schema",
    "SqlResult": "insights.analytics.sql",
    "execute_sql": "insights.analytics.sql",
}

__all__ = ["compute_census", "execute_sql", "cohort_stats", "SqlResult", "TRACES_SCHEMA_HELP",
           "TraceTable"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'insights.analytics' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
