"""Issue reads on a local SQLite store skip MLflow's SQLAlchemy store (issue 10, item 6).

`list_issues` and `get_issue` read the experiment and its Insights parent run straight from
the store's tables (insights/compat.py) and the issue files in place; they must give exactly
what the MLflow-client path gives, including for deleted or unknown experiments and an
experiment holding two parent runs (a race both writers survived)."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from helpers.fixtures import sqlite_template, tracking_uri  # noqa: F401  (faster fresh stores)
from insights import InsightsClient, NotFoundError
from insights import runs as insights_runs


def _via_mlflow(monkeypatch, uri: str) -> InsightsClient:
    """The same reads through MLflow's client (the path every non-SQLite store takes)."""
    client = InsightsClient(uri)
    monkeypatch.setattr(client, "_local_db", lambda: None)
    return client


def test_issue_reads_need_no_mlflow_client_and_match_the_mlflow_path(
        tracking_uri, experiment_id, monkeypatch):  # noqa: F811
    writer = InsightsClient(tracking_uri)
    run_id = writer.create_analysis(experiment_id, run_name="fast reads")
    ids = [writer.create_issue(run_id, f"issue {i}", description="d") for i in range(3)]

    fast = InsightsClient(tracking_uri)
    listed = fast.list_issues(experiment_id)
    got = fast.get_issue(ids[1], experiment_id)
    assert fast._mlflow is None          # MLflow's client (and its SQL store) never created
    slow = _via_mlflow(monkeypatch, tracking_uri)
    assert [i.model_dump() for i in listed] == [i.model_dump()
                                                for i in slow.list_issues(experiment_id)]
    assert got.model_dump() == slow.get_issue(ids[1], experiment_id).model_dump()
    assert sorted(i.issue_id for i in listed) == sorted(ids)
    anywhere = InsightsClient(tracking_uri)               # by id alone: every experiment
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    assert anywhere.get_issue(ids[2]).model_dump() == slow.get_issue(ids[2]).model_dump()
    assert anywhere._mlflow is None
    with pytest.raises(NotFoundError, match="not found"):
        anywhere.get_issue("f" * 32)


def test_unknown_and_deleted_experiments_are_not_found_on_the_fast_path(
        tracking_uri, experiment_id):  # noqa: F811
    client = InsightsClient(tracking_uri)
    with pytest.raises(NotFoundError, match="'987654' not found"):
        client.list_issues("987654")
    MlflowClient(tracking_uri).delete_experiment(experiment_id)
    with pytest.raises(NotFoundError, match="is deleted"):
        client.list_issues(experiment_id)
    assert client._mlflow is None


def test_two_parent_runs_read_the_canonical_one(tracking_uri, experiment_id,  # noqa: F811
                                                monkeypatch):
    """Two parents (created by racing first writers, before a merge): both paths read the
    oldest, as runs.find_parent orders them."""
    writer = InsightsClient(tracking_uri)
    run_id = writer.create_analysis(experiment_id, run_name="first")
    writer.create_issue(run_id, "in the first parent")
    MlflowClient(tracking_uri).create_run(experiment_id, tags={
        insights_runs.TAG_TYPE: "parent", insights_runs.TAG_PARENT: "true"})
    fast = InsightsClient(tracking_uri)
    titles = [i.title for i in fast.list_issues(experiment_id)]
    assert titles == ["in the first parent"]
    assert titles == [i.title for i in _via_mlflow(monkeypatch, tracking_uri).list_issues(
        experiment_id)]


def test_hypothesis_reads_check_the_run_like_the_mlflow_path(tracking_uri,  # noqa: F811
                                                             experiment_id, monkeypatch):
    from insights.errors import NotAnInsightsRunError

    writer = InsightsClient(tracking_uri)
    run_id = writer.create_analysis(experiment_id, run_name="hyps")
    hid = writer.create_hypothesis(run_id, "Slow tools cause timeouts", testing_plan="p")
    fast = InsightsClient(tracking_uri)
    listed, got = fast.list_hypotheses(run_id), fast.get_hypothesis(run_id, hid)
    assert fast._mlflow is None
    slow = _via_mlflow(monkeypatch, tracking_uri)
    assert [h.model_dump() for h in listed] == [h.model_dump() for h in slow.list_hypotheses(run_id)]
    assert got.model_dump() == slow.get_hypothesis(run_id, hid).model_dump()

    other = MlflowClient(tracking_uri).create_run(experiment_id).info.run_id   # not ours
    for client in (InsightsClient(tracking_uri), slow):
        with pytest.raises(NotAnInsightsRunError):
            client.list_hypotheses(other)
        with pytest.raises(NotFoundError, match="not found"):
            client.list_hypotheses("0" * 32)
    MlflowClient(tracking_uri).delete_run(run_id)
    for client in (InsightsClient(tracking_uri), slow):
        with pytest.raises(NotFoundError, match="deleted"):
            client.get_hypothesis(run_id, hid)


def test_census_read_needs_no_mlflow_client_and_matches_the_mlflow_path(
        tracking_uri, experiment_id, monkeypatch):  # noqa: F811
    from helpers.insights_helpers import make_traces
    from insights.errors import NotAnInsightsRunError

    make_traces(tracking_uri, experiment_id, 3)
    writer = InsightsClient(tracking_uri)
    run_id = writer.create_analysis(experiment_id, run_name="census")
    bare = writer.create_analysis(experiment_id, run_name="no census yet")
    writer.create_baseline_census(run_id)
    writer.close()

    fast = InsightsClient(tracking_uri)
    got = fast.get_baseline_census(run_id)
    assert fast._mlflow is None
    slow = _via_mlflow(monkeypatch, tracking_uri)
    assert got.model_dump(mode="json") == slow.get_baseline_census(run_id).model_dump(mode="json")
    assert got.run_id == run_id and got.total_traces == 3

    other = MlflowClient(tracking_uri).create_run(experiment_id).info.run_id   # not ours
    for client in (InsightsClient(tracking_uri), slow):
        with pytest.raises(NotFoundError, match="No baseline census in run"):
            client.get_baseline_census(bare)
        with pytest.raises(NotAnInsightsRunError):
            client.get_baseline_census(other)
        with pytest.raises(NotFoundError, match="not found"):
            client.get_baseline_census("0" * 32)
    MlflowClient(tracking_uri).delete_run(run_id)
    for client in (InsightsClient(tracking_uri), slow):
        with pytest.raises(NotFoundError, match="deleted"):
            client.get_baseline_census(run_id)
