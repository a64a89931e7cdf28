"""The offline analyst: deterministic, census-driven, no model and no network.

Its rules speak only of span types, statuses, durations, lengths, times and assessments, so it
works on applications it has never seen. Thresholds are module constants, documented here:

Census issues (operational facts only, as the playbook says):
- trace error rate >= 5%  (severity CRITICAL >= 25%, HIGH >= 10%, else MEDIUM);
- an operation span (TOOL, RETRIEVER, LLM, CHAT_MODEL, EMBEDDING, RERANKER, PARSER) failing in
  >= 5% of its calls with >= 5 failures (HIGH >= 20%, else MEDIUM);
- latency outliers: p99 >= 5x the median and max >= 10 s (MEDIUM; HIGH if max >= 60 s).
Hypotheses: the screen in ``agent.mining`` (p < 0.01, rate ratio >= 2, >= 5 events) on the exploration half; verdicts by the plan's rule
on the holdout half (``agent.plans``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.drafts import EvidenceDraft, HypothesisDraft, IssueDraft, Verdict
from agent.frame import quote
from agent.mining import Candidate, screen
from agent.plans import EXPLORE_SQL, Plan, run_plan

if TYPE_CHECKING:
    from insights.analytics.census_model import Census

ERROR_RATE_ISSUE = 0.05
SPAN_FAILURE_ISSUE = 0.05
SPAN_MIN_FAILURES = 5
OUTLIER_RATIO = 5.0
OUTLIER_MIN_MAX_MS = 10_000
OPERATION_SPAN_TYPES = {"TOOL", "RETRIEVER", "LLM", "CHAT_MODEL", "EMBEDDING", "RERANKER", "PARSER"}
EVIDENCE_PER_ISSUE = 15
# Evidence is cited from where failures concentrate: traces of the busiest failing hour first.
DENSEST_FIRST = ("ORDER BY count(*) OVER (PARTITION BY CAST(floor(request_time_ms / 3600000) AS BIGINT)) "
                 "DESC, request_time_ms")
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
        drafts = []
        if not census.total_traces:
            return drafts
        drafts += self._error_rate_issue(census, toolkit)
        drafts += self._span_failure_issues(census, toolkit)
        drafts += self._latency_outlier_issue(census, toolkit)
        return drafts

    def _error_rate_issue(self, census, toolkit) -> list[IssueDraft]:
        rate, total = census.error_rate or 0.0, census.total_traces
        if rate < ERROR_RATE_ISSUE:
            return []
        severity = "CRITICAL" if rate >= 0.25 else "HIGH" if rate >= 0.10 else "MEDIUM"
        rows = toolkit.sql(
            "SELECT trace_id, transform(filter(spans, s -> s.status_code = 'ERROR'), "
            "s -> concat(s.name, ': ', coalesce(s.status_message, ''))) AS errs "
            f"FROM traces WHERE state = 'ERROR' {DENSEST_FIRST} LIMIT {EVIDENCE_PER_ISSUE}"
        ).rows
        top = census.errors[0] if census.errors else None
        evidence = [EvidenceDraft(trace_id=r[0], rationale=_error_text(r[1]) or "trace status ERROR")
                    for r in rows]
        return [IssueDraft(
            key="census:error_rate",
            title=f"{rate:.0%} of traces end in an error",
            description=(f"{census.error_traces} of {total} traces ({rate:.1%}) have ERROR status. "
                         f"Most frequent error: {top.message if top else 'n/a'} "
                         f"({top.count if top else 0} times). "
                         f"Impact: {census.error_traces} traces affected. This issue was identified "
                         "from census data."),
            severity=severity, evidence=evidence,
            metrics={"error_traces": census.error_traces, "total_traces": total, "error_rate": rate},
        )]

    def _span_failure_issues(self, census, toolkit) -> list[IssueDraft]:
        drafts = []
        for span in census.spans:
            if (span.span_type not in OPERATION_SPAN_TYPES
                    or span.error_count < SPAN_MIN_FAILURES
                    or span.error_rate < SPAN_FAILURE_ISSUE):
                continue
            name, rate = span.name, span.error_rate
            rows = toolkit.sql(
                "SELECT trace_id, s.status_message FROM traces LATERAL VIEW explode(spans) x AS s "
                f"WHERE s.name = {quote(name)} AND s.status_code = 'ERROR' "
                f"{DENSEST_FIRST} LIMIT {EVIDENCE_PER_ISSUE}").rows
            evidence = [EvidenceDraft(trace_id=r[0], rationale=f"{name} span failed: {r[1] or 'ERROR'}")
                        for r in rows]
            drafts.append(IssueDraft(
                key=f"census:span_failures:{name}",
                title=f"{(span.span_type or 'Span').title()} '{name}' fails in {rate:.0%} of calls",
                description=(f"The {span.span_type} span '{name}' failed {span.error_count} "
                             f"times in {span.count} calls ({rate:.1%}), in "
                             f"{span.traces_with_error} traces. Impact: "
                             "those requests fail or degrade. This issue was identified from census data."),
                severity="HIGH" if rate >= 0.20 else "MEDIUM", evidence=evidence,
                metrics=span.model_dump(include={"count", "error_count", "error_rate",
                                                 "traces_with_error"}),
            ))
        return drafts

    def _latency_outlier_issue(self, census, toolkit) -> list[IssueDraft]:
        lat = census.latency_ms.all
        p50, p99, top = lat.p50 or 0, lat.p99 or 0, lat.max or 0
        if not p50 or p99 < OUTLIER_RATIO * p50 or top < OUTLIER_MIN_MAX_MS:
            return []
        rows = toolkit.sql(
            f"SELECT trace_id, execution_time_ms FROM traces WHERE execution_time_ms >= {int(p99)} "
            f"ORDER BY execution_time_ms DESC LIMIT {EVIDENCE_PER_ISSUE}").rows
        evidence = [EvidenceDraft(trace_id=r[0], rationale=f"took {r[1] / 1000:.1f} s, "
                                  f"{r[1] / p50:.0f}x the median of {p50 / 1000:.1f} s") for r in rows]
        return [IssueDraft(
            key="census:latency_outliers",
            title=f"Slowest traces take {top / 1000:.0f}s, {p99 / p50:.0f}x the median",
            description=(f"Latency p50 {p50 / 1000:.1f} s, p99 {p99 / 1000:.1f} s, max {top / 1000:.1f} s. "
                         "The slowest 1% of requests wait far longer than typical ones. This issue was "
                         "identified from census data."),
            severity="HIGH" if top >= 60_000 else "MEDIUM", evidence=evidence,
            metrics=lat.model_dump(mode="json"),
        )]

    # ---------------------------------------------------------------- hypotheses

    def propose_hypotheses(self, census: Census, focus: str, toolkit) -> list[HypothesisDraft]:
        toolkit.progress("mining the exploration half of the traces for patterns")
        candidates = screen(toolkit.frame(EXPLORE_SQL))
        candidates.sort(key=lambda c: (not _matches_focus(c, focus), c.p_value))
        return [draft_from_candidate(c) for c in candidates]

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


def draft_from_candidate(c: Candidate) -> HypothesisDraft:
    o, f = c.outcome, c.feature
    scope = f" AND {o.scope_sql}" if o.scope_sql else ""
    plan = Plan(
        cohort=f"({f.sql}){scope}", control=f"NOT ({f.sql}){scope}", outcome=o.sql,
        cohort_label=f.label, control_label=f"the other {'assessed ' if scope else ''}traces",
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
        testing_plan=plan.prose(), plan=plan, issue_title=_issue_title(o.noun, f.label),
    )


def _issue_title(noun: str, label: str, limit: int = 120) -> str:
    """A short title; a long one is cut at a word, never inside a quoted name."""
    title = f"{_cap(noun)} concentrated in {label}"
    if len(title) <= limit:
        return title
    return title[:limit - 1].rsplit(" ", 1)[0] + "…"


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
    key = c.outcome.key.split(":")[0]
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
    errors = _error_text(summary.get("errors"))
    if errors:
        parts.append(errors)
    parts.append(f"request {summary.get('request_chars') or 0} chars, "
                 f"response {summary.get('response_chars') or 0} chars")
    return ", ".join(parts)


def _error_text(errors: Any) -> str:
    errors = [e for e in (errors or []) if e]
    return f"failed span {errors[-1][:160]}" if errors else ""


def _metrics(result) -> dict[str, Any]:
    stats = result.adjusted or result.stats
    keep = ("difference", "ci95", "p_value", "relative_risk", "test")
    out = {k: stats.get(k) for k in keep if k in stats}
    for side in ("cohort", "control"):
        out[side] = {k: stats[side].get(k) for k in ("n", "events", "rate")}
    out["adjusted"] = result.adjusted is not None
    return out
