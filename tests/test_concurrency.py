"""Several processes writing at the same moment, on one SQLite store and on a real server.

Each worker is a separate OS process (``race`` in tests/helpers/concurrency_worker.py) with its
own InsightsClient, MLflow client and connections; all of them warm up, wait at a file barrier
and are released together so they race. The processes are forked from a forkserver that has
imported MLflow and the SDK once (tests/helpers/forked.py), so a worker starts in a fraction of
a second instead of importing MLflow itself.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import ViewType

from helpers import forked
from helpers.concurrency_worker import race
from helpers.fixtures import sqlite_template, tracking_uri  # noqa: F401  (faster fresh stores)
from helpers.insights_helpers import make_traces, parent_runs
from insights import InsightsClient


WORKERS = 4
UPDATES = 5
# Repeat every test in one session (one server start) to measure flakiness:
# INSIGHTS_CONCURRENCY_ROUNDS=20 pytest tests/test_concurrency.py
ROUNDS = int(os.environ.get("INSIGHTS_CONCURRENCY_ROUNDS", "1"))
rounds = pytest.mark.parametrize("round_", range(ROUNDS), ids=lambda r: f"round{r}")


@pytest.fixture(autouse=True)
def _forkserver():
    """Start the workers' forkserver first, so its imports overlap the test's set-up."""
    forked.context()


def run_workers(mode: str, n: int, args: dict, tmp_path: Path) -> list[dict]:
    """Start ``n`` worker processes, release them together, return their JSON results."""
    barrier = Path(tempfile.mkdtemp(dir=tmp_path, prefix=f"barrier-{mode}-"))
    with forked.Workers(race, n, (mode, str(barrier), args), barrier, cwd=tmp_path) as workers:
        deadline = time.monotonic() + 180
        while len(list(barrier.glob("ready-*"))) < n:
            workers.fail_if_any_exited("exited before the barrier")
            if time.monotonic() > deadline:
                pytest.fail("workers did not reach the barrier")
            time.sleep(0.01)
        (barrier / "go").touch()
        return workers.results(timeout=300)


def journal_changes(mc: MlflowClient, run_id: str, folder: str) -> list[dict]:
    """The entity's change files in fold order (their names sort by write time)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mc.download_artifacts(run_id, folder, tmp))
        return [yaml.safe_load(p.read_text()) for p in sorted(local.glob("*.yaml"))]


def last_set(changes: list[dict], field: str):
    values = [c["set"][field] for c in changes if field in (c.get("set") or {})]
    return values[-1] if values else None


@rounds
@pytest.mark.parametrize("mode", ["analysis", "analysis_issue"])
def test_racing_first_analyses_end_under_exactly_one_parent(store, tmp_path, mode, round_):
    uri, exp = store
    mc = MlflowClient(uri)
    traces = dict(zip((f"tr-w{i}" for i in range(WORKERS)), make_traces(uri, exp, WORKERS)))
    results = run_workers(mode, WORKERS, {"uri": uri, "experiment_id": exp, "traces": traces},
                          tmp_path)
    run_ids = sorted(r["run_id"] for r in results)
    assert len(set(run_ids)) == WORKERS

    parents = parent_runs(mc, exp)
    assert len(parents) == 1, [p.info.run_id for p in parents]
    parent_id = parents[0].info.run_id
    assert parents[0].info.run_name == "Insights"
    active_parents = mc.search_runs([exp], "tags.`mlflow.insights.type` = 'parent'",
                                    run_view_type=ViewType.ACTIVE_ONLY)
    assert [p.info.run_id for p in active_parents] == [parent_id]

    for run_id in run_ids:
        run = mc.get_run(run_id)
        assert run.info.lifecycle_stage == "active"
        assert run.data.tags["mlflow.parentRunId"] == parent_id
        assert run.data.tags["mlflow.insights.type"] == "analysis"

    client = InsightsClient(uri)
    assert sorted(a.run_id for a in client.list_analyses(exp)) == run_ids
    if mode == "analysis_issue":
        # the loser of the parent race adopts the winner: no issue is lost
        issues = client.list_issues(exp)
        assert sorted(i.issue_id for i in issues) == sorted(r["issue_id"] for r in results)
        assert sorted(i.source_run_id for i in issues) == run_ids


def test_an_analysis_left_under_a_merged_away_parent_is_adopted_by_the_next_one(store):
    """The end state of a lost race: an analysis re-pointed to a parent that another process
    was merging away (deleted). Creating the next analysis puts it back under the canonical
    parent, so no analysis stays where listings of the parent cannot see it."""
    from insights import runs

    uri, exp = store
    mc, client = MlflowClient(uri), InsightsClient(uri)
    first = client.create_analysis(exp, run_name="first")
    merged_away = mc.create_run(exp, tags={runs.TAG_TYPE: "parent"}).info.run_id
    mc.delete_run(merged_away)
    mc.set_tag(first, runs.MLFLOW_PARENT_RUN_ID, merged_away)

    second = client.create_analysis(exp, run_name="second")
    parents = parent_runs(mc, exp)
    assert len(parents) == 1
    for run_id in (first, second):
        assert mc.get_run(run_id).data.tags[runs.MLFLOW_PARENT_RUN_ID] == parents[0].info.run_id


def _worker_traces(uri: str, exp: str) -> dict[str, str]:
    """A real trace for each (worker, update): evidence must cite traces that exist."""
    names = [f"tr-w{i}-u{k}" for i in range(WORKERS) for k in range(UPDATES)]
    return dict(zip(names, make_traces(uri, exp, len(names))))


@rounds
def test_concurrent_hypothesis_updates_keep_all_evidence(store, tmp_path, round_):
    uri, exp = store
    client = InsightsClient(uri)
    mc = MlflowClient(uri)
    run_id = client.create_analysis(exp, run_name="Shared")
    hid = client.create_hypothesis(run_id, "Shared hypothesis")
    traces = _worker_traces(uri, exp)
    results = run_workers("hypothesis", WORKERS, {
        "uri": uri, "run_id": run_id, "hypothesis_id": hid, "updates": UPDATES,
        "traces": traces}, tmp_path)

    expected = set(traces.values())
    name_of = {v: k for k, v in traces.items()}
    for h in (client.get_hypothesis(run_id, hid), client.list_hypotheses(run_id)[0]):
        assert len(h.evidence) == WORKERS * UPDATES
        assert set(h.trace_ids) == expected
        for e in h.evidence:
            worker, update = name_of[e.trace_id][len("tr-w"):].split("-u")
            assert e.rationale == f"worker {worker} update {update}"
            assert e.supports is (int(update) % 2 == 0)
        written = {s for r in results for s in r["statuses"]}
        assert h.status.value in written
        changes = journal_changes(mc, run_id, f"insights_journal/hypothesis_{hid}")
        assert len(changes) == 1 + WORKERS * UPDATES
        assert h.status.value == last_set(changes, "status")


@rounds
def test_concurrent_issue_updates_keep_all_evidence(store, tmp_path, round_):
    uri, exp = store
    client = InsightsClient(uri)
    mc = MlflowClient(uri)
    run_id = client.create_analysis(exp, run_name="Shared")
    iid = client.create_issue(run_id, "Shared issue", severity="LOW")
    traces = _worker_traces(uri, exp)
    results = run_workers("issue", WORKERS, {
        "uri": uri, "run_id": run_id, "issue_id": iid, "updates": UPDATES,
        "traces": traces}, tmp_path)

    expected = set(traces.values())
    [parent] = parent_runs(mc, exp)
    changes = journal_changes(mc, parent.info.run_id, f"insights_journal/issue_{iid}")
    assert len(changes) == 1 + WORKERS * UPDATES
    written = {tuple(w) for r in results for w in r["written"]}
    for issue in (client.get_issue(iid, experiment_id=exp), client.list_issues(exp)[0]):
        assert issue.issue_id == iid
        assert len(issue.evidence) == WORKERS * UPDATES
        assert set(issue.trace_ids) == expected
        assert (issue.status.value, issue.severity.value) in written
        assert issue.status.value == last_set(changes, "status")
        assert issue.severity.value == last_set(changes, "severity")
