"""Progress streams on LangGraph's custom channel: which hypothesis, its plan, the filters,
the verdicts and the issues (DESIGN "The workflow"; playbook "Transparency and Visibility")."""

from __future__ import annotations

import json

from tests.workflow.conftest import AnalyzedStore, run_issues


def test_custom_stream_names_hypotheses_plans_filters_verdicts_and_issues(analyzed: AnalyzedStore) -> None:
    events = analyzed.events
    assert events and all(isinstance(e, dict) and e.get("kind") == "progress"
                          and isinstance(e.get("message"), str) for e in events)
    json.dumps(events)  # plain data an embedding application can forward
    messages = [e["message"] for e in events]
    client = analyzed.store.client()
    hypotheses = client.list_hypotheses(analyzed.run_id)
    tested = [h for h in hypotheses if h.status.value in ("VALIDATED", "REJECTED")
              and not (h.metadata or {}).get("abandoned_by")]
    assert tested

    for h in tested:
        mine = [e for e in events if e.get("hypothesis_id") == h.hypothesis_id]
        texts = [e["message"] for e in mine]
        assert f"testing hypothesis: {h.statement}" in texts, h.statement
        plans = [t for t in texts if t.startswith("testing plan:")]
        assert plans and h.testing_plan in plans[0] and "Step 1" in plans[0]
        verdicts = [e for e in mine if e.get("verdict")]
        assert [v["verdict"] for v in verdicts] == [h.status.value]
        assert verdicts[0]["message"].startswith(h.status.value)
        assert "supporting" in verdicts[0]["message"] and "refuting" in verdicts[0]["message"]

    # the filters are shown between a hypothesis and its verdict
    first = messages.index(f"testing hypothesis: {tested[0].statement}")
    verdict_at = next(i for i, e in enumerate(events)
                      if e.get("verdict") and e.get("hypothesis_id") == tested[0].hypothesis_id)
    between = messages[first:verdict_at]
    plan = tested[0].metadata["plan"]
    assert any(m.startswith("cohort filter:") and plan["cohort"] in m for m in between), between
    assert any(m.startswith("control filter:") and plan["control"] in m for m in between)
    assert any(m.startswith("outcome:") and plan["outcome"] in m for m in between)

    issues = run_issues(client, analyzed.store.experiment_id, analyzed.run_id)
    # each issue is announced when created, and again when another finding merges into it
    announced: dict[str, str] = {}
    for e in events:
        if e.get("issue_id") and e["message"].startswith(("issue from", "issue merged")):
            assert e["message"].startswith("issue from") or e["issue_id"] in announced
            announced[e["issue_id"]] = e["message"]
    assert {i.issue_id for i in issues} == set(announced)
    for issue in issues:   # the latest announcement names its final title and severity
        assert issue.title in announced[issue.issue_id]
        assert issue.severity.value in announced[issue.issue_id]
    assert any(m.startswith("census:") for m in messages)
    assert any(e.get("run_id") == analyzed.run_id and "COMPLETED" in e["message"] for e in events)
