"""The person's word counts (issue 10, item 8): a declined review tests nothing until the person
approves an edited list; a typed hypothesis gets a plan mapped from the trace structure it names,
shown for confirmation, or an untestable-offline reason; the PRD's plain-string evidence works;
a ``.env`` in the current directory and its ``MLFLOW_EXPERIMENT_ID`` are used."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from rich.console import Console
from typer.testing import CliRunner

from agent.statements import map_statement
from agent.terminal import TerminalPrompts
from insights.errors import InvalidInputError
from tests.workflow.conftest import Store, offline_context
from workflows.analyze_experiment import build_graph

# A census of an application the mapping has never seen: every name here is made up.
CENSUS = {
    "latency_ms": {"all": {"p50": 800.0, "p90": 4200.0}},
    "responses": {"request_length": {"p25": 40.0, "p50": 90.0, "p90": 400.0}},
    "spans": [{"name": "fetch_invoice", "span_type": "TOOL"},
              {"name": "rank-docs", "span_type": "RERANKER"},
              {"name": "root", "span_type": "CHAIN"}],
    "assessments": [{"name": "accuracy_check"}],
}
TAGS = {"tier": {"gold", "free"}, "region": {"emea", "apac"}}
UNTESTABLE = "Replies feel curt and skip the practical details"


# ------------------------------------------------------------------ mapping (no store)


def test_span_name_and_error_words_map_to_a_plan() -> None:
    m = map_statement("Requests that call fetch invoice fail more often", CENSUS, TAGS)
    assert m.plan is not None
    assert m.plan.cohort == "(exists(spans, s -> s.name = 'fetch_invoice'))"
    assert m.plan.control == "NOT ((exists(spans, s -> s.name = 'fetch_invoice')))"
    assert m.plan.outcome == "state = 'ERROR'" and m.plan.split == "all"
    assert m.matched == ["cohort: traces with a 'fetch_invoice' span", "outcome: errors"]


def test_tags_latency_length_window_and_assessments_are_recognised() -> None:
    m = map_statement("Traces tagged tier=gold are slow", CENSUS, TAGS)
    assert m.plan.cohort == "(tags['tier'] = 'gold')" and m.plan.outcome == "execution_time_ms > 4200"
    m = map_statement("In the emea region, long requests time out", CENSUS, TAGS)
    assert "tags['region'] = 'emea'" in m.plan.cohort and "length(request) > 400" in m.plan.cohort
    m = map_statement("Between 2026-01-02 10:00 and 2026-01-02 14:00 answers are empty", CENSUS, TAGS)
    assert "request_time_ms >= 1767348000000 AND request_time_ms < 1767362400000" in m.plan.cohort
    assert "response" in m.plan.outcome
    m = map_statement("Reranker traces fail the accuracy_check assessment", CENSUS, TAGS)
    assert "s.span_type = 'RERANKER'" in m.plan.cohort
    assert "a.name = 'accuracy_check'" in m.plan.outcome
    assert m.plan.control.endswith("AND exists(assessments, a -> a.name = 'accuracy_check')")
    m = map_statement("Requests mentioning 'refund' end in errors", CENSUS, TAGS)
    assert m.plan.cohort == "(lower(request) LIKE '%refund%')"


def test_unmappable_statements_get_a_reason_never_a_guess() -> None:
    m = map_statement(UNTESTABLE, CENSUS, TAGS)
    assert m.plan is None and "no outcome" in m.reason and "accuracy_check" in m.reason
    m = map_statement("Spanish speakers get errors more often", CENSUS, TAGS)
    assert m.plan is None and "no group of traces" in m.reason
    assert "fetch_invoice" in m.reason and "tier=" in m.reason   # says what could be named


# ------------------------------------------------------------------ terminal prompts


def _prompts(*typed: str) -> tuple[TerminalPrompts, list[str], io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, width=120)
    answers = list(typed)
    console.input = lambda *args, **kwargs: answers.pop(0)
    return TerminalPrompts(console), answers, out


def test_n_at_the_review_declines_and_the_edit_prompt_takes_edits() -> None:
    items = [{"hypothesis_id": "h1", "statement": "A", "rationale": "", "testing_plan": ""},
             {"hypothesis_id": "h2", "statement": "B", "rationale": "", "testing_plan": ""}]
    prompts, left, _ = _prompts("n", "+ [bold]typed[/bold] hypothesis", "- 2", "y")
    assert prompts({"kind": "review_hypotheses", "hypotheses": items}) == {"approve": False}
    answer = prompts({"kind": "edit_hypotheses", "hypotheses": items, "question": "q",
                      "default": {"approve": False}})
    assert left == []
    assert answer == {"approve": True, "abandon": ["h2"],
                      "add_hypotheses": [{"statement": "[bold]typed[/bold] hypothesis"}]}
    prompts, _, _ = _prompts("")
    assert prompts({"kind": "edit_hypotheses", "hypotheses": items, "question": "q",
                    "default": {"approve": False}}) == {"approve": False}


def test_confirm_plan_prompt_shows_the_plan_and_takes_a_no() -> None:
    payload = {"kind": "confirm_plan", "untestable": [{"hypothesis_id": "u", "statement": UNTESTABLE,
                                                        "reason": "no outcome [x]"}],
               "plans": [{"hypothesis_id": "p1", "statement": "S1", "matched": ["cohort: c"],
                          "testing_plan": "Step 1: select [/x]"},
                         {"hypothesis_id": "p2", "statement": "S2", "matched": ["cohort: d"],
                          "testing_plan": "Step 1: other"}]}
    prompts, left, out = _prompts("", "n")
    assert prompts(payload) == {"decisions": {"p1": "accept", "p2": "reject"}}
    shown = out.getvalue()
    assert "Step 1: select [/x]" in shown and "no outcome [x]" in shown and "cohort: c" in shown


# ------------------------------------------------------------------ the workflow


class Session:
    """A checkpointed thread whose first two questions are answered up front."""

    def __init__(self, store: Store):
        self.client = store.client()
        self.graph = build_graph(checkpointer=InMemorySaver())
        self.config = {"configurable": {"thread_id": uuid.uuid4().hex}}
        self.ctx = offline_context(store, answers={"confirm_description": {},
                                                   "choose_focus": {"focus": "errors"}})

    def step(self, value: Any) -> dict[str, Any] | None:
        for _ in self.graph.stream(value, self.config, context=self.ctx, stream_mode="custom"):
            pass
        interrupts = self.graph.get_state(self.config).interrupts
        return interrupts[0].value if interrupts else None

    @property
    def run_id(self) -> str:
        return self.graph.get_state(self.config).values["run_id"]


def _error_span(client, run_id: str) -> str:
    """A span that fails somewhere in the data (read from the census, as a person would)."""
    spans = [s for s in client.get_baseline_census(run_id).spans if s.span_type == "TOOL"]
    return max(spans, key=lambda s: s.error_count or 0).name


def test_declined_review_tests_nothing_and_a_declined_edit_rejects_the_list(small_store: Store) -> None:
    s = Session(small_store)
    payload = s.step({"experiment_id": small_store.experiment_id})
    assert payload["kind"] == "review_hypotheses" and payload["hypotheses"]
    proposed = [h["hypothesis_id"] for h in payload["hypotheses"]]

    payload = s.step(Command(resume={"approve": False}))
    assert payload["kind"] == "edit_hypotheses" and payload["default"] == {"approve": False}
    assert [h["hypothesis_id"] for h in payload["hypotheses"]] == proposed
    assert s.client.get_analysis(s.run_id).metadata["hypotheses_review"] == "declined"
    for hid in proposed:   # declining stopped the testing
        h = s.client.get_hypothesis(s.run_id, hid)
        assert h.status.value == "TESTING" and h.evidence == []

    span = _error_span(s.client, s.run_id)
    mine = {"statement": "My own hypothesis, with a plan",
            "cohort": f"exists(spans, x -> x.name = '{span}')", "outcome": "state = 'ERROR'"}
    payload = s.step(Command(resume={"approve": False, "add_hypotheses": [mine]}))
    assert payload["kind"] == "review_issues"
    for hid in proposed:
        h = s.client.get_hypothesis(s.run_id, hid)
        assert h.status.value == "REJECTED" and h.evidence == [], h.statement
        assert h.metadata["abandoned_by"] == "person" and h.metadata["declined"]
    (added,) = [h for h in s.client.list_hypotheses(s.run_id) if h.statement == mine["statement"]]
    assert added.status.value in ("VALIDATED", "REJECTED") and added.evidence


def test_an_edited_list_once_approved_is_tested(small_store: Store) -> None:
    s = Session(small_store)
    payload = s.step({"experiment_id": small_store.experiment_id})
    proposed = [h["hypothesis_id"] for h in payload["hypotheses"]]
    assert len(proposed) >= 2
    payload = s.step(Command(resume={"approve": False}))
    assert payload["kind"] == "edit_hypotheses"
    payload = s.step(Command(resume={"approve": True, "abandon": [proposed[0]]}))
    assert payload["kind"] == "review_issues"
    dropped = s.client.get_hypothesis(s.run_id, proposed[0])
    assert dropped.status.value == "REJECTED" and dropped.evidence == []
    for hid in proposed[1:]:
        h = s.client.get_hypothesis(s.run_id, hid)
        assert h.status.value in ("VALIDATED", "REJECTED") and h.metadata.get("verdict_reason")


def test_typed_hypotheses_get_a_confirmed_plan_or_an_untestable_reason(small_store: Store,
                                                                       tmp_path: Path) -> None:
    s = Session(small_store)
    payload = s.step({"experiment_id": small_store.experiment_id})
    assert payload["kind"] == "review_hypotheses"
    span = _error_span(s.client, s.run_id)
    accepted = f"Traces with a {span} span end in errors more often"
    declined = f"Traces with a {span} span are slow"
    payload = s.step(Command(resume={"approve": True, "add_hypotheses": [
        {"statement": accepted}, {"statement": declined}, {"statement": UNTESTABLE}]}))

    assert payload["kind"] == "confirm_plan"
    assert payload["default"] == {"decisions": {p["hypothesis_id"]: "accept" for p in payload["plans"]}}
    plans = {p["statement"]: p for p in payload["plans"]}
    assert set(plans) == {accepted, declined}
    assert f"s.name = '{span}'" in plans[accepted]["testing_plan"]
    assert "state = 'ERROR'" in plans[accepted]["testing_plan"]
    assert plans[accepted]["matched"] == [f"cohort: traces with a '{span}' span", "outcome: errors"]
    (untestable,) = payload["untestable"]
    assert untestable["statement"] == UNTESTABLE and "no outcome" in untestable["reason"]
    for hid in [p["hypothesis_id"] for p in payload["plans"]]:   # nothing tested before the answer
        assert s.client.get_hypothesis(s.run_id, hid).evidence == []

    later = f"Requests whose {span} span fails get empty answers"
    payload = s.step(Command(resume={"decisions": {plans[declined]["hypothesis_id"]: "reject"},
                                     "add_hypotheses": [{"statement": later}]}))
    assert payload["kind"] == "confirm_plan", "a hypothesis typed at the plan question is planned too"
    assert [p["statement"] for p in payload["plans"]] == [later]
    payload = s.step(Command(resume={"decisions": {}}))   # ({} would be read as "no answer")
    assert payload["kind"] == "review_issues"

    by_statement = {h.statement: h for h in s.client.list_hypotheses(s.run_id)}
    ok = by_statement[accepted]
    assert ok.metadata["plan_review"] == "accepted" and f"'{span}'" in ok.metadata["plan"]["cohort"]
    assert ok.status.value in ("VALIDATED", "REJECTED") and ok.evidence
    assert "Step 1" in ok.testing_plan
    assert by_statement[later].status.value in ("VALIDATED", "REJECTED")
    no = by_statement[declined]
    assert no.status.value == "TESTING" and no.evidence == [] and "plan" not in no.metadata
    assert "declined" in no.metadata["untestable"]
    vague = by_statement[UNTESTABLE]
    assert vague.status.value == "TESTING" and "no outcome" in vague.metadata["untestable"]

    assert s.step(Command(resume={"decisions": {}})) and s.step(Command(resume={"log": False}))
    report = tmp_path / "r.md"
    assert s.step(Command(resume={"path": str(report)})) is None
    text = report.read_text()
    assert "## Hypotheses not tested" in text
    assert f"- {UNTESTABLE}: not testable offline: no outcome" in text
    assert f"- {declined}: not testable offline: the person declined" in text


# ------------------------------------------------------------------ plain-string evidence


def test_prd_plain_string_evidence_attaches_to_the_hypothesis_traces(small_store: Store) -> None:
    client = small_store.client()
    exp = small_store.experiment_id
    run_id = client.create_analysis(exp, run_name="Notes", name="Notes")
    t1, t2, t3 = [r[0] for r in client.execute_sql(
        exp, "SELECT trace_id FROM traces ORDER BY trace_id LIMIT 3").rows]
    hid = client.create_hypothesis(run_id, "Pool exhaustion slows requests", "Step 1: ...",
                                   evidence=[{"trace_id": t1, "rationale": "slow"},
                                             {"trace_id": t2, "rationale": "slow too"}])
    note = "Found 50ms delay in connection acquisition"
    h = client.update_hypothesis(run_id, hid, status="VALIDATED", add_evidence=[note])
    assert [(e.trace_id, e.rationale) for e in h.evidence if e.rationale == note] == [(t1, note), (t2, note)]
    assert h.status.value == "VALIDATED"

    h = client.update_hypothesis(run_id, hid, add_traces=[t3], add_evidence=["Pool empty for 50s"])
    assert [(e.trace_id, e.rationale) for e in h.evidence if e.trace_id == t3] == [(t3, "Pool empty for 50s")]

    bare = client.create_hypothesis(run_id, "No traces yet", "Step 1: ...")
    with pytest.raises(InvalidInputError, match="trace_id"):
        client.update_hypothesis(run_id, bare, status="VALIDATED", add_evidence=[note])
    assert client.get_hypothesis(run_id, bare).status.value == "TESTING"   # nothing changed

    from insights.cli import app

    result = CliRunner().invoke(app, ["update-hypothesis", "--run-id", run_id, "--hypothesis-id", hid,
                                      "--add-evidence", "Retries doubled the wait", "--output", "json"],
                                env={"MLFLOW_TRACKING_URI": small_store.uri})
    assert result.exit_code == 0, result.output
    cited = [e for e in client.get_hypothesis(run_id, hid).evidence if e.rationale == "Retries doubled the wait"]
    assert {e.trace_id for e in cited} == {t1, t2, t3}
    result = CliRunner().invoke(app, ["update-hypothesis", "--run-id", run_id, "--hypothesis-id", bare,
                                      "--add-evidence", note], env={"MLFLOW_TRACKING_URI": small_store.uri})
    assert result.exit_code == 2 and "trace_id" in result.output


# ------------------------------------------------------------------ .env


@pytest.fixture()
def env_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory; the env vars a .env sets are restored afterwards."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(key, raising=False)
    return folder


def _agent(*args: str, env: dict[str, str] | None = None):
    from agent.cli import app

    return CliRunner().invoke(app, list(args), env=env)


def test_dot_env_in_the_current_directory_names_the_store_and_experiment(small_store: Store,
                                                                           env_cwd: Path) -> None:
    (env_cwd / ".env").write_text(f"MLFLOW_TRACKING_URI={small_store.uri}\n"
                                  f"MLFLOW_EXPERIMENT_ID={small_store.experiment_id}\n")
    result = _agent("run", "--yes", "--output", "json", "--report", str(env_cwd / "r.md"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["experiment_id"] == small_store.experiment_id and summary["phase"] == "complete"
    assert small_store.client().get_analysis(summary["run_id"]).status.value == "COMPLETED"


def test_shell_environment_and_env_file_win_over_dot_env(small_store: Store, env_cwd: Path) -> None:
    (env_cwd / ".env").write_text(f"MLFLOW_TRACKING_URI={small_store.uri}\n"
                                  f"MLFLOW_EXPERIMENT_ID={small_store.experiment_id}\n")
    result = _agent("run", "--yes", env={"MLFLOW_EXPERIMENT_ID": "424242"})
    assert result.exit_code != 0 and "424242" in result.output, result.output

    other = env_cwd / "other.env"
    other.write_text(f"MLFLOW_TRACKING_URI={small_store.uri}\nMLFLOW_EXPERIMENT_ID=31337\n")
    result = _agent("run", "--yes", "--env-file", str(other))
    assert result.exit_code != 0 and "31337" in result.output, result.output
    assert small_store.client().list_analyses(small_store.experiment_id) == []
