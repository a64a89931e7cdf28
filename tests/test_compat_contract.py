"""Contract of insights/compat.py with the installed MLflow: one test per private dependency.

A minor MLflow release that renames or drops one of them fails exactly one test here, whose
message names what changed and where to update.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import mlflow
import pytest
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from helpers.fixtures import copy_template
from helpers.insights_helpers import make_traces
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


def test_tracking_uri_set_is_what_set_tracking_uri_set(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'env.db'}")
    mlflow.set_tracking_uri(None)
    assert compat.tracking_uri_set() is None, (
        "mlflow.set_tracking_uri(None) no longer clears the value insights/compat.py "
        "tracking_uri_set() reads")
    uri = f"sqlite:///{tmp_path / 'set.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        assert compat.tracking_uri_set() == uri == mlflow.get_tracking_uri(), (
            "the URI given to mlflow.set_tracking_uri is no longer where insights/compat.py "
            "tracking_uri_set() reads it")
    finally:
        mlflow.set_tracking_uri(None)


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


def test_tracking_store_has_the_native_issue_methods_publish_uses(tracking_uri):
    import inspect

    from mlflow.entities import IssueSeverity, IssueStatus

    from insights.publish import SEVERITY_MAP, STATUS_MAP

    store = compat.native_issue_store(mlflow.MlflowClient(tracking_uri))
    for method, params in compat.NATIVE_ISSUE_METHODS.items():
        have = set(inspect.signature(getattr(store, method)).parameters)
        missing = [p for p in params if p not in have]
        assert not missing, (
            f"{type(store).__name__}.{method} no longer takes {missing}: update insights/compat.py "
            "NATIVE_ISSUE_METHODS and insights/publish.py")
    statuses = {s.value for s in IssueStatus}
    severities = {s.value for s in IssueSeverity}
    assert set(STATUS_MAP.values()) <= statuses, (
        f"MLflow's IssueStatus is now {sorted(statuses)}: update insights/publish.py STATUS_MAP")
    assert set(SEVERITY_MAP.values()) <= severities, (
        f"MLflow's IssueSeverity is now {sorted(severities)}: update insights/publish.py "
        "SEVERITY_MAP")


def test_issue_references_are_what_mlflow_counts_as_an_issues_traces(tracking_uri):
    """publish links traces with IssueReference assessments through
    ``_tracing_client.log_assessment``; MLflow's trace_count must count exactly those."""
    from mlflow.entities import AssessmentSource, IssueReference

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.create_experiment("contract-issues")
    span = client.start_trace("t", experiment_id=exp)
    client.end_trace(span.trace_id)
    mlflow.flush_trace_async_logging()
    store = compat.native_issue_store(client)
    native = compat.create_native_issue(store, experiment_id=exp, name="n", description="d")
    compat.log_trace_assessment(client, span.trace_id, IssueReference(
        issue_id=native.issue_id, issue_name="n", source=AssessmentSource(source_type="CODE")))
    [found] = compat.search_native_issues(store, exp, include_trace_count=True)
    assert found.trace_count == 1, (
        "MLflow no longer counts IssueReference assessments as an issue's traces: update "
        "insights/publish.py _link() and insights/compat.py log_trace_assessment()")


def test_sqlite_tagged_runs_are_the_runs_search_runs_returns(tracking_uri, experiment_id):
    """The runs read from the tables (``compat.sqlite_tagged_runs`` + ``runs.stored_run``) are
    the runs, order, info and tags MLflow's own search returns for the same tag filter."""
    from insights import InsightsClient, runs

    client = mlflow.MlflowClient(tracking_uri)
    insights = InsightsClient(tracking_uri)
    first = insights.create_analysis(experiment_id, run_name="first", metadata={"a": 1})
    insights.create_analysis(experiment_id, run_name="second")
    client.set_terminated(first, status="FINISHED")
    for name in ("b", "a"):
        client.create_run(experiment_id, start_time=5, run_name=name,
                          tags={runs.TAG_TYPE: "analysis"})
    path = tracking_uri.split("sqlite:///", 1)[1]
    conn = compat.sqlite_read_only(path)
    try:
        found = compat.sqlite_tagged_runs(conn, experiment_id, runs.TAG_TYPE, "analysis")
    finally:
        conn.close()

    def fields(run) -> dict:      # what listings read: RunInfo's fields and the tags
        info = {k: getattr(run.info, k) for k in ("run_id", "run_name", "experiment_id",
                                                  "user_id", "status", "start_time", "end_time",
                                                  "lifecycle_stage", "artifact_uri")}
        return {"info": info, "tags": run.data.tags}

    ours = [fields(runs.stored_run(info, tags)) for info, tags in found]
    theirs = [fields(r) for r in runs.search_analysis_runs(client, experiment_id)]
    assert ours == theirs and len(ours) == 4, (
        "MLflow's runs/tags tables or search_runs' order changed: update insights/compat.py "
        "sqlite_tagged_runs and insights/runs.py stored_run")


def test_mlflow_tag_names_spelled_out_in_runs_match_mlflow():
    """insights/runs.py spells MLflow's tag names out (importing them imports MLflow)."""
    from mlflow.utils import mlflow_tags

    from insights import runs

    for name in ("MLFLOW_PARENT_RUN_ID", "MLFLOW_RUN_NAME", "MLFLOW_RUN_NOTE"):
        assert getattr(runs, name) == getattr(mlflow_tags, name), (
            f"mlflow.utils.mlflow_tags.{name} changed: update insights/runs.py")


def test_spans_location_tag_spelled_out_in_the_corpus_matches_mlflow():
    """agent/demo_app/corpus.py checks stored spans by MLflow's tag, spelled out."""
    from mlflow.tracing.constant import TraceTagKey

    from agent.demo_app import corpus

    assert corpus.SPANS_LOCATION_TAG == TraceTagKey.SPANS_LOCATION, (
        "mlflow.tracing.constant.TraceTagKey.SPANS_LOCATION changed: update "
        "agent/demo_app/corpus.py")


def test_local_artifacts_are_written_as_mlflows_local_artifact_repository_writes_them(
        tmp_path: Path):
    """compat.write_local_artifact (create-hypothesis without MLflow) leaves exactly what
    MlflowClient.log_text leaves through LocalArtifactRepository: same files, bytes and mode,
    folders made as needed, no staged file left, an existing file replaced."""
    import os

    from mlflow.store.artifact import local_artifact_repo

    assert compat.LOCAL_ARTIFACT_TEMP_PREFIX == local_artifact_repo._TEMP_ARTIFACT_PREFIX, (
        "LocalArtifactRepository stages files under another name now: update "
        "insights/compat.py LOCAL_ARTIFACT_TEMP_PREFIX and write_local_artifact()")
    text = "statement: é ünïcode\nlines:\n- 1\n"
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    repo = get_artifact_repository(theirs.as_uri())
    for folder, written in (("a/b", text), ("a/b", text + "more\n"), (None, "top\n")):
        name = "x.yaml"
        src = tmp_path / "src" / name
        src.parent.mkdir(exist_ok=True)
        src.write_text(written, encoding="utf-8")
        repo.log_artifact(str(src), folder)
        compat.write_local_artifact(ours, f"{folder}/{name}" if folder else name, written)

    def tree(root: Path) -> dict:
        return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else "folder",
                                           os.stat(p).st_mode & 0o777)
                for p in root.rglob("*")}

    assert tree(ours) == tree(theirs), (
        "LocalArtifactRepository writes files differently now: update insights/compat.py "
        "write_local_artifact()")
    with pytest.raises(ValueError):
        compat.write_local_artifact(ours, "../escape.yaml", "x")


def test_sqlite_trace_links_are_the_rows_mlflow_writes_and_mlflow_reads_them(tracking_uri):
    """compat.sqlite_link_traces repeats SqlAlchemyStore.link_traces_to_run: the same rows
    (bar the random id and the time), found by MLflow's own search of a run's traces, and a
    second link of the same trace adds nothing, as MLflow's does not."""
    client = mlflow.MlflowClient(tracking_uri)
    exp = client.create_experiment("links")
    ids = make_traces(tracking_uri, exp, 3)
    theirs = client.create_run(exp).info.run_id
    ours = client.create_run(exp).info.run_id
    client.link_traces_to_run(ids[:2], theirs)
    path = compat.sqlite_store_path(tracking_uri)
    assert compat.sqlite_link_traces(path, ours, ids[:2]) == 2
    assert compat.sqlite_link_traces(path, ours, ids) == 1       # only the new one
    client.link_traces_to_run(ids[2:], theirs)

    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT destination_id, source_type, source_id, destination_type, association_id, "
            "created_time FROM entity_associations ORDER BY destination_id, source_id").fetchall()
    shape = {run: sorted(r[1:4] for r in rows if r[0] == run) for run in (theirs, ours)}
    assert shape[ours] == shape[theirs] and len(shape[ours]) == 3, (
        f"MLflow's trace-to-run link rows changed ({shape[theirs]} vs ours {shape[ours]}): "
        "update insights/compat.py sqlite_link_traces()")
    for row in rows:
        assert len(row[4]) == 32 and int(row[4], 16) >= 0 and row[5] > 0, row
    found = client.search_traces(locations=[exp], run_id=ours, include_spans=False)
    assert sorted(t.info.trace_id for t in found) == sorted(ids), (
        "MLflow no longer finds a run's traces from compat.sqlite_link_traces() rows: update it")

    with sqlite3.connect(path) as conn:
        assert compat.sqlite_traces_in_experiment(conn, exp, [*ids, "tr-missing"]) == set(ids)
        assert compat.sqlite_run(conn, ours, "no.such.tag") == ("active", mlflow.MlflowClient(
            tracking_uri).get_run(ours).info.artifact_uri, None, exp)


# columns that differ between two writes of the same traces whatever the order: assessment ids
# are random, update stamps are wall-clock, and the payload generation counts MLflow's writes
_WRITE_ORDER_FREE = {"assessment_id", "last_updated_timestamp", "db_payload_generation"}


def _stored_rows(path: Path) -> dict[str, list[tuple]]:
    """Every trace table's rows, sorted, without the columns that differ between writes and
    with the store's folder left out of artifact locations."""
    tables = ("trace_info", "spans", "trace_tags", "trace_request_metadata", "assessments")
    rows: dict[str, list[tuple]] = {}
    with sqlite3.connect(path) as conn:
        for table in tables:
            cursor = conn.execute(f"SELECT * FROM {table}")
            keep = [i for i, d in enumerate(cursor.description) if d[0] not in _WRITE_ORDER_FREE]
            rows[table] = sorted(
                tuple(str(row[i]).replace(str(path.parent), "<store>") for i in keep)
                for row in cursor)
    return rows


def test_corpus_write_shortcuts_store_the_rows_mlflows_own_path_stores(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The demo corpus written the way MLflow writes it (spans, then trace info; the experiment
    read for every trace) and with trace info first and the experiment read once holds the
    same rows, and no trace data goes to artifacts."""
    from datetime import datetime, timezone

    from agent.demo_app import build_demo_corpus

    start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    with_info_first = tmp_path / "first" / "mlflow.db"
    build_demo_corpus(copy_template(with_info_first), n_traces=40, seed=4, start=start)
    monkeypatch.setattr(compat, "trace_info_written_first", contextlib.nullcontext)
    monkeypatch.setattr(compat, "experiments_read_once", lambda _uri: contextlib.nullcontext())
    mlflows_order = tmp_path / "mlflow" / "mlflow.db"
    build_demo_corpus(copy_template(mlflows_order), n_traces=40, seed=4, start=start)

    first, baseline = _stored_rows(with_info_first), _stored_rows(mlflows_order)
    assert len(first["trace_info"]) == 40 and len(first["spans"]) > 40
    for table, rows in baseline.items():
        assert first[table] == rows, (
            f"{table} differs when trace info is stored before spans: MLflow's write paths "
            "changed, update or drop insights/compat.py trace_info_written_first()")
    assert not list(with_info_first.parent.rglob("traces/*/artifacts/*")), (
        "trace data was uploaded to artifacts: insights/compat.py trace_info_written_first() "
        "must keep spans in the SQL store only")


def test_trace_info_written_first_swaps_mlflows_exporter_only_inside(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from mlflow.tracing.export import mlflow_v3

    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "true")

    original = mlflow_v3.MlflowV3SpanExporter
    missing = [name for name in compat._EXPORTER_PARTS if not hasattr(original, name)]
    assert not missing, (
        f"MlflowV3SpanExporter no longer has {missing}: corpora are written the slow way; "
        "update insights/compat.py trace_info_written_first()")
    sqlite_uri = copy_template(tmp_path / "x.db")
    with compat.trace_info_written_first():
        swapped = mlflow_v3.MlflowV3SpanExporter
        assert swapped is not original and issubclass(swapped, original)
        assert swapped(sqlite_uri)._info_first is True
        # a tracking server keeps MLflow's order: its store may not take spans
        assert swapped("http://127.0.0.1:9")._info_first is False
        # and so does synchronous export: there is no queue to order
        monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
        assert swapped(sqlite_uri)._info_first is False
    assert mlflow_v3.MlflowV3SpanExporter is original


def test_experiments_read_once_applies_to_the_store_mlflows_exporter_writes_through(
        tracking_uri):
    from mlflow.tracing.client import TracingClient

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.create_experiment("read-once")
    with compat.experiments_read_once(tracking_uri):
        exporters_store = TracingClient(tracking_uri).store
        assert exporters_store.get_experiment(exp).name == "read-once"
        client.rename_experiment(exp, "renamed")
        # answered from memory: the store the exporter uses is the memoized one
        assert exporters_store.get_experiment(exp).name == "read-once", (
            "MLflow's exporter no longer writes through the store MlflowClient caches per URI: "
            "update insights/compat.py experiments_read_once()")
    assert TracingClient(tracking_uri).store.get_experiment(exp).name == "renamed"
    assert "get_experiment" not in vars(exporters_store)
