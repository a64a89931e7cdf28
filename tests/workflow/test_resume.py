"""Idempotency and crash-resume: MLflow is the memory, so a killed run resumed with
``{"run_id": ...}`` (what ``insights-agent run --resume`` does) completes without duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver
from typer.testing import CliRunner

from helpers.insights_helpers import all_traces
from tests.workflow.conftest import Store, offline_context, run_issues
from workflows.analyze_experiment import build_graph

WORKER = Path(__file__).with_name("crash_worker.py")
CURRENCY = "exists(spans, s -> s.span_type = 'TOOL' AND s.name = 'convert_currency')"
FLIGHTS = "exists(spans, s -> s.span_type = 'TOOL' AND s.name = 'search_flights')"
EXTRA = [
    {"statement": "Spanish requests fail more often", "cohort": "tags['locale'] = 'es'",
     "outcome": "state = 'ERROR'"},
    {"statement": "Currency questions get empty answers", "cohort": CURRENCY,
     "outcome": "state = 'OK' AND coalesce(trim(response), '') = ''"},
    {"statement": "Long requests are slow", "cohort": "length(request) > 300",
     "outcome": "execution_time_ms > 5000"},
    {"statement": "Flight searches end in errors", "cohort": FLIGHTS, "outcome": "state = 'ERROR'"},
]
CRASH_AFTER = 2


def snapshot(store: Store, run_id: str) -> dict:
    """What the run holds, in a form that shows duplicates."""
    client = store.client()
    hypotheses = client.list_hypotheses(run_id)
    issues = run_issues(client, store.experiment_id, run_id)
    return {
        "hypothesis_keys": [(h.metadata or {}).get("key") for h in hypotheses],
        "issue_keys": [(i.metadata or {}).get("key") for i in issues],
        "evidence": {h.hypothesis_id: [(e.trace_id, e.rationale, e.supports) for e in h.evidence]
                     for h in hypotheses},
        "issue_evidence": {i.issue_id: [(e.trace_id, e.rationale, e.supports) for e in i.evidence]
                           for i in issues},
        "status": {h.hypothesis_id: h.status.value for h in hypotheses},
    }


def assessment_counts(store: Store, run_id: str) -> Counter:
    """How many assessments each accepted issue's name has on each of its traces."""
    from mlflow import MlflowClient

    from agent.assessments import assessment_name

    tracking = MlflowClient(store.uri)
    # every trace's, in one listing (not a read per trace)
    assessments = {t.info.trace_id: t.info.assessments
                   for t in all_traces(tracking, store.experiment_id)}
    counts: Counter = Counter()
    for issue in run_issues(store.client(), store.experiment_id, run_id):
        name = assessment_name(issue.title)
        for trace_id in issue.trace_ids:
            counts[(trace_id, name)] = sum(a.name == name for a in assessments[trace_id])
    return counts


def assert_no_duplicates(snap: dict) -> None:
    def dupes(items):
        return [k for k, n in Counter(items).items() if n > 1]

    assert None not in snap["hypothesis_keys"]
    assert dupes(snap["hypothesis_keys"]) == [], "duplicate hypotheses"
    assert None not in snap["issue_keys"]
    assert dupes(snap["issue_keys"]) == [], "duplicate issues"
    for hid, entries in snap["evidence"].items():
        assert dupes(entries) == [], f"duplicate evidence on hypothesis {hid}"
    for iid, entries in snap["issue_evidence"].items():
        assert dupes(entries) == [], f"duplicate evidence on issue {iid}"


def test_killed_mid_testing_resumes_to_completion_without_duplicates(
        small_store: Store, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the CLI writes a default report into its working folder
    env = {**os.environ, "CRASH_AFTER_TESTS": str(CRASH_AFTER), "EXTRA_HYPOTHESES": json.dumps(EXTRA)}
    proc = subprocess.run([sys.executable, str(WORKER), small_store.uri, small_store.experiment_id,
                           str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]

    client = small_store.client()
    (listed,) = client.list_analyses(small_store.experiment_id)
    run_id = listed.run_id
    analysis = client.get_analysis(run_id)
    assert analysis.status.value == "ACTIVE"
    assert analysis.metadata["phase"] == "review_hypotheses"
    before = snapshot(small_store, run_id)
    settled = {h for h, s in before["status"].items() if s != "TESTING"}
    assert len(settled) == CRASH_AFTER, before["status"]
    assert len(before["status"]) - len(settled) >= 2, "nothing left to test after the crash"
    assert_no_duplicates(before)

    ctx = offline_context(small_store, auto_answer=True, report_dir=str(tmp_path))
    state = build_graph().invoke({"run_id": run_id}, context=ctx)
    assert state["phase"] == "complete"
    assert state["experiment_id"] == small_store.experiment_id

    after = snapshot(small_store, run_id)
    assert client.get_analysis(run_id).status.value == "COMPLETED"
    assert_no_duplicates(after)
    assert sorted(after["hypothesis_keys"]) == sorted(before["hypothesis_keys"])
    for h in settled:  # what was settled before the crash is not redone
        assert after["evidence"][h] == before["evidence"][h]
        assert after["status"][h] == before["status"][h]
    assert set(after["status"].values()) <= {"VALIDATED", "REJECTED", "TESTING"}
    hypotheses = {h.hypothesis_id: h for h in client.list_hypotheses(run_id)}
    for hid, status in after["status"].items():
        assert status != "TESTING" or hypotheses[hid].metadata.get("untestable")
    assert Path(state["report_path"]).is_file()

    # --resume once more through the CLI: nothing new is written
    result = CliRunner().invoke(__import__("agent.cli", fromlist=["app"]).app, [
        "run", "--resume", run_id, "--tracking-uri", small_store.uri, "--yes", "--output", "json"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert json.loads(result.stdout)["phase"] == "complete"
    assert snapshot(small_store, run_id) == after


def test_rerunning_nodes_on_the_same_run_creates_no_duplicates(small_store: Store, tmp_path: Path) -> None:
    client = small_store.client()
    ctx = offline_context(small_store, auto_answer=True, report_dir=str(tmp_path),
                          answers={"confirm_description": {"add_hypotheses": EXTRA[:2]},
                                   "log_assessments": {"log": True}})
    state = build_graph().invoke({"experiment_id": small_store.experiment_id}, context=ctx)
    run_id = state["run_id"]
    first = snapshot(small_store, run_id)
    assert_no_duplicates(first)
    assert first["issue_keys"], "the run raised no issues, so nothing is checked"
    logged = assessment_counts(small_store, run_id)
    assert logged and set(logged.values()) == {1}

    # invoke the graph twice more on the same run id ...
    for _ in range(2):
        build_graph().invoke({"run_id": run_id}, context=ctx)
        assert snapshot(small_store, run_id) == first
    # ... and once after rewinding the phase, so every node from the census on runs again
    client.update_analysis(run_id, status="ACTIVE", metadata={"phase": "create_analysis"})
    state = build_graph().invoke({"run_id": run_id}, context=ctx)
    assert state["phase"] == "complete"
    assert snapshot(small_store, run_id) == first
    assert assessment_counts(small_store, run_id) == logged, "assessments logged twice"
    assert client.get_analysis(run_id).status.value == "COMPLETED"
    assert len(client.list_analyses(small_store.experiment_id)) == 1


REPHASE_BUG = ("workflows/analyze_experiment/nodes.py test_hypotheses has no _done() guard and "
               "always ends with _mark(..., 'test_hypotheses'), rewinding a resumed analysis's "
               "phase, so every later question is asked again and, unattended, its default "
               "replaces the person's stored answer")


def test_resume_keeps_answers_given_before_the_process_died(small_store: Store, tmp_path: Path) -> None:
    """The person said 'log assessments: yes', then the process died while asking where to
    save the report. ``--resume --yes`` must carry out what they said, not re-ask it."""
    client = small_store.client()
    answered = {kind: {} for kind in ("confirm_description", "choose_focus", "review_hypotheses",
                                      "review_issues")}
    answered["log_assessments"] = {"log": True}
    ctx = offline_context(small_store, auto_answer=False, answers=answered)
    graph = build_graph(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "dies"}}
    graph.invoke({"experiment_id": small_store.experiment_id}, config, context=ctx)
    (pending,) = graph.get_state(config).interrupts
    assert pending.value["kind"] == "report_path"
    run_id = graph.get_state(config).values["run_id"]
    assert client.get_analysis(run_id).metadata["log_assessments"] is True

    later = offline_context(small_store, auto_answer=True, report_dir=str(tmp_path / "later"))
    build_graph().invoke({"run_id": run_id}, context=later)
    meta = client.get_analysis(run_id).metadata
    assert meta["phase"] == "complete"
    assert meta["log_assessments"] is True, "the person's 'yes' was replaced by the default"
    accepted = [i for i in run_issues(client, small_store.experiment_id, run_id)
                if i.metadata.get("review") == "accepted"]
    assert accepted and all(i.metadata.get("assessments_logged") for i in accepted)


def test_resuming_a_completed_analysis_keeps_its_report_path(small_store: Store, tmp_path: Path) -> None:
    client = small_store.client()
    first = offline_context(small_store, auto_answer=True, report_dir=str(tmp_path / "first"))
    run_id = build_graph().invoke({"experiment_id": small_store.experiment_id}, context=first)["run_id"]
    chosen = client.get_analysis(run_id).metadata["report_path"]
    assert chosen.startswith(str(tmp_path / "first"))

    elsewhere = offline_context(small_store, auto_answer=True, report_dir=str(tmp_path / "other"))
    build_graph().invoke({"run_id": run_id}, context=elsewhere)
    assert client.get_analysis(run_id).metadata["report_path"] == chosen
    assert not (tmp_path / "other").exists(), "the report was written to a new default place"
