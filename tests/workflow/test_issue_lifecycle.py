"""Issues across analyses (issue 12): a signature per issue; a later run's findings update the
issues they match instead of copying them; a resolved issue that recurs is reopened as a
regression; a rejected one only when its trace count changed by half or more."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from langgraph.runtime import Runtime

from agent.drafts import EvidenceDraft, IssueDraft
from agent.plans import Plan
from agent.toolkit import TraceToolkit
from tests.workflow.conftest import EXPERIMENT, Store, offline_context, stream_unattended
from workflows.analyze_experiment import nodes
from workflows.analyze_experiment.issues import IssueWriter, census_finding, plan_key


def _run(store: Store) -> tuple[str, list[dict]]:
    ctx = offline_context(store, auto_answer=True)
    state, events = stream_unattended(store, ctx, {"experiment_id": store.experiment_id})
    assert state.get("phase") == "complete", state
    return state["run_id"], events


@pytest.fixture(scope="module")
def first_analysis(small_demo_store: Store, tmp_path_factory: pytest.TempPathFactory
                   ) -> tuple[Store, str]:
    """The small demo store after one unattended analysis, and that analysis's run id: run
    once for the tests whose story starts there (each writes only to its own copy)."""
    store = small_demo_store.copy_to(tmp_path_factory.mktemp("first-analysis") / "store")
    run_id, _ = _run(store)
    return store, run_id


@pytest.fixture()
def analyzed_once(first_analysis: tuple[Store, str], tmp_path: Path) -> tuple[Store, str]:
    """A private copy of the store after its first analysis, and that analysis's run id."""
    store, run_id = first_analysis
    return store.copy_to(tmp_path / "store"), run_id


def _messages(events: list[dict]) -> list[str]:
    return [e.get("message", "") for e in events if isinstance(e, dict)]


def _cut(toolkit: TraceToolkit, n: int) -> int:
    rows = toolkit.sql("SELECT execution_time_ms FROM traces ORDER BY execution_time_ms DESC "
                       f"LIMIT {n}").rows
    return int(rows[-1][0])


def _draft(where: str, key: str = "census:test_slow") -> IssueDraft:
    return IssueDraft(key=key, title="Slowest traces take long", description="Census fact.",
                      severity="MEDIUM", where=where, evidence=[])


def test_plan_key_is_stable_and_ignores_layout_not_literals() -> None:
    a = Plan(cohort="length(request) > 400", control="NOT (length(request) > 400)",
             outcome="state = 'ERROR'")
    b = Plan(cohort="  LENGTH(request)   >  400 ", control="x", outcome="state = 'ERROR'",
             cohort_label="long requests")
    c = Plan(cohort="length(request) > 400", control="x", outcome="state = 'error'")
    assert plan_key(a) == plan_key(b) != plan_key(c)
    assert plan_key(a).startswith("plan:")


def test_two_unattended_runs_leave_the_issue_count_unchanged(analyzed_once) -> None:
    small_store, first = analyzed_once
    client, exp = small_store.client(), small_store.experiment_id
    before = client.list_issues(exp)
    assert before
    for issue in before:
        sig = issue.metadata.get("signature")
        if issue.metadata.get("source") == "census" or issue.hypothesis_id:
            assert sig and sig["kind"] in ("plan", "census") and sig["key"], issue.metadata
            assert sig["key"] in issue.metadata["signature_keys"]
        assert issue.metadata["analyses"] == [first]
        assert issue.metadata["last_seen"] >= issue.metadata["first_seen"]
        assert [h["event"] for h in issue.metadata["history"]][0] == "seen"

    second, events = _run(small_store)
    after = client.list_issues(exp)
    assert len(after) == len(before), ([i.title for i in before], [i.title for i in after])
    assert {i.issue_id for i in after} == {i.issue_id for i in before}
    for issue in after:
        meta = issue.metadata
        assert meta["analyses"] == [first, second], (issue.title, meta.get("analyses"))
        assert meta["last_seen"] > meta["first_seen"]
        assert {h["run_id"] for h in meta["history"]} == {first, second}
        assert issue.status.value == "OPEN" and not meta.get("regression")
        assert issue.trace_count == len(issue.trace_ids)     # the same traces, not doubled
    assert sum("issue seen again" in m for m in _messages(events)) >= len(after)
    assert not any(m.startswith("regression:") for m in _messages(events))


def test_resolved_issue_recurring_in_new_traces_is_reopened_as_a_regression(
        analyzed_once) -> None:
    from agent.demo import import_demo_app

    small_store, first = analyzed_once
    client, exp = small_store.client(), small_store.experiment_id
    issues = client.list_issues(exp)
    span = [i for i in issues
            if str((i.metadata.get("signature") or {}).get("key", "")).startswith(
                "census:span_failures")]
    assert span, [i.metadata.get("key") for i in issues]
    resolved = span[0]
    client.update_issue(first, resolved.issue_id, status="RESOLVED",
                        resolution="retry with backoff on the provider")
    old_count = client.get_issue(resolved.issue_id).trace_count

    # The same app, an hour later, its flight provider failing all the time.
    demo = import_demo_app()
    demo.build_demo_corpus(small_store.uri, n_traces=60, seed=11, experiment_name=EXPERIMENT,
                           start=datetime.now(timezone.utc) + timedelta(hours=1),
                           plan=demo.FaultPlan(outage_start_s=0, outage_end_s=48 * 3600))

    second, events = _run(small_store)
    issue = client.get_issue(resolved.issue_id)
    meta = issue.metadata
    assert issue.status.value == "OPEN", meta.get("history")
    assert meta["regression"] is True
    assert meta["analyses"] == [first, second]
    assert issue.trace_count > old_count
    [regressed] = [h for h in meta["history"] if h["event"] == "regressed"]
    assert regressed["run_id"] == second and "new traces since it was resolved" in regressed["change"]
    assert any(m.startswith("regression:") and resolved.title in m for m in _messages(events))
    report = Path(client.get_analysis(second).metadata["report_path"]).read_text()
    section = report.split(f"] {resolved.title}", 1)[1].split("\n### ", 1)[0]
    assert "- Regression: " in section and "new traces since it was resolved" in section
    assert "- Seen by 2 analyses" in section
    # the first run's issues were seen again, not copied: the new ones are new findings
    new = [i for i in client.list_issues(exp) if i.source_run_id == second]
    old_keys = set().union(*(i.metadata.get("signature_keys") or [] for i in issues))
    assert not [i.title for i in new if set(i.metadata.get("signature_keys") or []) & old_keys]
    print("NEW", [(i.title, i.metadata.get("signature_keys"), i.trace_count) for i in new])


def test_resumed_issue_node_records_nothing_twice_across_runs(small_store: Store) -> None:
    """The second run's census_issues node, run twice (a crash before its phase was noted):
    one history entry per issue for that run, no new issue."""
    ctx = offline_context(small_store, auto_answer=True)
    client, exp = ctx.client, small_store.experiment_id
    ids = []
    for _ in range(2):
        run_id = client.create_analysis(exp, run_name="t", name="t")
        client.create_baseline_census(run_id)
        ids.append(run_id)
    runtime = Runtime(context=ctx)
    nodes.census_issues({"experiment_id": exp, "run_id": ids[0]}, runtime)
    first = client.list_issues(exp)
    assert first
    for _ in range(2):
        nodes.census_issues({"experiment_id": exp, "run_id": ids[1]}, runtime)
    again = client.list_issues(exp)
    assert {i.issue_id for i in again} == {i.issue_id for i in first}
    for issue in again:
        runs_seen = [h["run_id"] for h in issue.metadata["history"]]
        assert runs_seen.count(ids[1]) == runs_seen.count(ids[0]), issue.metadata["history"]
        assert issue.metadata["analyses"] == ids
        assert issue.trace_count == next(i for i in first if i.issue_id == issue.issue_id).trace_count


def test_rejected_issue_stays_rejected_unless_its_count_changed_by_half(small_store: Store) -> None:
    client, exp = small_store.client(), small_store.experiment_id
    runs = [client.create_analysis(exp, run_name=f"r{n}", name=f"r{n}") for n in range(3)]
    toolkit = TraceToolkit(client, exp, runs[0])
    narrow, wide = f"execution_time_ms >= {_cut(toolkit, 20)}", f"execution_time_ms >= {_cut(toolkit, 40)}"

    def record(run_id: str, where: str) -> str | None:
        return IssueWriter(client, toolkit, run_id, exp).record(census_finding(_draft(where), toolkit))

    issue_id = record(runs[0], narrow)
    client.update_issue(runs[0], issue_id, status="REJECTED", metadata={"review": "rejected"})
    assert record(runs[1], narrow) == issue_id                 # seen, not proposed again
    issue = client.get_issue(issue_id)
    assert issue.status.value == "REJECTED" and len(client.list_issues(exp)) == 1
    assert issue.metadata["history"][-1]["event"] == "seen"
    assert issue.metadata["history"][-1]["status"] == "REJECTED"

    assert record(runs[2], wide) == issue_id                   # twice the traces: reopened
    issue = client.get_issue(issue_id)
    assert issue.status.value == "OPEN" and not issue.metadata.get("regression")
    last = issue.metadata["history"][-1]
    assert last["event"] == "reopened" and "changed from" in last["change"]
    assert issue.metadata["analyses"] == runs
    assert issue.trace_count == toolkit.count(wide)


def test_resolved_issue_seen_in_old_traces_only_stays_resolved(small_store: Store) -> None:
    client, exp = small_store.client(), small_store.experiment_id
    runs = [client.create_analysis(exp, run_name=f"r{n}", name=f"r{n}") for n in range(2)]
    toolkit = TraceToolkit(client, exp, runs[0])
    where = f"execution_time_ms >= {_cut(toolkit, 20)}"
    cited = [r[0] for r in toolkit.sql(f"SELECT trace_id FROM traces WHERE {where} LIMIT 2").rows]
    draft = _draft(where)
    draft.evidence = [EvidenceDraft(trace_id=t, rationale="slow") for t in cited]
    issue_id = IssueWriter(client, toolkit, runs[0], exp).record(census_finding(draft, toolkit))
    client.update_issue(runs[0], issue_id, status="RESOLVED", resolution="fixed")
    IssueWriter(client, toolkit, runs[1], exp).record(census_finding(draft, toolkit))
    issue = client.get_issue(issue_id)
    assert issue.status.value == "RESOLVED" and not issue.metadata.get("regression")
    assert issue.metadata["analyses"] == runs
