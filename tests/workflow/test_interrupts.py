"""Interrupts driven with Command(resume=...) on a checkpointed graph: the person's answers and
edits land in MLflow at once (playbook: "All user inputs MUST be committed ... immediately")."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from mlflow import MlflowClient

from agent.assessments import SOURCE_ID, assessment_name
from tests.workflow.conftest import Store, offline_context, run_issues
from workflows.analyze_experiment import build_graph

EXPECTED_KINDS = ["confirm_description", "choose_focus", "review_hypotheses", "review_issues",
                  "log_assessments", "report_path"]
CORRECTED = "A travel assistant that books flights and hotels (CORRECTED by the person)"
EARLY = {"statement": "Spanish-language requests end in errors more often (added at confirm)",
         "cohort": "tags['locale'] = 'es'", "outcome": "state = 'ERROR'"}
CURRENCY = "exists(spans, s -> s.span_type = 'TOOL' AND s.name = 'convert_currency')"
AT_REVIEW = {"statement": "Currency conversions get empty answers (added at review)",
             "cohort": CURRENCY, "control": f"NOT ({CURRENCY})",
             "outcome": "state = 'OK' AND coalesce(trim(response), '') = ''"}


class Session:
    """One thread of the checkpointed graph; records every interrupt payload it meets."""

    def __init__(self, store: Store):
        self.store = store
        self.client = store.client()
        self.graph = build_graph(checkpointer=InMemorySaver())
        self.config = {"configurable": {"thread_id": uuid.uuid4().hex}}
        self.ctx = offline_context(store, auto_answer=False)
        self.payloads: list[dict[str, Any]] = []

    def step(self, value: Any, on_progress=None) -> dict[str, Any] | None:
        """Run until the next interrupt (returned) or the end (None)."""
        for chunk in self.graph.stream(value, self.config, context=self.ctx, stream_mode="custom"):
            if on_progress:
                on_progress(chunk)
        interrupts = self.graph.get_state(self.config).interrupts
        if not interrupts:
            return None
        payload = interrupts[0].value
        self.payloads.append(payload)
        return payload

    @property
    def values(self) -> dict[str, Any]:
        return self.graph.get_state(self.config).values


def test_interrupt_sequence_and_person_edits_land_in_mlflow(small_store: Store, tmp_path: Path) -> None:
    s = Session(small_store)
    client, exp = s.client, small_store.experiment_id

    # -- confirm_description: correct it and add a hypothesis before the analysis run exists
    payload = s.step({"experiment_id": exp})
    assert payload["kind"] == "confirm_description"
    assert payload["description"] and payload["default"] == {"description": payload["description"]}
    assert client.list_analyses(exp) == []
    payload = s.step(Command(resume={"description": CORRECTED, "add_hypotheses": [EARLY]}))
    assert payload["kind"] == "choose_focus"
    assert "latency" in payload["options"]
    assert client.list_analyses(exp) == [], "the analysis run must not exist before the focus"

    # -- choose_focus: the analysis is created with the description, focus and early hypothesis
    payload = s.step(Command(resume={"focus": "latency"}))
    assert payload["kind"] == "review_hypotheses"
    run_id = s.values["run_id"]
    analysis = client.get_analysis(run_id)
    assert CORRECTED in analysis.description
    assert analysis.metadata["agent_description"] == CORRECTED
    assert analysis.metadata["focus"] == "latency"
    early = [h for h in client.list_hypotheses(run_id) if h.statement == EARLY["statement"]]
    assert len(early) == 1
    assert early[0].metadata["source"] == "person" and early[0].metadata["plan"]["cohort"] == EARLY["cohort"]

    # -- review_hypotheses: abandon one proposed hypothesis, add one with an explicit plan
    listed = {h["hypothesis_id"] for h in payload["hypotheses"]}
    assert early[0].hypothesis_id in listed
    victim = next(h for h in payload["hypotheses"] if h["hypothesis_id"] != early[0].hypothesis_id)
    seen_at_first_test: list[set[str]] = []

    def watch(event: dict[str, Any]) -> None:
        if str(event.get("message", "")).startswith("testing hypothesis") and not seen_at_first_test:
            seen_at_first_test.append({h.statement for h in client.list_hypotheses(run_id)})
            abandoned = client.get_hypothesis(run_id, victim["hypothesis_id"])
            seen_at_first_test.append({abandoned.status.value})

    payload = s.step(Command(resume={"approve": True, "abandon": [victim["hypothesis_id"]],
                                     "add_hypotheses": [AT_REVIEW]}), on_progress=watch)
    assert seen_at_first_test, "no hypothesis was tested"
    assert AT_REVIEW["statement"] in seen_at_first_test[0], "added hypothesis not written at once"
    assert seen_at_first_test[1] == {"REJECTED"}, "abandoned hypothesis not written at once"
    assert payload["kind"] == "review_issues"

    abandoned = client.get_hypothesis(run_id, victim["hypothesis_id"])
    assert abandoned.status.value == "REJECTED"
    assert abandoned.metadata.get("abandoned_by") == "person"
    assert abandoned.evidence == [], "an abandoned hypothesis got evidence"
    added = [h for h in client.list_hypotheses(run_id) if h.statement == AT_REVIEW["statement"]]
    assert len(added) == 1
    added = added[0]
    assert added.metadata["plan"]["control"] == AT_REVIEW["control"]
    assert added.metadata["plan"]["outcome"] == AT_REVIEW["outcome"]
    assert added.status.value in ("VALIDATED", "REJECTED") and added.evidence
    assert "Step 1" in added.testing_plan
    early = client.get_hypothesis(run_id, early[0].hypothesis_id)
    assert early.status.value in ("VALIDATED", "REJECTED") and early.evidence

    # -- review_issues: reject one issue, accept the rest
    assert payload["issues"], "no issues to review"
    rejected = payload["issues"][0]["issue_id"]
    assert set(payload["default"]["decisions"].values()) == {"accept"}
    payload = s.step(Command(resume={"decisions": {rejected: "reject"}}))
    assert payload["kind"] == "log_assessments"
    assert client.get_issue(rejected, exp).status.value == "REJECTED"
    assert payload["default"] == {"log": False}

    # -- log_assessments: yes
    payload = s.step(Command(resume={"log": True}))
    assert payload["kind"] == "report_path"
    report = tmp_path / "chosen" / "report.md"
    assert s.step(Command(resume={"path": str(report)})) is None

    # -- the whole conversation
    assert [p["kind"] for p in s.payloads] == EXPECTED_KINDS
    for p in s.payloads:
        assert "default" in p and isinstance(p["default"], dict)
        assert json.loads(json.dumps(p)) == p, f"{p['kind']} payload is not plain JSON"

    assert client.get_analysis(run_id).status.value == "COMPLETED"
    assert report.is_file()

    issues = run_issues(client, exp, run_id)
    accepted = [i for i in issues if i.issue_id != rejected]
    assert accepted
    assert all(i.metadata.get("review") == "accepted" for i in accepted)
    tracking = MlflowClient(small_store.uri)
    for issue in accepted:
        name = assessment_name(issue.title)
        assert name in issue.assessments
        for trace_id in issue.trace_ids:
            found = [a for a in tracking.get_trace(trace_id).info.assessments if a.name == name]
            assert found, f"no {name!r} assessment on {trace_id}"
            assert found[0].source.source_id == SOURCE_ID
            assert found[0].metadata.get("insights_issue_id") == issue.issue_id
    gone = client.get_issue(rejected, exp)
    assert gone.assessments == [] and not gone.metadata.get("assessments_logged")
