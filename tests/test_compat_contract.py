"""Contract of insights/compat.py with the installed MLflow: one test per private dependency.

A minor MLflow release that renames or drops one of them fails exactly one test here, whose
message names what changed and where to update.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import mlflow
import pytest
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from insights import compat


def test_tracing_store_has_query_trace_metrics(tracking_uri):
    client = mlflow.MlflowClient(tracking_uri)
    assert hasattr(client, "_tracing_client") and hasattr(client._tracing_client, "store"), (
        "MlflowClient()._tracing_client.store no longer exists: update insights/compat.py "
        "tracing_store()")
    store = compat.tracing_store(client)
    assert callable(getattr(store, "query_trace_metrics", None)), (
        f"{type(store).__name__}.query_trace_metrics no longer exists: update "
        "insights/analytics/server_census.py Metrics and insights/compat.py tracing_store()")


def test_artifact_repository_download_file(tmp_path: Path):
    src = tmp_path / "artifacts" / "insights"
    src.mkdir(parents=True)
    (src / "a.yaml").write_text("x: 1\n")
    repo = get_artifact_repository((tmp_path / "artifacts").as_uri())
    assert callable(getattr(repo, "_download_file", None)), (
        f"{type(repo).__name__}._download_file no longer exists: update insights/compat.py "
        "download_artifact_file()")
    local = tmp_path / "copy.yaml"
    compat.download_artifact_file(repo, "insights/a.yaml", str(local))
    assert local.read_text() == "x: 1\n", (
        "ArtifactRepository._download_file(remote_file_path=, local_path=) changed behaviour: "
        "update insights/compat.py download_artifact_file()")


def test_sqlite_store_has_the_tables_and_columns_sqlite_source_reads(tracking_uri):
    mlflow.MlflowClient(tracking_uri).search_experiments()  # creates and migrates the store
    path = tracking_uri.split("sqlite:///", 1)[1]
    with sqlite3.connect(path) as conn:
        problems = compat.sqlite_schema_problems(conn)
        assert not problems, (
            "MLflow's SQLite trace tables changed (" + "; ".join(problems) + "): update "
            "insights/compat.py SQLITE_TABLES and insights/analytics/sqlite_source.py")
        have = compat.trace_info_columns(conn)
    missing = set(compat.SQLITE_OPTIONAL_TRACE_INFO_COLUMNS) - have
    assert not missing, (
        f"trace_info no longer has {sorted(missing)} (read as NULL when absent, so the census "
        "loses them): update insights/compat.py SQLITE_OPTIONAL_TRACE_INFO_COLUMNS")


def test_a_store_missing_a_column_is_named(tmp_path: Path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE trace_info (request_id TEXT, experiment_id INT)")
        with pytest.raises(compat.MlflowCompatError) as err:
            compat.check_sqlite_store(conn, str(path))
    message = str(err.value)
    assert "trace_info lacks column(s) timestamp_ms" in message
    assert "table spans is missing" in message and "insights/compat.py" in message
