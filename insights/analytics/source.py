"""Where a session's traces come from: the ``TraceSource`` protocol and its two readers.

A source fills fixed-shape ``stage_*`` temp tables in the session's DuckDB connection
(see ``staging``); the session decides what enters the cache. Two implementations:
``SqliteSource`` reads a ``sqlite:///`` store's tables directly, ``MlflowApiSource`` goes
through MLflow's client API (tracking servers and any other store).
"""

from __future__ import annotations

from typing import Protocol

import duckdb


class TraceSource(Protocol):
    """One experiment's traces, readable in time slices and cheap to fingerprint."""

    experiment_id: str | int
    stages_full: bool  # True: load_light() also stages span payloads, tags and metadata

    def fingerprint(self) -> dict:
        """{"count", "max_ts", "max_assessment_ts"}: changes whenever traces or assessments do."""

    def prepare(self, con: duckdb.DuckDBPyConnection, traces: int) -> None:
        """One-time setup of the session's connection, for an experiment of ``traces`` traces
        (called before the connection is sandboxed, outside any transaction)."""

    def load_light(self, con: duckdb.DuckDBPyConnection, since_ms: int) -> None:
        """Stage traces started at/after ``since_ms`` and their light spans."""

    def load_full(self, con: duckdb.DuckDBPyConnection, lo_ms: int, hi_ms: int) -> None:
        """Stage span payloads, tags and metadata of traces started in [lo_ms, hi_ms)."""

    def load_assessments(self, con: duckdb.DuckDBPyConnection, updated_after_ms: int) -> None:
        """Stage assessments updated after ``updated_after_ms`` (-1: all)."""

    def close(self) -> None:
        """Release connections to the store."""


def open_source(tracking_uri: str, experiment_id: str) -> TraceSource:
    """SQLite stores are read directly; everything else goes through MLflow's client API."""
    if tracking_uri.startswith("sqlite:///"):
        from insights.analytics.sqlite_source import SqliteSource

        return SqliteSource(tracking_uri, experiment_id)
    from insights.analytics.mlflow_source import MlflowApiSource

    return MlflowApiSource(tracking_uri, experiment_id)
