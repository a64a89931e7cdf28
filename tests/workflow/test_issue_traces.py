"""Issues carry every affected trace (issue 11, item 7): a validated hypothesis's plan and a
census draft's ``where`` select ALL the experiment's matching traces, up to MAX_ISSUE_TRACES;
the true count is kept in metadata and is what lists, the REST API and severity use."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from langgraph.runtime import Runtime
from typer.testing import CliRunner

from agent.drafts import EvidenceDraft, IssueDraft
from agent.plans import Plan
from agent.toolkit import TraceToolkit
from tests.workflow.conftest import Store, offline_context, run_issues
from tests.workflow.conftest import slowest_cut as _threshold
from tests.workflow.conftest import trace_ids_where as _ids
from workflows.analyze_experiment import issues as issue_rules
from workflows.analyze_experiment import nodes
from workflows.analyze_experiment.issues import (
    IssueWriter, census_finding, hypothesis_finding, severity_for,
)




def _validated(client, run_id: str, plan: Plan, supporting: list[str], refuting: list[str],
               metrics: dict | None = None, title: str = "Slow traces") -> str:
    hid = client.create_hypothesis(run_id, f"{plan.cohort_label} have {plan.outcome_label}",
                                   plan.prose(), metadata={"plan": plan.model_dump(),
                                                           "issue_title": title})
    evidence = ([{"trace_id": t, "rationale": f"cited support {t}", "supports": True}
                 for t in supporting]
                + [{"trace_id": t, "rationale": "refutes", "supports": False} for t in refuting])
    client.update_hypothesis(run_id, hid, status="VALIDATED", add_evidence=evidence,
                             metrics=metrics or {"relative_risk": 4.0, "p_value": 1e-6},
                             metadata={"verdict_reason": "12/20 vs 3/60"})
    return hid


@pytest.fixture()
def world(small_store: Store):
    client = small_store.client()
    run_id = client.create_analysis(small_store.experiment_id, run_name="t", name="t")
    toolkit = TraceToolkit(client, small_store.experiment_id, run_id)
    return small_store, client, run_id, toolkit


def test_hypothesis_issue_lists_every_cohort_trace_with_the_outcome_over_all_traces(world) -> None:
    store, client, run_id, toolkit = world
    slow = _threshold(toolkit, 60)
    plan = Plan(cohort=f"execution_time_ms >= {slow}", control=f"execution_time_ms < {slow}",
                outcome="TRUE", cohort_label="slow traces", outcome_label="any outcome")
    every = _ids(toolkit, f"execution_time_ms >= {slow}")
    holdout_only = _ids(toolkit, f"execution_time_ms >= {slow} AND NOT ({nodes.EXPLORE_SQL})")
    assert len(holdout_only) < len(every)   # the issue must not stop at the tested half
    cited, refuting = every[-3:], _ids(toolkit, f"execution_time_ms < {slow}")[:2]
    hid = _validated(client, run_id, plan, cited, refuting)

    writer = IssueWriter(client, toolkit, run_id, store.experiment_id)
    issue_id = writer.record(hypothesis_finding(client.get_hypothesis(run_id, hid), toolkit))
    issue = client.get_issue(issue_id, store.experiment_id)

    assert set(issue.trace_ids) == set(every)
    assert issue.trace_count == issue.metadata["trace_count"] == len(every)
    assert issue.trace_ids[:3] == cited                      # cited examples first
    assert [e.rationale for e in issue.evidence[:3]] == [f"cited support {t}" for t in cited]
    assert {e.rationale for e in issue.evidence[3:]} == {"in slow traces with any outcome"}
    assert not set(refuting) & set(issue.trace_ids)           # refuting evidence stays out
    assert all(e.supports for e in issue.evidence)
    assert issue.hypothesis_id == hid
    assert issue.severity.value == severity_for(len(every), toolkit.count())


def test_census_draft_where_lists_all_its_traces_and_none_keeps_the_cited(world) -> None:
    store, client, run_id, toolkit = world
    errors = _ids(toolkit, "state = 'ERROR'")
    assert len(errors) > 3
    cited = [EvidenceDraft(trace_id=t, rationale="boom") for t in errors[-2:]]
    writer = IssueWriter(client, toolkit, run_id, store.experiment_id)
    with_where = writer.record(census_finding(IssueDraft(
        key="census:errors", title="Errors", description="d", severity="HIGH", evidence=cited,
        where="state = 'ERROR'"), toolkit))
    no_where = writer.record(census_finding(IssueDraft(
        key="census:other", title="Other", description="d", severity="LOW",
        evidence=[EvidenceDraft(trace_id=errors[0], rationale="only this one")]), toolkit))

    issue = client.get_issue(with_where, store.experiment_id)
    assert set(issue.trace_ids) == set(errors) and issue.trace_count == len(errors)
    assert issue.trace_ids[:2] == errors[-2:] and issue.evidence[0].rationale == "boom"
    assert issue.severity.value == "HIGH"                     # a census rule's own severity
    other = client.get_issue(no_where, store.experiment_id)
    assert other.trace_ids == [errors[0]] and other.trace_count == 1


def test_true_count_above_the_listing_cap_is_kept(world, monkeypatch) -> None:
    store, client, run_id, toolkit = world
    monkeypatch.setattr(issue_rules, "MAX_ISSUE_TRACES", 25)
    total = toolkit.count()
    slow = _threshold(toolkit, total // 3)     # a third of the traces: CRITICAL by share
    plan = Plan(cohort=f"execution_time_ms >= {slow}", control=f"execution_time_ms < {slow}",
                outcome="TRUE", cohort_label="slow traces", outcome_label="any outcome")
    every = _ids(toolkit, f"execution_time_ms >= {slow}")
    hid = _validated(client, run_id, plan, every[:2], [])
    writer = IssueWriter(client, toolkit, run_id, store.experiment_id)
    issue_id = writer.record(hypothesis_finding(client.get_hypothesis(run_id, hid), toolkit))
    issue = client.get_issue(issue_id, store.experiment_id)
    assert len(issue.trace_ids) == 25 < len(every)
    assert issue.trace_count == issue.metadata["trace_count"] == len(every)
    assert issue.severity.value == severity_for(len(every), total) == "CRITICAL"


def test_issue_order_follows_true_trace_counts_not_the_old_20_trace_cap(world) -> None:
    """A 75-trace finding citing 5 examples is listed above a 24-trace one citing 20."""
    from insights.cli import app as cli_app
    from insights.server.api import create_app

    store, client, run_id, toolkit = world
    big_cut = _threshold(toolkit, 75)
    big = _ids(toolkit, f"execution_time_ms >= {big_cut}")
    small = [t for t in _ids(toolkit, "TRUE") if t not in set(big)][:24]
    small_where = "trace_id IN (" + ", ".join(f"'{t}'" for t in small) + ")"
    writer = IssueWriter(client, toolkit, run_id, store.experiment_id)
    writer.record(census_finding(IssueDraft(
        key="census:small", title="Small", description="d", where=small_where,
        evidence=[EvidenceDraft(trace_id=t, rationale="x") for t in small[:20]]), toolkit))
    writer.record(census_finding(IssueDraft(
        key="census:big", title="Big", description="d", where=f"execution_time_ms >= {big_cut}",
        evidence=[EvidenceDraft(trace_id=t, rationale="x") for t in big[:5]]), toolkit))

    listed = [(i.title, i.trace_count) for i in client.list_issues(store.experiment_id)]
    assert listed == [("Big", len(big)), ("Small", 24)] and len(big) >= 75

    out = CliRunner().invoke(cli_app, ["list-issues", "--experiment-id", store.experiment_id,
                                       "--output", "json"], env={"MLFLOW_TRACKING_URI": store.uri})
    assert out.exit_code == 0, out.output
    assert [(i["title"], i["trace_count"]) for i in json.loads(out.stdout)["issues"]] == listed

    api = TestClient(create_app(store.uri))
    response = api.post("/api/3.0/mlflow/traces/insights/agentic/issues/list",
                        json={"experiment_id": store.experiment_id, "sort_by": "trace_count"})
    assert response.status_code == 200, response.text
    assert [(i["title"], i["trace_count"]) for i in response.json()["issues"]] == listed


def test_issues_from_hypotheses_node_writes_all_traces_and_true_severity(small_store: Store) -> None:
    ctx = offline_context(small_store, auto_answer=True)
    client = ctx.client
    run_id = client.create_analysis(small_store.experiment_id, run_name="t", name="t")
    toolkit = TraceToolkit(client, small_store.experiment_id, run_id)
    slow = _threshold(toolkit, 40)
    plan = Plan(cohort=f"execution_time_ms >= {slow}", control=f"execution_time_ms < {slow}",
                outcome="TRUE", cohort_label="slow traces", outcome_label="any outcome")
    every = _ids(toolkit, f"execution_time_ms >= {slow}")
    _validated(client, run_id, plan, every[:2], [])
    state = {"experiment_id": small_store.experiment_id, "run_id": run_id}
    nodes.issues_from_hypotheses(state, Runtime(context=ctx))
    [issue] = run_issues(client, small_store.experiment_id, run_id)
    assert set(issue.trace_ids) == set(every) and issue.trace_count == len(every) > 20
    assert issue.severity.value == severity_for(len(every), toolkit.count())
    assert f"Impact: {len(every)} of {toolkit.count()} traces" in issue.description


def test_a_predicate_trace_sql_refuses_keeps_the_cited_traces(world) -> None:
    store, client, run_id, toolkit = world
    some = _ids(toolkit, "TRUE")[:2]
    writer = IssueWriter(client, toolkit, run_id, store.experiment_id)
    issue_id = writer.record(census_finding(IssueDraft(
        key="census:bad", title="Bad predicate", description="d", where="no_such_column = 1",
        evidence=[EvidenceDraft(trace_id=t, rationale="cited") for t in some]), toolkit))
    issue = client.get_issue(issue_id, store.experiment_id)
    assert issue.trace_ids == some and issue.trace_count == 2
    assert "where" not in issue.metadata
