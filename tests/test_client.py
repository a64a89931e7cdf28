"""Every InsightsClient method against a real SQLite store and a real `mlflow server`."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Trace

from helpers.fixtures import sqlite_template, tracking_uri  # noqa: F401  (faster fresh stores)
from helpers.insights_helpers import CallCounter, all_runs, make_traces, parent_runs
from insights import (
    AnalysisStatus,
    HypothesisStatus,
    InsightsClient,
    IssueStatus,
    NotFoundError,
    Severity,
)

PLAN = (
    "Search traces with execution_time > 30s for DB lock spans; refute with slow traces "
    "without DB calls. Validated if >80% of slow traces hold a lock wait."
)


@pytest.fixture()
def client(store) -> InsightsClient:
    uri, _ = store
    return InsightsClient(uri)


@pytest.fixture()
def exp(store) -> str:
    return store[1]


@pytest.fixture()
def uri(store) -> str:
    return store[0]


@pytest.fixture()
def t(uri, exp) -> list[str]:
    """Six real traces in the experiment: evidence must cite traces that exist."""
    return make_traces(uri, exp, 6)


@pytest.fixture()
def run_id(client, exp) -> str:
    return client.create_analysis(exp, run_name="Error Investigation",
                                  name="Production Error Analysis",
                                  description="Investigating 500 errors")


# ---------------------------------------------------------------- analyses


def test_create_analysis_returns_run_readable_by_get_analysis(client, exp):
    run_id = client.create_analysis(exp, run_name="Error Investigation",
                                    name="Production Error Analysis",
                                    description="Investigating 500 errors",
                                    metadata={"focus": "errors"})
    analysis = client.get_analysis(run_id)
    assert analysis.run_id == run_id
    assert analysis.experiment_id == exp
    assert analysis.run_name == "Error Investigation"
    assert analysis.name == "Production Error Analysis"
    assert analysis.description == "Investigating 500 errors"
    assert analysis.status == AnalysisStatus.ACTIVE
    assert analysis.metadata == {"focus": "errors"}
    assert analysis.created_at > 0 and analysis.updated_at >= analysis.created_at
    run = MlflowClient(client.tracking_uri).get_run(run_id)
    assert run.info.run_name == "Error Investigation"
    assert run.info.status == "RUNNING"


def test_create_analysis_name_defaults_to_run_name(client, exp):
    run_id = client.create_analysis(exp, run_name="Latency Look")
    assert client.get_analysis(run_id).name == "Latency Look"


def test_create_analysis_uses_mlflow_experiment_id_env(client, exp, monkeypatch):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", exp)
    run_id = client.create_analysis(run_name="From Env")
    assert client.get_analysis(run_id).experiment_id == exp


def test_update_analysis_changes_name_and_description(client, run_id):
    before = client.get_analysis(run_id)
    updated = client.update_analysis(run_id, name="Renamed", description="New findings")
    assert updated.name == "Renamed" and updated.description == "New findings"
    again = client.get_analysis(run_id)
    assert again.name == "Renamed" and again.description == "New findings"
    assert again.status == AnalysisStatus.ACTIVE
    assert again.created_at == before.created_at
    assert again.updated_at >= before.updated_at


def test_update_analysis_completed_finishes_run_and_active_reopens_it(client, run_id):
    mc = MlflowClient(client.tracking_uri)
    done = client.update_analysis(run_id, status="COMPLETED")
    assert done.status == AnalysisStatus.COMPLETED
    assert client.get_analysis(run_id).status == AnalysisStatus.COMPLETED
    assert mc.get_run(run_id).info.status == "FINISHED"

    reopened = client.update_analysis(run_id, status=AnalysisStatus.ACTIVE)
    assert reopened.status == AnalysisStatus.ACTIVE
    assert client.get_analysis(run_id).status == AnalysisStatus.ACTIVE
    assert mc.get_run(run_id).info.status == "RUNNING"


def test_update_analysis_archived_finishes_run(client, run_id):
    client.update_analysis(run_id, status="archived")
    assert client.get_analysis(run_id).status == AnalysisStatus.ARCHIVED
    assert MlflowClient(client.tracking_uri).get_run(run_id).info.status == "FINISHED"


def test_update_analysis_is_reflected_in_list_analyses(client, exp, run_id):
    client.update_analysis(run_id, name="Listed Name", description="listed", status="COMPLETED")
    [listed] = client.list_analyses(exp)
    assert listed.run_id == run_id
    assert listed.name == "Listed Name"
    assert listed.description == "listed"
    assert listed.status == AnalysisStatus.COMPLETED


def test_list_analyses_carries_metadata(client, exp):
    small = client.create_analysis(exp, run_name="small", metadata={"owner": "ana", "n": 3})
    client.update_analysis(small, metadata={"ticket": "OPS-1"})
    big_value = "x" * 6000  # too long for a run tag: read back from the snapshot
    big = client.create_analysis(exp, run_name="big", metadata={"notes": big_value})
    plain = client.create_analysis(exp, run_name="plain")
    listed = {a.run_id: a.metadata for a in client.list_analyses(exp)}
    assert listed[small] == client.get_analysis(small).metadata
    assert listed[small]["owner"] == "ana" and listed[small]["ticket"] == "OPS-1"
    assert listed[big] == {"notes": big_value}
    assert listed[plain] == {}


def test_list_analyses_reads_metadata_of_runs_made_before_the_tag(client, exp):
    from insights import runs

    run_id = client.create_analysis(exp, run_name="old", metadata={"owner": "ana"})
    MlflowClient(client.tracking_uri).delete_tag(run_id, runs.TAG_METADATA)
    [listed] = client.list_analyses(exp)
    assert listed.metadata == {"owner": "ana"}


def test_list_analyses_returns_every_analysis_newest_first(client, exp):
    ids = [client.create_analysis(exp, run_name=f"Analysis {i}") for i in range(3)]
    listed = client.list_analyses(exp)
    assert [a.run_id for a in listed] == list(reversed(ids))
    assert [a.name for a in listed] == ["Analysis 2", "Analysis 1", "Analysis 0"]
    assert all(a.experiment_id == exp for a in listed)


def test_list_analyses_ignores_other_runs_of_the_experiment(client, exp):
    mc = MlflowClient(client.tracking_uri)
    mc.create_run(exp, run_name="training run")
    run_id = client.create_analysis(exp, run_name="Only Analysis")
    assert [a.run_id for a in client.list_analyses(exp)] == [run_id]


# ---------------------------------------------------------------- hypotheses


def test_create_hypothesis_stores_plan_evidence_and_rationale(client, run_id, t):
    hid = client.create_hypothesis(
        run_id, "Database connection pooling causes latency", testing_plan=PLAN,
        evidence=[
            {"trace_id": t[0], "rationale": "45s wait for a pooled connection", "supports": True},
            {"trace_id": t[2], "rationale": "fast despite heavy DB use", "supports": False},
        ],
        rationale="p99 latency doubled at peak",
    )
    h = client.get_hypothesis(run_id, hid)
    assert h.hypothesis_id == hid
    assert h.statement == "Database connection pooling causes latency"
    assert h.testing_plan == PLAN
    assert h.rationale == "p99 latency doubled at peak"
    assert h.status == HypothesisStatus.TESTING
    assert [(e.trace_id, e.rationale, e.supports) for e in h.evidence] == [
        (t[0], "45s wait for a pooled connection", True),
        (t[2], "fast despite heavy DB use", False),
    ]
    assert h.supports_count == 1 and h.refutes_count == 1


def test_update_hypothesis_sets_status_and_adds_evidence_traces_and_plan(client, run_id, t):
    hid = client.create_hypothesis(run_id, "Locks cause timeouts", testing_plan="old plan",
                                   evidence=[{"trace_id": t[0], "rationale": "lock wait"}])
    updated = client.update_hypothesis(
        run_id, hid, status="VALIDATED",
        add_evidence=[
            {"trace_id": t[1], "rationale": "deadlock", "supports": True},
            f"{t[2]}: 35s timeout without DB calls",
        ],
        add_traces=[t[3], t[4], t[0]],
        testing_plan="new plan",
    )
    h = client.get_hypothesis(run_id, hid)
    for got in (updated, h):
        assert got.status == HypothesisStatus.VALIDATED
        assert got.testing_plan == "new plan"
        assert got.statement == "Locks cause timeouts"
        assert got.trace_ids == [t[0], t[1], t[2], t[3], t[4]]
        by_trace = {e.trace_id: e for e in got.evidence}
        assert by_trace[t[0]].rationale == "lock wait"
        assert by_trace[t[1]].rationale == "deadlock"
        assert by_trace[t[2]].rationale == "35s timeout without DB calls"
        assert by_trace[t[2]].supports is True
        # add_traces of an already-cited trace does not duplicate it
        assert len(got.evidence) == 5


def test_update_hypothesis_keeps_earlier_evidence_across_updates(client, run_id, t):
    hid = client.create_hypothesis(run_id, "H")
    client.update_hypothesis(run_id, hid, add_evidence=[f"{t[0]}: first"])
    client.update_hypothesis(run_id, hid, add_evidence=[{"trace_id": t[1], "supports": False}])
    client.update_hypothesis(run_id, hid, status=HypothesisStatus.REJECTED)
    h = client.get_hypothesis(run_id, hid)
    assert h.status == HypothesisStatus.REJECTED
    assert [(e.trace_id, e.supports) for e in h.evidence] == [(t[0], True), (t[1], False)]


def test_list_hypotheses_returns_all_oldest_first(client, run_id):
    ids = [client.create_hypothesis(run_id, f"Statement {i}") for i in range(4)]
    listed = client.list_hypotheses(run_id)
    assert [h.hypothesis_id for h in listed] == ids
    assert [h.statement for h in listed] == [f"Statement {i}" for i in range(4)]


def test_list_hypotheses_only_returns_the_runs_own(client, exp, run_id):
    other = client.create_analysis(exp, run_name="Other")
    mine = client.create_hypothesis(run_id, "mine")
    client.create_hypothesis(other, "theirs")
    assert [h.hypothesis_id for h in client.list_hypotheses(run_id)] == [mine]


def test_list_hypotheses_of_new_analysis_is_empty(client, run_id):
    assert client.list_hypotheses(run_id) == []


# ---------------------------------------------------------------- issues


def test_create_issue_is_readable_by_get_issue(client, exp, run_id, t):
    hid = client.create_hypothesis(run_id, "Pool exhaustion")
    iid = client.create_issue(
        run_id, "Database Connection Pool Exhaustion", description="Pool too small",
        severity="HIGH", hypothesis_id=hid,
        evidence=[{"trace_id": t[0], "rationale": "45s delay"}, f"{t[1]}: timeout after 30s"],
        assessments=["pool_exhaustion"],
    )
    issue = client.get_issue(iid, experiment_id=exp)
    assert issue.issue_id == iid
    assert issue.source_run_id == run_id
    assert issue.hypothesis_id == hid
    assert issue.title == "Database Connection Pool Exhaustion"
    assert issue.description == "Pool too small"
    assert issue.severity == Severity.HIGH
    assert issue.status == IssueStatus.OPEN
    assert issue.trace_ids == [t[0], t[1]]
    assert issue.evidence[1].rationale == "timeout after 30s"
    assert issue.assessments == ["pool_exhaustion"]
    assert issue.resolution is None


def test_update_issue_changes_severity_status_evidence_traces_resolution(client, exp, run_id, t):
    iid = client.create_issue(run_id, "Pool", severity="HIGH",
                              evidence=[{"trace_id": t[0], "rationale": "delay"}])
    updated = client.update_issue(
        run_id, iid, severity="CRITICAL", status="RESOLVED",
        add_evidence=[{"trace_id": t[1], "rationale": "deadlock"}],
        add_traces=[t[5], t[0]],
        resolution="Increased pool size from 10 to 50",
    )
    issue = client.get_issue(iid, experiment_id=exp)
    for got in (updated, issue):
        assert got.severity == Severity.CRITICAL
        assert got.status == IssueStatus.RESOLVED
        assert got.resolution == "Increased pool size from 10 to 50"
        assert got.trace_ids == [t[0], t[1], t[5]]
        assert got.title == "Pool"
        assert got.source_run_id == run_id


def test_update_issue_located_by_experiment_without_run_id(client, exp, run_id):
    iid = client.create_issue(run_id, "Located")
    client.update_issue(issue_id=iid, experiment_id=exp, status="IN_PROGRESS")
    assert client.get_issue(iid, experiment_id=exp).status == IssueStatus.IN_PROGRESS


def test_list_issues_sorted_by_distinct_trace_count_desc(client, exp, run_id, t):
    # Three entries on one trace count once; the issue with two distinct traces ranks first.
    one_trace = client.create_issue(run_id, "one trace", evidence=[
        {"trace_id": t[0], "rationale": "a"},
        {"trace_id": t[0], "rationale": "b"},
        {"trace_id": t[0], "rationale": "c"},
    ])
    no_trace = client.create_issue(run_id, "no trace")
    two_traces = client.create_issue(run_id, "two traces", evidence=[f"{t[1]}: a", f"{t[2]}: b"])
    three_later = client.create_issue(run_id, "three later")
    client.update_issue(run_id, three_later, add_traces=[t[3], t[4], t[5]])
    listed = client.list_issues(exp)
    assert [i.issue_id for i in listed] == [three_later, two_traces, one_trace, no_trace]
    assert [len(i.trace_ids) for i in listed] == [3, 2, 1, 0]


def test_list_issues_reads_mlflow_experiment_id_env(client, exp, run_id, monkeypatch):
    iid = client.create_issue(run_id, "env issue")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", exp)
    assert [i.issue_id for i in client.list_issues()] == [iid]


def test_issues_from_two_analyses_share_the_experiment_list(client, exp, run_id):
    other = client.create_analysis(exp, run_name="Second")
    a = client.create_issue(run_id, "from first")
    b = client.create_issue(other, "from second")
    listed = {i.issue_id: i.source_run_id for i in client.list_issues(exp)}
    assert listed == {a: run_id, b: other}


def test_get_issue_with_no_run_id_uses_mlflow_experiment_id_env(client, exp, run_id, monkeypatch):
    iid = client.create_issue(run_id, "by env", severity="LOW")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", exp)
    issue = client.get_issue(issue_id=iid)
    assert issue.issue_id == iid and issue.severity == Severity.LOW


def test_get_issue_with_no_run_id_and_no_env_searches_experiments(client, exp, run_id, monkeypatch):
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    iid = client.create_issue(run_id, "found anywhere")
    assert client.get_issue(issue_id=iid).title == "found anywhere"


def test_get_issue_unknown_id_raises_not_found(client, exp, run_id, monkeypatch):
    client.create_issue(run_id, "exists")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    with pytest.raises(NotFoundError):
        client.get_issue(issue_id="0" * 32)
    with pytest.raises(NotFoundError):
        client.get_issue(issue_id="0" * 32, experiment_id=exp)


# ---------------------------------------------------------------- previews


def test_preview_hypotheses_returns_real_traces(client, uri, exp, run_id):
    t = make_traces(uri, exp, 3)
    h1 = client.create_hypothesis(run_id, "H1", evidence=[{"trace_id": t[0], "rationale": "r"}])
    client.create_hypothesis(run_id, "H2", evidence=[f"{t[1]}: r"])
    with pytest.raises(NotFoundError, match="tr-not-in-store"):  # refused, nothing added
        client.update_hypothesis(run_id, h1, add_traces=[t[2], "tr-not-in-store"])
    client.update_hypothesis(run_id, h1, add_traces=[t[2]])
    traces = client.preview_hypotheses(run_id)
    assert all(isinstance(tr, Trace) for tr in traces)
    assert sorted(tr.info.trace_id for tr in traces) == sorted(t)
    assert all(tr.info.experiment_id == exp for tr in traces)
    assert all(tr.data.spans for tr in traces)


def test_preview_hypotheses_respects_max_traces(client, uri, exp, run_id):
    t = make_traces(uri, exp, 4)
    client.create_hypothesis(run_id, "H", evidence=[f"{x}: r" for x in t])
    traces = client.preview_hypotheses(run_id, max_traces=2)
    assert [tr.info.trace_id for tr in traces] == t[:2]


def test_preview_issues_returns_real_traces_most_cited_issue_first(client, uri, exp, run_id):
    t = make_traces(uri, exp, 3)
    client.create_issue(run_id, "small", evidence=[f"{t[0]}: r"])
    client.create_issue(run_id, "big", evidence=[f"{t[1]}: r", f"{t[2]}: r"])
    traces = client.preview_issues(exp)
    assert all(isinstance(tr, Trace) for tr in traces)
    assert [tr.info.trace_id for tr in traces] == [t[1], t[2], t[0]]


def test_preview_issues_respects_max_traces_and_env(client, uri, exp, run_id, monkeypatch):
    t = make_traces(uri, exp, 3)
    client.create_issue(run_id, "all", evidence=[f"{x}: r" for x in t])
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", exp)
    traces = client.preview_issues(max_traces=1)
    assert len(traces) == 1 and isinstance(traces[0], Trace)
    assert traces[0].info.trace_id == t[0]


def test_preview_with_no_cited_traces_is_empty(client, exp, run_id):
    client.create_hypothesis(run_id, "no evidence")
    client.create_issue(run_id, "no evidence")
    assert client.preview_hypotheses(run_id) == []
    assert client.preview_issues(exp) == []


# ---------------------------------------------------------------- pitfalls


def test_callers_active_run_stays_active_and_untouched(client, uri, exp, t):
    mc = MlflowClient(uri)
    with mlflow.start_run(experiment_id=exp, run_name="caller") as caller:
        caller_id = caller.info.run_id
        before = mc.get_run(caller_id)

        def check():
            active = mlflow.active_run()
            assert active is not None and active.info.run_id == caller_id

        run_id = client.create_analysis(exp, run_name="Inside")
        check()
        hid = client.create_hypothesis(run_id, "H", evidence=[f"{t[0]}: r"])
        check()
        client.update_hypothesis(run_id, hid, status="VALIDATED", add_traces=[t[1]])
        check()
        iid = client.create_issue(run_id, "I", evidence=[f"{t[0]}: r"])
        check()
        client.update_issue(run_id, iid, status="RESOLVED")
        check()
        client.update_analysis(run_id, status="COMPLETED")
        check()
        client.update_analysis(run_id, status="ACTIVE")
        check()
        client.list_analyses(exp), client.list_hypotheses(run_id), client.list_issues(exp)
        client.get_analysis(run_id), client.get_issue(iid), client.preview_issues(exp)
        client.preview_hypotheses(run_id)
        check()

        after = mc.get_run(caller_id)
        assert after.info.status == "RUNNING"
        assert after.data.tags == before.data.tags
        assert after.data.params == before.data.params
        assert after.data.metrics == before.data.metrics
        children = mc.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{caller_id}'")
        assert children == []
        assert mc.list_artifacts(caller_id) == []
        # the analysis went under the Insights parent, not under the caller's run
        [parent] = parent_runs(mc, exp)
        assert mc.get_run(run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id


def test_reading_an_experiment_without_insights_creates_nothing(client, exp):
    mc = MlflowClient(client.tracking_uri)
    assert client.list_issues(exp) == []
    assert client.list_analyses(exp) == []
    assert client.preview_issues(exp) == []
    with pytest.raises(NotFoundError):
        client.get_issue("0" * 32, experiment_id=exp)
    assert all_runs(mc, exp) == []


def _store_calls(mc) -> list[CallCounter]:
    return [CallCounter(mc, name) for name in
            ("download_artifacts", "list_artifacts", "get_run", "search_runs")]


def test_listing_hypotheses_round_trips_do_not_grow_with_hypotheses(client, run_id):
    """Two hypotheses and eight cost the same store calls (one folder read, not one per file)."""
    counts = []
    for total in (2, 8):
        while len(client.list_hypotheses(run_id)) < total:
            client.create_hypothesis(run_id, "H")
        spies = _store_calls(client.mlflow_client)
        assert len(client.list_hypotheses(run_id)) == total
        counts.append([spy.count for spy in spies])
        for spy in spies:
            spy.calls.clear()
    assert counts[0] == counts[1]
    download, listing, get_run, _ = counts[1]
    assert download <= 1 and listing <= 1 and get_run <= 1


def test_listing_analyses_is_one_search_without_per_analysis_reads(client, exp):
    for i in range(5):
        client.create_analysis(exp, run_name=f"A{i}")
    mc = client.mlflow_client
    downloads = CallCounter(mc, "download_artifacts")
    get_run = CallCounter(mc, "get_run")
    search = CallCounter(mc, "search_runs")
    listed = client.list_analyses(exp)
    assert len(listed) == 5
    assert downloads.count == 0
    assert get_run.count == 0
    if client.tracking_uri.startswith("sqlite:"):
        # a local store is read with one SQL statement of its own (tests/test_fast_reads.py)
        assert search.count == 0
        return
    assert search.count == 1
    # the search is by the analysis tag, so other runs of the experiment are never scanned
    assert "mlflow.insights.type" in str(search.calls[0])


def test_listing_issues_round_trips_do_not_grow_with_issues(client, exp, run_id):
    counts = []
    for total in (2, 8):
        while len(client.list_issues(exp)) < total:
            client.create_issue(run_id, "I")
        spies = _store_calls(client.mlflow_client)
        assert len(client.list_issues(exp)) == total
        counts.append([spy.count for spy in spies])
        for spy in spies:
            spy.calls.clear()
    assert counts[0] == counts[1]
    download, listing, get_run, _ = counts[1]
    assert download <= 1 and listing <= 1 and get_run == 0
