"""`insights-agent run --publish`: a completed analysis writes its experiment's issues into
MLflow's native Issues; a second run updates them instead of adding twins. Real SQLite store
(the demo app's), the real CLI, the offline analyst, MLflow's own store read back."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from typer.testing import CliRunner

from insights import InsightsClient
from tests.workflow.conftest import Store


def _run(store: Store, tmp: Path) -> dict:
    from agent.cli import app

    result = CliRunner().invoke(app, [
        "run", "--experiment-id", store.experiment_id, "--tracking-uri", store.uri, "--yes",
        "--report", str(tmp / "report.md"), "--publish", "--output", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _native(store: Store) -> list:
    from insights.compat import tracing_store

    return list(tracing_store(mlflow.MlflowClient(store.uri)).search_issues(
        experiment_id=store.experiment_id, max_results=1000))


def test_run_publish_writes_every_issue_once_and_a_second_run_updates(small_store: Store,
                                                                      tmp_path: Path):
    first = _run(small_store, tmp_path)
    ours = InsightsClient(small_store.uri).list_issues(small_store.experiment_id)
    analysis = InsightsClient(small_store.uri).get_analysis(first["run_id"])
    census = InsightsClient(small_store.uri).get_baseline_census(first["run_id"])
    assert analysis.metadata["traces_examined"] == census.total_traces > 0   # the dashboard's
    native = _native(small_store)
    assert first["published"] and len(native) == len(ours) == len(first["published"])
    assert {n.issue_id for n in native} == {r["mlflow_issue_id"] for r in first["published"]}
    assert all(f"insights-issue-id: {i.issue_id}" in
               next(n.description for n in native
                    if n.issue_id == i.metadata["mlflow_issue"]["id"]) for i in ours)

    second = _run(small_store, tmp_path)
    ours = InsightsClient(small_store.uri).list_issues(small_store.experiment_id)
    assert len(_native(small_store)) == len(ours)        # the second run merged, no twins
    assert {r["mlflow_issue_id"] for r in second["published"]} == {n.issue_id for n in native}


def test_run_without_publish_writes_no_native_issue(small_store: Store, tmp_path: Path):
    from agent.cli import app

    result = CliRunner().invoke(app, [
        "run", "--experiment-id", small_store.experiment_id, "--tracking-uri", small_store.uri,
        "--yes", "--report", str(tmp_path / "report.md"), "--output", "json"])
    assert result.exit_code == 0, result.output
    assert "published" not in json.loads(result.stdout)
    assert _native(small_store) == []



def test_run_publish_failure_keeps_the_completed_analysis_and_says_why(
        small_store: Store, tmp_path: Path, monkeypatch):
    """Publishing fails after the analysis completed (a backend without native issues: MLflow's
    file store cannot run an analysis at all, so the publish step itself is made to fail):
    the summary is still printed, exit 0, and it says why nothing was published."""
    from agent.cli import app
    from insights.client import InsightsClient
    from insights.compat import NoNativeIssuesError

    def no_issues(self, *args, **kwargs):
        raise NoNativeIssuesError("this tracking backend has no native issue support (test)")

    monkeypatch.setattr(InsightsClient, "publish_issues", no_issues)
    result = CliRunner().invoke(app, [
        "run", "--experiment-id", small_store.experiment_id, "--tracking-uri", small_store.uri,
        "--yes", "--report", str(tmp_path / "report.md"), "--publish", "--output", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["phase"] == "complete" and summary["issues"] and "published" not in summary
    assert "native issue support" in summary["publish_error"]
    assert _native(small_store) == []
