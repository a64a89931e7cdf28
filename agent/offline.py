"""The offline analyst: deterministic, census-driven, no model and no network.

Its rules speak only of span types, statuses, durations, lengths, times and assessments, so it
works on applications it has never seen. Census issues: ``agent.census_issues``.
Hypotheses: the screen in ``agent.mining`` (p < 0.01, rate ratio >= 2, >= 5 events) on the exploration half; verdicts by the plan's rule
on the holdout half (``agent.plans``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.census_issues import census_issues, error_text
from agent.drafts import EvidenceDraft, HypothesisDraft, IssueDraft, Verdict
from agent.frame import quote
from agent.mining import Candidate, screen
from agent.plans import EXPLORE_SQL, Plan, run_plan
from agent.titles import issue_title

if TYPE_CHECKING:
    from insights.analytics.census_model import Census

SUPPORTING_EVIDENCE = 8
REFUTING_EVIDENCE = 4


class OfflineAnalyst:
    name = "offline"
    # Model usage an earlier process (a chat-model analyst) spent on this analysis.
    _prior: dict[str, int] = {"model_calls": 0, "tokens": 0}

    def usage(self) -> dict[str, int]:
        return dict(self._prior)

    def restore_usage(self, usage: dict[str, int]) -> None:
        """Carry over what was spent before a resume, so the report counts it all."""
        self._prior = {k: max(int(usage.get(k, 0) or 0), self._prior.get(k, 0))
                       for k in ("model_calls", "tokens")}

    # ---------------------------------------------------------------- understanding

    def describe_agent(self, facts: dict[str, Any]) -> str:
        names = ", ".join(n for n, _ in facts.get("trace_names", [])[:3]) or "unnamed"
        tools = facts.get("tools", [])
        tool_text = "; ".join(
            f"{t} ({n} calls" + (f", args: {', '.join(facts.get('tool_inputs', {}).get(t, [])[:4])}"
                                  if facts.get("tool_inputs", {}).get(t) else "") + ")"
            for t, n in tools[:8]
        ) or "no TOOL spans"
        types = {t for t, _ in facts.get("span_types", [])}
        model = "calls a language model" if types & {"LLM", "CHAT_MODEL"} else "shows no model spans"
        sample = next((s["request"] for s in facts.get("samples", []) if s.get("request")), "")
        return (
            f"An application traced as '{names}' ({facts.get('total_traces', 0)} traces) that "
            f"{model} and uses these tools: {tool_text}. "
            f"A typical request looks like: {sample[:160]!r}."
        )

    # ---------------------------------------------------------------- census issues

    def census_issues(self, census: Census, toolkit) -> list[IssueDraft]:
        return census_issues(census, toolkit)

    # ---------------------------------------------------------------- hypotheses

    def propose_hypotheses(self, census: Census, focus: str, toolkit) -> list[HypothesisDraft]:
        toolkit.progress("mining the exploration half of the traces for patterns")
        frame = toolkit.frame(EXPLORE_SQL)
        candidates = screen(frame, toolkit.frame_sql, EXPLORE_SQL)
        candidates.sort(key=lambda c: (not _matches_focus(c, focus), c.p_value))
        return [draft_from_candidate(c, frame) for c in candidates]

    # ---------------------------------------------------------------- testing

    def test_hypothesis(self, hypothesis, toolkit) -> Verdict:
        raw = (hypothesis.metadata or {}).get("plan")
        if not raw:
            why = (hypothesis.metadata or {}).get("offline_untestable") or "it has no testing plan"
            return Verdict(status="TESTING", reason=f"not testable offline: {why}; "
                           "test it with --model, or restate it")
        plan = Plan.model_validate(raw)
        plan.exclude = validated_exclusions(plan.exclude, plan.outcome, toolkit)
        plan.within = validated_exclusions(plan.within, plan.outcome, toolkit)
        result = run_plan(plan, toolkit.stats, toolkit.progress)
        stats = result.adjusted if result.adjusted and result.adjusted["cohort"]["n"] else result.stats
        evidence = evidence_from_stats(plan, stats, toolkit)
        if result.adjusted is not None and result.verdict == "REJECTED":
            evidence = explained_evidence(plan, result.stats, toolkit) + [
                e for e in evidence if not e.supports]
        return Verdict(status=result.verdict, reason=result.reason, evidence=evidence,
                       metrics=_metrics(result))


def validated_exclusions(exclude: list[str], outcome: str, toolkit) -> list[str]:
    """Only a finding VALIDATED for the same outcome can explain traces away."""
    if not exclude or not toolkit.run_id:
        return []
    plans = [Plan.model_validate(h.metadata["plan"])
             for h in toolkit.client.list_hypotheses(toolkit.run_id)
             if h.status.value == "VALIDATED" and (h.metadata or {}).get("plan")]
    return [e for e in exclude
            if any(e in p.cohort and p.outcome == outcome for p in plans)]


def explained_evidence(plan: Plan, stats: dict[str, Any], toolkit) -> list[EvidenceDraft]:
    """Refuting evidence for a look-alike: its problem traces all lie in a stronger finding."""
    ids = list(stats["cohort"].get("sample_event_trace_ids", []))[:SUPPORTING_EVIDENCE]
    facts = toolkit.summaries(ids)
    toolkit.link(ids)
    return [EvidenceDraft(trace_id=t, supports=False,
                          rationale=f"{_trace_text(facts.get(t))}; {plan.outcome_label} here is "
                                    "already explained by a stronger validated finding")
            for t in ids]


def draft_from_candidate(c: Candidate, frame=None) -> HypothesisDraft:
    o, f = c.outcome, c.feature
    scope = f" AND ({o.scope_sql})" if o.scope_sql else ""
    plan = Plan(
        cohort=f"({f.sql}){scope}", control=f"NOT ({f.sql}){scope}", outcome=o.sql,
        cohort_label=f.label, control_label=_control_label(o),
        outcome_label=o.noun, exclude=list(c.exclude), within=list(c.within),
    )
    statement = f"{_cap(f.label)} {o.label} more often than {plan.control_label}"
    if f.kind == "window":
        statement = f"{_cap(o.noun)} are concentrated in {f.label}"
    rationale = (f"On the exploration half, {c.events}/{c.n} ({c.events / c.n:.0%}) of {f.label} "
                 f"{o.label}, against {c.control_events}/{c.control_n} "
                 f"({c.control_events / max(c.control_n, 1):.0%}) of the rest (p={c.p_value:.1g}).")
    if c.exclude:
        rationale += " Its problem traces overlap a stronger pattern, so the test sets those aside."
    if c.within:
        rationale += " It lies inside a broader pattern, so the test also compares it with the rest of that pattern."
    return HypothesisDraft(
        key=f"mined:{o.key}:{f.key}", statement=statement, rationale=rationale,
        testing_plan=plan.prose(), plan=plan, issue_title=issue_title(c, frame),
    )


def _control_label(o) -> str:
    if not o.scope_sql:
        return "the other traces"
    if o.kind == "assessment":
        return "the other assessed traces"
    if o.detail.get("span"):
        return f"the other traces where {quote(o.detail['span'])} runs"
    return "the other traces where it can happen"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


_FOCUS_WORDS = {
    "error": ("error", "fail", "exception", "crash", "broken"),
    "slow": ("slow", "latency", "time", "performance", "fast"),
    "empty": ("empty", "blank", "missing", "no answer"),
    "assessment": ("quality", "feedback", "assessment", "satisf", "helpful", "score"),
}


def _matches_focus(c: Candidate, focus: str) -> bool:
    focus = (focus or "").lower()
    key = {"span_error": "error", "loop": "error", "span_slow": "slow", "span_empty": "empty",
           "truncated": "empty"}.get(c.outcome.kind, c.outcome.key.split(":")[0])
    return any(w in focus for w in _FOCUS_WORDS.get(key, ()))


def evidence_from_stats(plan: Plan, stats: dict[str, Any], toolkit) -> list[EvidenceDraft]:
    """Supporting: cohort traces with the outcome. Refuting: control traces with it, and
    cohort traces without it."""
    c, k = stats["cohort"], stats["control"]
    support = list(c.get("sample_event_trace_ids", []))[:SUPPORTING_EVIDENCE]
    refute_ctrl = list(k.get("sample_event_trace_ids", []))[:REFUTING_EVIDENCE]
    refute_cohort = list(c.get("sample_nonevent_trace_ids", []))[:REFUTING_EVIDENCE]
    facts = toolkit.summaries(support + refute_ctrl + refute_cohort)
    rates = (f"{c['rate'] or 0:.0%} of {plan.cohort_label} vs {k['rate'] or 0:.0%} of "
             f"{plan.control_label}")
    out = [EvidenceDraft(trace_id=t, supports=True,
                         rationale=f"{_trace_text(facts.get(t))}; in {plan.cohort_label} with "
                                   f"{plan.outcome_label} ({rates})") for t in support]
    out += [EvidenceDraft(trace_id=t, supports=False,
                          rationale=f"{_trace_text(facts.get(t))}; {plan.outcome_label} without "
                                    f"being in {plan.cohort_label}") for t in refute_ctrl]
    out += [EvidenceDraft(trace_id=t, supports=False,
                          rationale=f"{_trace_text(facts.get(t))}; in {plan.cohort_label} but no "
                                    f"{plan.outcome_label}") for t in refute_cohort]
    toolkit.link([e.trace_id for e in out])
    return out


def _trace_text(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "trace"
    parts = [f"{summary.get('state')} after {(summary.get('execution_time_ms') or 0) / 1000:.1f} s"]
    errors = error_text(summary.get("errors"))
    if errors:
        parts.append(errors)
    parts.append(f"request {summary.get('request_chars') or 0} chars, "
                 f"response {summary.get('response_chars') or 0} chars")
    return ", ".join(parts)


def _metrics(result) -> dict[str, Any]:
    stats = result.adjusted or result.stats
    keep = ("difference", "ci95", "p_value", "relative_risk", "test")
    out = {k: stats.get(k) for k in keep if k in stats}
    for side in ("cohort", "control"):
        out[side] = {k: stats[side].get(k) for k in ("n", "events", "rate")}
    out["adjusted"] = result.adjusted is not None
    return out
