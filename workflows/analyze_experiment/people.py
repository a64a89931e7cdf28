"""Talking to the person: interrupts with plain-JSON payloads, and their edits written at once.

Every interrupt payload is a dict with a ``kind`` and a ``default`` (the answer ``--yes``
takes). Every resume value is a dict; besides the answer for that kind it may carry
``add_hypotheses`` (a list of ``{"statement", "rationale"?, "testing_plan"?, "cohort"?,
"control"?, "outcome"?}``) and ``abandon`` (a list of hypothesis ids), applied before the node
does anything else.
"""

from __future__ import annotations

from typing import Any

from langgraph.types import interrupt

from agent.plans import Plan


def ask(ctx, kind: str, payload: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
    """Pause for the person, unless the answer was given up front or the run is unattended."""
    if kind in ctx.answers:
        return {**default, **ctx.answers[kind]}
    if ctx.auto_answer:
        return default
    answer = interrupt({"kind": kind, **payload, "default": default})
    if not isinstance(answer, dict):
        return default
    return {**default, **answer}


def apply_edits(ctx, state: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """Write what the person added or abandoned to MLflow now; return state updates."""
    adds = [a for a in answer.get("add_hypotheses") or [] if isinstance(a, dict) and a.get("statement")]
    run_id = state.get("run_id")
    if not run_id:
        return {"pending_hypotheses": list(state.get("pending_hypotheses") or []) + adds} if adds else {}
    for item in adds:
        create_person_hypothesis(ctx, run_id, item)
    for hypothesis_id in answer.get("abandon") or []:
        ctx.client.update_hypothesis(run_id, hypothesis_id, status="REJECTED",
                                     metadata={"abandoned_by": "person"})
    return {}


def needs_plan(hypothesis) -> bool:
    """A person's hypothesis still TESTING that has neither a plan nor a decision about one:
    ``confirm_plans`` maps it onto the analyst's vocabulary and asks before it is tested."""
    meta = hypothesis.metadata or {}
    return (meta.get("source") == "person" and hypothesis.status.value == "TESTING"
            and not meta.get("plan") and not meta.get("plan_review"))


def create_person_hypothesis(ctx, run_id: str, item: dict[str, Any]) -> str:
    """A hypothesis the person wrote; an explicit cohort/control/outcome makes it executable.
    Without one, ``confirm_plans`` proposes a plan from the statement before it is tested."""
    metadata: dict[str, Any] = {"source": "person", "key": f"person:{item['statement']}"}
    testing_plan = item.get("testing_plan", "")
    if item.get("cohort") and item.get("outcome"):
        plan = Plan(cohort=item["cohort"], control=item.get("control") or f"NOT ({item['cohort']})",
                    outcome=item["outcome"], split="all")
        metadata["plan"] = plan.model_dump()
        testing_plan = testing_plan or plan.prose()
    existing = [h for h in ctx.client.list_hypotheses(run_id)
                if (h.metadata or {}).get("key") == metadata["key"]]
    if existing:
        return existing[0].hypothesis_id
    return ctx.client.create_hypothesis(run_id, item["statement"], testing_plan,
                                        rationale=item.get("rationale") or "Added by the person.",
                                        metadata=metadata)
