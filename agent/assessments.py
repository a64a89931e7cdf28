"""Assessments on an accepted issue's traces (playbook step 7): one feedback per trace, with
the evidence's rationale, so the problem can be filtered and monitored in MLflow later."""

from __future__ import annotations

import re

from mlflow.entities import AssessmentSource, Feedback
from mlflow.tracing.client import TracingClient

SOURCE_ID = "insights-analysis"


def assessment_name(title: str) -> str:
    """A stable snake_case name for the issue, e.g. 'tool_x_fails_in_40_of_calls'."""
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")[:60] or "insights_issue"


def log_issue_assessments(client, run_id: str, issue) -> int:
    """Log feedback ``value=True`` on every evidence trace of the issue; return how many were
    logged. The issue is marked logged only when at least one was, so an issue with no
    traces, or whose traces all failed, is offered again next time instead of looking done."""
    from mlflow.exceptions import MlflowException

    name = assessment_name(issue.title)
    tracing = TracingClient(client.tracking_uri)
    source = AssessmentSource(source_type="LLM_JUDGE", source_id=SOURCE_ID)
    rationale = {}
    for e in issue.evidence:
        rationale.setdefault(e.trace_id, e.rationale)
    logged = 0
    for trace_id, why in rationale.items():
        feedback = Feedback(name=name, value=True, source=source,
                            rationale=why or issue.title,
                            metadata={"insights_issue_id": issue.issue_id})
        try:
            tracing.log_assessment(trace_id, feedback)
        except MlflowException:  # the trace was deleted since it was cited: skip it
            continue
        logged += 1
    if logged:
        client.update_issue(run_id, issue.issue_id, add_assessments=[name],
                            metadata={"assessments_logged": True})
    return logged
