"""Every use of a private MLflow attribute or table, in one place.

Why: MLflow may change anything not in its public API in a minor release. Each dependency
below is named once, used through one function, and checked against the installed MLflow
by tests/test_compat_contract.py, so such a release fails one test that says what changed
instead of breaking a command somewhere far away.

The private dependencies:

- ``MlflowClient()._tracing_client.store``: the tracing store, for ``query_trace_metrics``
  (server-side trace/span/assessment aggregates; no public client method exposes it).
- ``ArtifactRepository._download_file``: downloads one known file without the folder check
  the public ``download_artifacts`` makes (one request per file instead of two).
- MLflow's SQLite tables and columns (``SQLITE_TABLES``), read directly by
  ``insights.analytics.sqlite_source`` because ``search_traces`` is two orders of magnitude
  slower for a whole experiment.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from insights.errors import TrackingServerError

# table -> columns insights.analytics.sqlite_source reads
SQLITE_TABLES: dict[str, tuple[str, ...]] = {
    "trace_info": ("request_id", "experiment_id", "timestamp_ms", "execution_time_ms", "status"),
    "spans": ("trace_id", "experiment_id", "span_id", "parent_span_id", "name", "type", "status",
              "start_time_unix_nano", "end_time_unix_nano", "content"),
    "trace_tags": ("request_id", "key", "value"),
    "trace_request_metadata": ("request_id", "key", "value"),
    "assessments": ("trace_id", "assessment_id", "name", "value", "source_type", "rationale",
                    "last_updated_timestamp", "valid"),
}
# trace_info columns of newer MLflow versions: read when present, NULL otherwise
SQLITE_OPTIONAL_TRACE_INFO_COLUMNS: tuple[str, ...] = (
    "trace_name", "session_id", "input_tokens", "output_tokens", "total_tokens", "total_cost")


class MlflowCompatError(TrackingServerError):
    """The installed MLflow (or the store's schema) lacks a private part insights relies on."""


def tracing_store(client: Any) -> Any:
    """The tracing store behind an ``MlflowClient`` (has ``query_trace_metrics``)."""
    try:
        return client._tracing_client.store
    except AttributeError as exc:
        raise MlflowCompatError(
            "MlflowClient()._tracing_client.store no longer exists in this MLflow version: "
            "update insights/compat.py tracing_store()") from exc


def download_artifact_file(repo: Any, remote_path: str, local_path: str) -> None:
    """Download one artifact file known to be a file (no extra 'is it a folder?' request)."""
    download = getattr(repo, "_download_file", None)
    if download is None:
        raise MlflowCompatError(
            f"{type(repo).__name__}._download_file no longer exists in this MLflow version: "
            "update insights/compat.py download_artifact_file()")
    download(remote_file_path=remote_path, local_path=local_path)


def sqlite_schema_problems(conn: sqlite3.Connection) -> list[str]:
    """What ``SQLITE_TABLES`` expects that the store at ``conn`` lacks (empty when all there)."""
    problems = []
    for table, columns in SQLITE_TABLES.items():
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if not have:
            problems.append(f"table {table} is missing")
            continue
        missing = [c for c in columns if c not in have]
        if missing:
            problems.append(f"table {table} lacks column(s) {', '.join(missing)}")
    return problems


def check_sqlite_store(conn: sqlite3.Connection, path: str) -> None:
    """Raise ``MlflowCompatError`` naming every table/column the SQLite reader needs but lacks."""
    problems = sqlite_schema_problems(conn)
    if problems:
        raise MlflowCompatError(
            f"SQLite store {path} does not have MLflow's expected trace tables ("
            + "; ".join(problems) + "): update insights/compat.py SQLITE_TABLES")


def trace_info_columns(conn: sqlite3.Connection) -> set[str]:
    """The trace_info columns present in this store (optional ones vary by MLflow version)."""
    return {r[1] for r in conn.execute("PRAGMA table_info(trace_info)")}
