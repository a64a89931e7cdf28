"""Two findings that describe one set of traces become one issue (issue 11, merge half of 6):
the better description gives the title, the evidence is the union, the other finding is kept in
``metadata["merged_findings"]``; re-running the issue nodes duplicates nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from langgraph.runtime import Runtime

from agent.drafts import EvidenceDraft, IssueDraft
from agent.plans import Plan
from agent.report import write_report
from agent.toolkit import TraceToolkit
from tests.workflow.conftest import Store, offline_context, run_issues
from tests.workflow.conftest import slowest_cut as _cut
from tests.workflow.conftest import trace_ids_where as _ids
from workflows.analyze_experiment import nodes
from workflows.analyze_experiment.issues import (
    ALSO_SEEN, MERGE_CONTAINMENT, MERGE_JACCARD, IssueWriter, census_finding,
    hypothesis_finding, same_traces,
)




def _hypothesis(client, run_id: str, toolkit, cohort: str, label: str, title: str,
                ratio: float, p_value: float) -> str:
    plan = Plan(cohort=cohort, control=f"NOT ({cohort})", outcome="TRUE", cohort_label=label,
                outcome_label="a slow answer")
    hid = client.create_hypothesis(run_id, f"{label} are slow", plan.prose(),
                                   metadata={"plan": plan.model_dump(), "issue_title": title})
    cited = _ids(toolkit, cohort)[:3]
    client.update_hypothesis(
        run_id, hid, status="VALIDATED",
        add_evidence=[{"trace_id": t, "rationale": f"{label}: cited", "supports": True}
                      for t in cited],
        metrics={"relative_risk": ratio, "p_value": p_value},
        metadata={"verdict_reason": f"ratio {ratio}x"})
    return hid


@pytest.fixture()
def world(small_store: Store):
    client = small_store.client()
    run_id = client.create_analysis(small_store.experiment_id, run_name="t", name="t")
    toolkit = TraceToolkit(client, small_store.experiment_id, run_id)
    return small_store, client, run_id, toolkit


def test_merge_rule_constants_and_overlap() -> None:
    assert (MERGE_JACCARD, MERGE_CONTAINMENT) == (0.7, 0.8)
    a = {str(i) for i in range(10)}
    assert same_traces(a, {str(i) for i in range(1, 10)})            # Jaccard 0.9
    assert same_traces(a, {str(i) for i in range(2, 12)})            # 8 of 10 each way (0.67)
    assert not same_traces(a, {str(i) for i in range(3)})            # small one inside: kept
    assert not same_traces(a, {str(i) for i in range(4, 14)})        # 6 of 10 each way


def test_census_fact_and_hypothesis_over_the_same_traces_become_one_issue(world) -> None:
    """Like 'long requests' and 'requests mentioning local' on the demo: one set of slow
    traces, found twice. The hypothesis (it names a condition) titles the issue."""
    store, client, run_id, toolkit = world
    census_where = f"execution_time_ms >= {_cut(toolkit, 40)}"
    census_ids = _ids(toolkit, census_where)
    writer = IssueWriter(client, toolkit, run_id, store.experiment_id)
    census_id = writer.record(census_finding(IssueDraft(
        key="census:latency", title="Slowest traces take long", description="Census fact.",
        severity="MEDIUM", where=census_where,
        evidence=[EvidenceDraft(trace_id=t, rationale="census cited") for t in census_ids[:2]]),
        toolkit))
    cohort = f"execution_time_ms >= {_cut(toolkit, 37)}"   # the same traces, nearly
    hyp_ids = _ids(toolkit, cohort)
    assert same_traces(set(census_ids), set(hyp_ids)) and set(hyp_ids) != set(census_ids)
    hid = _hypothesis(client, run_id, toolkit, cohort, "long requests",
                      "Long requests are slow", 8.0, 1e-9)
    merged_id = writer.record(hypothesis_finding(client.get_hypothesis(run_id, hid), toolkit))

    assert merged_id == census_id
    [issue] = run_issues(client, store.experiment_id, run_id)
    union = set(census_ids) | set(hyp_ids)
    assert set(issue.trace_ids) == union and issue.trace_count == len(union)
    assert issue.title == "Long requests are slow"
    assert issue.metadata["key"] == f"hypothesis:{hid}"
    assert issue.metadata["hypothesis_id"] == hid
    assert issue.metadata["merged_findings"] == [
        {"title": "Slowest traces take long", "key": "census:latency", "source": "census"}]
    assert f"{ALSO_SEEN}Slowest traces take long." in issue.description
    assert issue.description.startswith("long requests are slow. ratio 8.0x.")
    rationale = {e.trace_id: e.rationale for e in issue.evidence}
    assert rationale[census_ids[0]] == "census cited"             # cited keep their words
    assert len(issue.evidence) == len(union)                       # one entry per trace


def test_stronger_hypothesis_titles_the_merged_issue_and_weaker_is_recorded(world) -> None:
    store, client, run_id, toolkit = world
    weak_cohort = f"execution_time_ms >= {_cut(toolkit, 40)}"
    strong_cohort = f"execution_time_ms >= {_cut(toolkit, 38)}"
    weak = _hypothesis(client, run_id, toolkit, weak_cohort, "requests mentioning local",
                       "Local requests are slow", 3.0, 1e-4)
    strong = _hypothesis(client, run_id, toolkit, strong_cohort, "long requests",
                         "Long requests are slow", 9.0, 1e-12)
    writer = IssueWriter(client, toolkit, run_id, store.experiment_id)
    writer.record(hypothesis_finding(client.get_hypothesis(run_id, weak), toolkit))
    writer.record(hypothesis_finding(client.get_hypothesis(run_id, strong), toolkit))
    # written in the other order, the stronger one keeps the title
    third = _hypothesis(client, run_id, toolkit, weak_cohort, "weekend requests",
                        "Weekend requests are slow", 2.0, 1e-3)
    writer.record(hypothesis_finding(client.get_hypothesis(run_id, third), toolkit))

    [issue] = run_issues(client, store.experiment_id, run_id)
    assert issue.title == "Long requests are slow"
    assert [m["key"] for m in issue.metadata["merged_findings"]] == [
        f"hypothesis:{weak}", f"hypothesis:{third}"]
    assert "Also seen as: Local requests are slow; Weekend requests are slow." in issue.description
    assert issue.trace_count == len(set(_ids(toolkit, weak_cohort)) | set(_ids(toolkit, strong_cohort)))


def test_a_narrow_finding_inside_a_broad_one_stays_its_own_issue(world) -> None:
    store, client, run_id, toolkit = world
    writer = IssueWriter(client, toolkit, run_id, store.experiment_id)
    broad = _hypothesis(client, run_id, toolkit, f"execution_time_ms >= {_cut(toolkit, 80)}",
                        "slow requests", "Slow requests", 5.0, 1e-8)
    narrow = _hypothesis(client, run_id, toolkit, f"execution_time_ms >= {_cut(toolkit, 15)}",
                         "slowest requests", "Slowest requests", 6.0, 1e-8)
    writer.record(hypothesis_finding(client.get_hypothesis(run_id, broad), toolkit))
    writer.record(hypothesis_finding(client.get_hypothesis(run_id, narrow), toolkit))
    issues = run_issues(client, store.experiment_id, run_id)
    assert sorted(i.title for i in issues) == ["Slow requests", "Slowest requests"]
    assert not any(i.metadata.get("merged_findings") for i in issues)


def test_rerunning_the_issue_nodes_after_a_merge_writes_nothing_twice(small_store: Store,
                                                                       tmp_path: Path) -> None:
    """census_issues then issues_from_hypotheses, each run twice (as after a crash before the
    phase was recorded): the same issues, the same evidence, one merged issue; the report
    lists it once with its true count."""
    ctx = offline_context(small_store, auto_answer=True)
    client, exp = ctx.client, small_store.experiment_id
    run_id = client.create_analysis(exp, run_name="t", name="t")
    client.create_baseline_census(run_id)
    toolkit = TraceToolkit(client, exp, run_id)
    drafts = [d for d in ctx.analyst.census_issues(client.get_baseline_census(run_id), toolkit)
              if d.where]
    assert drafts, "the small demo store has census issues with a predicate"
    draft = drafts[0]
    traces = set(_ids(toolkit, draft.where))     # the census fact's traces, found again
    hid = _hypothesis(client, run_id, toolkit, draft.where, "failed requests",
                      "Requests fail", 7.0, 1e-10)
    state = {"experiment_id": exp, "run_id": run_id}
    runtime = Runtime(context=ctx)

    nodes.census_issues(state, runtime)
    census_only = {i.issue_id: len(i.evidence) for i in run_issues(client, exp, run_id)}
    nodes.census_issues(state, runtime)
    assert {i.issue_id: len(i.evidence) for i in run_issues(client, exp, run_id)} == census_only

    nodes.issues_from_hypotheses(state, runtime)
    after = run_issues(client, exp, run_id)
    nodes.issues_from_hypotheses(state, runtime)
    nodes.census_issues(state, runtime)
    again = run_issues(client, exp, run_id)
    assert [(i.issue_id, i.title, len(i.evidence), i.trace_count) for i in again] == \
        [(i.issue_id, i.title, len(i.evidence), i.trace_count) for i in after]
    assert len(after) == len(census_only)                       # merged, not added
    [merged] = [i for i in after if i.metadata.get("merged_findings")]
    assert merged.title == "Requests fail" and merged.metadata["hypothesis_id"] == hid
    assert {m["key"] for m in merged.metadata["merged_findings"]} == {draft.key}
    assert set(merged.trace_ids) == traces and merged.trace_count == len(traces)

    report = tmp_path / "report.md"
    write_report(client, exp, run_id, str(report))
    text = report.read_text()
    assert text.count("### [") == len(after)
    assert text.count("] Requests fail\n") == 1
    assert f"- Affected traces: {len(traces)}" in text
    assert "- Also seen as: " in text
    assert "Validated hypothesis: failed requests are slow" in text
