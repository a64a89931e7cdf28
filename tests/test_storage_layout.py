"""Where and how Insights lands in MLflow: runs, tags, YAML files, trace links (PRD layout)."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from helpers.fixtures import sqlite_template, tracking_uri  # noqa: F401  (faster fresh stores)
from helpers.insights_helpers import (
    all_runs,
    artifact_tree,
    linked_trace_ids,
    make_traces,
    parent_runs,
    read_artifact_yaml,
)
from insights import InsightsClient


@pytest.fixture()
def setup(store):
    uri, exp = store
    return InsightsClient(uri), MlflowClient(uri), exp, uri


def _snapshots(mc, run_id):
    return [p for p in artifact_tree(mc, run_id) if p.startswith("insights/")]


def test_parent_run_is_named_insights_and_tagged(setup):
    client, mc, exp, _ = setup
    client.create_analysis(exp, run_name="First")
    [parent] = parent_runs(mc, exp)
    run = mc.get_run(parent.info.run_id)
    assert run.info.run_name == "Insights"
    assert run.data.tags["mlflow.runName"] == "Insights"
    assert run.data.tags["mlflow.insights.type"] == "parent"
    assert run.data.tags["mlflow.insights.parent"] == "true"
    assert "mlflow.parentRunId" not in run.data.tags


def test_analysis_runs_are_nested_under_the_single_parent(setup):
    client, mc, exp, _ = setup
    ids = [client.create_analysis(exp, run_name=f"Run {i}", name=f"Analysis {i}") for i in range(3)]
    [parent] = parent_runs(mc, exp)
    assert len(all_runs(mc, exp)) == 4  # one parent + three analyses, nothing else
    for i, run_id in enumerate(ids):
        tags = mc.get_run(run_id).data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["mlflow.insights.type"] == "analysis"
        assert tags["mlflow.insights.name"] == f"Analysis {i}"
        assert tags["mlflow.runName"] == f"Run {i}"


def test_analysis_name_tag_follows_update(setup):
    client, mc, exp, _ = setup
    run_id = client.create_analysis(exp, run_name="R", name="Before")
    client.update_analysis(run_id, name="After")
    assert mc.get_run(run_id).data.tags["mlflow.insights.name"] == "After"


def test_analysis_yaml_is_at_insights_analysis_yaml_with_prd_fields(setup):
    client, mc, exp, _ = setup
    run_id = client.create_analysis(exp, run_name="R", name="Prod Errors", description="500s",
                                    metadata={"k": "v"})
    client.update_analysis(run_id, status="COMPLETED", description="done")
    assert _snapshots(mc, run_id) == ["insights/analysis.yaml"]
    doc = read_artifact_yaml(mc, run_id, "insights/analysis.yaml")
    assert {"name", "description", "status", "created_at", "updated_at", "metadata"} <= set(doc)
    assert doc["name"] == "Prod Errors"
    assert doc["description"] == "done"
    assert doc["status"] == "COMPLETED"
    assert doc["metadata"] == {"k": "v"}
    assert isinstance(doc["created_at"], int) and doc["updated_at"] >= doc["created_at"]


def test_hypothesis_yaml_is_in_the_analysis_run_with_prd_fields(setup):
    client, mc, exp, uri = setup
    t = make_traces(uri, exp, 2)
    run_id = client.create_analysis(exp, run_name="R")
    hid = client.create_hypothesis(
        run_id, "Pool exhaustion", testing_plan="plan",
        evidence=[{"trace_id": t[0], "rationale": "delay", "supports": True}],
        metrics={"p99": 31.5},
    )
    client.update_hypothesis(run_id, hid, status="VALIDATED",
                             add_evidence=[{"trace_id": t[1], "rationale": "fast", "supports": False}])
    assert _snapshots(mc, run_id) == ["insights/analysis.yaml", f"insights/hypothesis_{hid}.yaml"]
    doc = read_artifact_yaml(mc, run_id, f"insights/hypothesis_{hid}.yaml")
    assert {"hypothesis_id", "statement", "testing_plan", "status", "evidence", "metrics",
            "created_at", "updated_at", "metadata"} <= set(doc)
    assert doc["hypothesis_id"] == hid
    assert doc["statement"] == "Pool exhaustion"
    assert doc["testing_plan"] == "plan"
    assert doc["status"] == "VALIDATED"
    assert doc["metrics"] == {"p99": 31.5}
    assert [(e["trace_id"], e["rationale"], e["supports"]) for e in doc["evidence"]] == [
        (t[0], "delay", True), (t[1], "fast", False)]


def test_issue_yaml_is_in_the_parent_run_not_the_analysis_run(setup):
    client, mc, exp, uri = setup
    t = make_traces(uri, exp, 1)
    run_id = client.create_analysis(exp, run_name="R")
    hid = client.create_hypothesis(run_id, "H")
    iid = client.create_issue(run_id, "Pool", description="too small", severity="HIGH",
                              hypothesis_id=hid, evidence=[{"trace_id": t[0], "rationale": "x"}],
                              assessments=["pool"])
    client.update_issue(run_id, iid, status="RESOLVED", resolution="bigger pool")
    [parent] = parent_runs(mc, exp)
    parent_id = parent.info.run_id
    assert _snapshots(mc, parent_id) == [f"insights/issue_{iid}.yaml"]
    assert not any("issue_" in p for p in artifact_tree(mc, run_id))
    doc = read_artifact_yaml(mc, parent_id, f"insights/issue_{iid}.yaml")
    assert {"issue_id", "source_run_id", "hypothesis_id", "title", "description", "severity",
            "status", "evidence", "assessments", "resolution", "created_at", "updated_at",
            "metadata"} <= set(doc)
    assert doc["issue_id"] == iid
    assert doc["source_run_id"] == run_id
    assert doc["hypothesis_id"] == hid
    assert doc["title"] == "Pool" and doc["description"] == "too small"
    assert doc["severity"] == "HIGH" and doc["status"] == "RESOLVED"
    assert doc["resolution"] == "bigger pool"
    assert doc["assessments"] == ["pool"]
    assert [(e["trace_id"], e["rationale"]) for e in doc["evidence"]] == [(t[0], "x")]


def test_evidence_traces_are_linked_to_the_analysis_run(setup):
    client, mc, exp, uri = setup
    t = make_traces(uri, exp, 5)
    run_id = client.create_analysis(exp, run_name="R")
    hid = client.create_hypothesis(run_id, "H", evidence=[{"trace_id": t[0], "rationale": "r"}])
    client.update_hypothesis(run_id, hid, add_evidence=[f"{t[1]}: r"], add_traces=[t[2]])
    iid = client.create_issue(run_id, "I", evidence=[f"{t[3]}: r"])
    client.update_issue(run_id, iid, add_traces=[t[4]])
    assert linked_trace_ids(mc, exp, run_id) == set(t)
    assert set(client.linked_trace_ids(run_id)) == set(t)
    # issue evidence is linked to the analysis run that found it, never to the parent
    [parent] = parent_runs(mc, exp)
    assert linked_trace_ids(mc, exp, parent.info.run_id) == set()


def test_linking_more_than_100_traces_in_one_update_works(setup):
    client, mc, exp, uri = setup
    t = make_traces(uri, exp, 130)
    run_id = client.create_analysis(exp, run_name="R")
    hid = client.create_hypothesis(run_id, "H")
    h = client.update_hypothesis(run_id, hid, add_traces=t)
    assert len(h.trace_ids) == 130
    assert linked_trace_ids(mc, exp, run_id) == set(t)
    assert len(client.preview_hypotheses(run_id, max_traces=500)) == 130
