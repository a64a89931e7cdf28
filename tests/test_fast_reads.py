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
    monkeypatch.setattr(client, "_local_db_path", lambda: None)
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


def test_list_analyses_needs_no_mlflow_client_and_matches_the_mlflow_path(
        tracking_uri, experiment_id, monkeypatch):  # noqa: F811
    """Same analyses, order, fields and warnings as runs.search_analysis_runs: metadata from
    the tag, from the file when too long for a tag, from the tags when a run (made by another
    tool) has neither; an unreadable file is a warning; runs sharing a start time are ordered
    by run id; deleted runs, other runs and other experiments' analyses are left out."""
    from insights.runs import METADATA_TAG_MAX, TAG_NAME, TAG_STATUS, TAG_TYPE
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

    mlflow_client = MlflowClient(tracking_uri)
    writer = InsightsClient(tracking_uri)
    writer.create_analysis(experiment_id, run_name="tagged", description="d", metadata={"k": 1})
    writer.create_analysis(experiment_id, run_name="long", metadata={"k": "x" * METADATA_TAG_MAX})
    broken = writer.create_analysis(experiment_id, run_name="broken",
                                    metadata={"k": "y" * METADATA_TAG_MAX})
    mlflow_client.log_text(broken, "not: [valid", "insights/analysis.yaml")
    for name in ("tie b", "tie a"):          # another tool's runs: our type tag only
        mlflow_client.create_run(experiment_id, start_time=1000, run_name=name,
                                 tags={TAG_TYPE: "analysis", TAG_NAME: name,
                                       TAG_STATUS: "COMPLETED", MLFLOW_RUN_NAME: name})
    gone = writer.create_analysis(experiment_id, run_name="deleted")
    mlflow_client.delete_run(gone)
    mlflow_client.create_run(experiment_id, run_name="not ours")
    other = mlflow_client.create_experiment("other")
    writer.create_analysis(other, run_name="elsewhere")

    fast = InsightsClient(tracking_uri)
    with pytest.warns(Warning):
        listed = fast.list_analyses(experiment_id)
    assert fast._mlflow is None
    with pytest.warns(Warning):
        expected = _via_mlflow(monkeypatch, tracking_uri).list_analyses(experiment_id)
    assert [a.model_dump() for a in listed] == [a.model_dump() for a in expected]
    assert listed.warnings == expected.warnings and len(listed.warnings) == 1
    assert [a.run_name for a in listed][:3] == ["broken", "long", "tagged"]
    ties = [a.run_id for a in listed[3:]]
    assert len(ties) == 2 and ties == sorted(ties)     # same start time: by run id
    assert listed[1].metadata == {"k": "x" * METADATA_TAG_MAX}
    assert fast.list_analyses(other)[0].run_name == "elsewhere"


def _artifact_files(root) -> dict[str, int]:
    """Every file under an artifact folder (relative path -> permission bits)."""
    import os

    return {str(p.relative_to(root)): os.stat(p).st_mode & 0o777
            for p in root.rglob("*") if p.is_file()}


def test_create_hypothesis_without_evidence_needs_no_mlflow_client_and_writes_alike(
        tracking_uri, experiment_id, monkeypatch):  # noqa: F811
    """No evidence: the run is checked from the store's tables and the two files (the change
    and the snapshot) written as MlflowClient.log_text writes them: the same files, modes and
    contents as the MLflow path, read back alike by both paths."""
    from pathlib import Path

    from insights.errors import NotAnInsightsRunError

    writer = InsightsClient(tracking_uri)
    run_id = writer.create_analysis(experiment_id, run_name="writes")
    root = Path(MlflowClient(tracking_uri).get_run(run_id).info.artifact_uri.replace("file://", ""))
    before = _artifact_files(root)
    fast = InsightsClient(tracking_uri)
    fast_id = fast.create_hypothesis(run_id, "Fast statement", testing_plan="p", rationale="r",
                                     metrics={"n": 1}, metadata={"m": "x"})
    assert fast._mlflow is None
    middle = _artifact_files(root)
    slow = _via_mlflow(monkeypatch, tracking_uri)
    slow_id = slow.create_hypothesis(run_id, "Slow statement", testing_plan="p", rationale="r",
                                     metrics={"n": 1}, metadata={"m": "x"})
    after = _artifact_files(root)

    def shape(files: dict[str, int], hid: str) -> list[tuple[str, int]]:
        """The files with the hypothesis id and the change file's name left out."""
        import re

        return sorted((re.sub(r"/\d{20}-\d+-[0-9a-f]{8}\.yaml$", "/CHANGE.yaml",
                              path.replace(hid, "ID")), mode) for path, mode in files.items())

    made_fast = {k: v for k, v in middle.items() if k not in before}
    made_slow = {k: v for k, v in after.items() if k not in middle}
    assert len(made_fast) == 2 and shape(made_fast, fast_id) == shape(made_slow, slow_id)
    for client in (InsightsClient(tracking_uri), slow):
        got = {h.hypothesis_id: h for h in client.list_hypotheses(run_id)}
        assert got[fast_id].statement == "Fast statement" and got[fast_id].metadata == {"m": "x"}
        dumped = got[fast_id].model_dump()
        twin = got[slow_id].model_dump()
        for key in ("hypothesis_id", "statement", "created_at", "updated_at"):
            dumped.pop(key), twin.pop(key)
        assert dumped == twin

    other = MlflowClient(tracking_uri).create_run(experiment_id).info.run_id   # not ours
    for client in (InsightsClient(tracking_uri), slow):
        with pytest.raises(NotAnInsightsRunError):
            client.create_hypothesis(other, "s")
        with pytest.raises(NotFoundError, match="not found"):
            client.create_hypothesis("0" * 32, "s")
    MlflowClient(tracking_uri).delete_run(run_id)
    for client in (InsightsClient(tracking_uri), slow):
        with pytest.raises(NotFoundError, match="deleted"):
            client.create_hypothesis(run_id, "s")
    assert _artifact_files(root) == after       # refused: nothing written
