"""Issues the census proves by themselves: operational facts with their evidence traces.

Thresholds (module constants):
- trace error rate >= 5%  (severity CRITICAL >= 25%, HIGH >= 10%, else MEDIUM); only the
  trace state counts: a span error in a trace that ended OK is not a failed trace;
- a span (any type: TOOL, RETRIEVER, AGENT, CHAT_MODEL, custom... but never a trace's root
  span) failing in >= 5% of its calls with >= 5 failures (HIGH >= 20%, else MEDIUM). A span
  failing for different reasons gives one issue per error type
  (``insights.analytics.errors.error_type``) that clears these thresholds by itself; when
  none does, one issue for the span;
- an assessment failing (on its own scale, ``insights.analytics.assessments``) on >= 20% of
  the traces it was logged on, with >= 10 failing traces (CRITICAL >= 60%, HIGH >= 35%,
  else MEDIUM);
- latency outliers: p99 >= 5x the median and max >= 10 s (MEDIUM; HIGH if max >= 60 s).
Each draft carries ``where``, the SQL predicate of every trace it concerns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.drafts import EvidenceDraft, IssueDraft
from agent.frame import quote
from insights.analytics.assessments import failing_predicate
from insights.analytics.errors import error_type_sql

if TYPE_CHECKING:
    from insights.analytics.census_model import Census

ERROR_RATE_ISSUE = 0.05
SPAN_FAILURE_ISSUE = 0.05
SPAN_MIN_FAILURES = 5
OUTLIER_RATIO = 5.0
OUTLIER_MIN_MAX_MS = 10_000
# Censuses stored before spans had error types only raise issues for these span types.
OPERATION_SPAN_TYPES = {"TOOL", "RETRIEVER", "LLM", "CHAT_MODEL", "EMBEDDING", "RERANKER", "PARSER"}
ASSESSMENT_FAILURE_ISSUE = 0.20
ASSESSMENT_MIN_FAILURES = 10
RATIONALE_CHARS = 200
EVIDENCE_PER_ISSUE = 15
PASSED_UP_SHARE = 0.5   # a span's failures of one type that are mostly its child's are not its own
# Evidence is cited from where failures concentrate: traces of the busiest failing hour first.
HOUR_DENSITY = "count(*) OVER (PARTITION BY CAST(floor(request_time_ms / 3600000) AS BIGINT))"


def densest_first(columns: list[str], source: str, limit: int) -> str:
    """``SELECT columns source`` ordered busiest failing hour first, then by time.

    The window is computed in a subquery, not in ORDER BY: Spark refuses window functions
    there, and the agent's SQL must run on both engines. ``columns`` are ``expr AS name``.
    """
    names = ", ".join(c.rsplit(" AS ", 1)[1] for c in columns)
    return (f"SELECT {names} FROM (SELECT {', '.join(columns)}, request_time_ms AS _at, "
            f"{HOUR_DENSITY} AS _density {source}) AS d "
            f"ORDER BY _density DESC, _at LIMIT {limit}")


def census_issues(census: Census, toolkit) -> list[IssueDraft]:
    """Issues that the census figures prove by themselves, with evidence traces."""
    drafts = []
    if not census.total_traces:
        return drafts
    drafts += _error_rate_issue(census, toolkit)
    drafts += _span_failure_issues(census, toolkit)
    drafts += _assessment_issues(census, toolkit)
    drafts += _latency_outlier_issue(census, toolkit)
    return drafts


def _error_rate_issue(census, toolkit) -> list[IssueDraft]:
    rate, total = census.error_rate or 0.0, census.total_traces
    if rate < ERROR_RATE_ISSUE:
        return []
    severity = "CRITICAL" if rate >= 0.25 else "HIGH" if rate >= 0.10 else "MEDIUM"
    rows = toolkit.sql(densest_first(
        ["trace_id AS trace_id", "transform(filter(spans, s -> s.status_code = 'ERROR'), "
         "s -> concat(s.name, ': ', coalesce(s.status_message, ''))) AS errs"],
        "FROM traces WHERE state = 'ERROR'", EVIDENCE_PER_ISSUE)).rows
    top = _top_error_of_failed_traces(census.errors)
    if top is None:
        most = "Most frequent error: n/a. "
    elif top.failed_traces is None:  # a census stored before errors counted trace outcomes
        most = f"Most frequent error: {top.message} ({top.count} times). "
    else:
        most = (f"Most frequent error in failed traces: {top.message} "
                f"(in {top.failed_traces} failed traces). ")
    evidence = [EvidenceDraft(trace_id=r[0], rationale=error_text(r[1]) or "trace status ERROR")
                for r in rows]
    return [IssueDraft(
        key="census:error_rate", where="state = 'ERROR'",
        title=f"{rate:.0%} of traces end in an error",
        description=(f"{census.error_traces} of {total} traces ({rate:.1%}) have ERROR status "
                     "(span errors in traces that ended OK are not counted). " + most +
                     f"Impact: {census.error_traces} traces affected. This issue was identified "
                     "from census data."),
        severity=severity, evidence=evidence,
        metrics={"error_traces": census.error_traces, "total_traces": total, "error_rate": rate},
    )]


def _top_error_of_failed_traces(errors):
    """The error group found in the most traces that ended in ERROR (old censuses: the first)."""
    if not errors:
        return None
    if any(e.failed_traces is None for e in errors):
        return errors[0]
    top = max(errors, key=lambda e: (e.failed_traces, e.count))
    return top if top.failed_traces else None


def _span_label(span_type: str | None) -> str:
    return (span_type or "span").replace("_", " ").capitalize()


def _span_failure_issues(census, toolkit) -> list[IssueDraft]:
    drafts = []
    passed_up = _passed_up_failures(toolkit) if any(s.error_types for s in census.spans) else set()
    for span in census.spans:
        typed = "error_types" in span.model_fields_set
        if typed:
            if span.count and span.root_count >= span.count:  # the trace's own root span
                continue
        elif span.span_type not in OPERATION_SPAN_TYPES:
            continue
        clearing = [e for e in span.error_types
                    if e.count >= SPAN_MIN_FAILURES and e.count / max(span.count, 1)
                    >= SPAN_FAILURE_ISSUE]
        own = [e for e in span.error_types if (span.name, e.type) not in passed_up]
        if typed and span.error_types and not own:
            continue   # every failure of this span is a child's, passed up
        clearing = [e for e in clearing if e in own]
        if clearing:
            drafts += [_span_type_issue(span, e, toolkit) for e in clearing]
        elif span.error_count >= SPAN_MIN_FAILURES and span.error_rate >= SPAN_FAILURE_ISSUE:
            drafts.append(_span_issue(span, toolkit, typed))
    return drafts


def _passed_up_failures(toolkit) -> set[tuple[str, str]]:
    """(span name, error type) pairs a span fails with mostly because a child span failed with
    the same type first (an agent re-raising its model's exception): the child's issue tells
    it. One query for every failing span."""
    s_type, k_type = error_type_sql("s"), error_type_sql("k")
    rows = toolkit.sql(
        f"SELECT s.name, {s_type} AS t, count_if(size(filter(spans, k -> k.parent_id = s.span_id "
        f"AND k.status_code = 'ERROR' AND {k_type} = {s_type})) = 0) AS own, count(*) AS n "
        "FROM traces LATERAL VIEW explode(spans) x AS s WHERE s.status_code = 'ERROR' "
        "GROUP BY 1, 2").rows
    return {(name, etype) for name, etype, own, n in rows if n and own < PASSED_UP_SHARE * n}


def _outcomes(traces: int, failed: int) -> str:
    return (f"{failed} of those {traces} traces ended in ERROR, {traces - failed} recovered "
            "and ended OK")


def _span_evidence(toolkit, name: str, cond: str) -> list[EvidenceDraft]:
    rows = toolkit.sql(densest_first(
        ["trace_id AS trace_id", "s.status_message AS status_message", "state AS state"],
        "FROM traces LATERAL VIEW explode(spans) x AS s "
        f"WHERE s.name = {quote(name)} AND s.status_code = 'ERROR'{cond}",
        EVIDENCE_PER_ISSUE * 3)).rows
    return _one_per_trace(rows, lambda msg, state: f"{name} span failed: "
                          f"{(msg or 'ERROR')[:160]} (trace ended {state})")


def _one_per_trace(rows: list, rationale) -> list[EvidenceDraft]:
    """Evidence from rows (trace_id, *facts): the first row of each trace, at most
    EVIDENCE_PER_ISSUE, with ``rationale(*facts)``."""
    seen, evidence = set(), []
    for tid, *facts in rows:
        if tid in seen or len(evidence) >= EVIDENCE_PER_ISSUE:
            continue
        seen.add(tid)
        evidence.append(EvidenceDraft(trace_id=tid, rationale=rationale(*facts)))
    return evidence


def _span_type_issue(span, e, toolkit) -> IssueDraft:
    """One (span, error type) issue, titled by the failure's mechanism."""
    name, rate = span.name, e.count / max(span.count, 1)
    etype = error_type_sql("s")
    cond = f" AND {etype} = {quote(e.type)}"
    msg = e.message if e.message and e.message != e.type else ""
    mechanism = f"{e.type} ({msg[:60]})" if msg else e.type
    return IssueDraft(
        key=f"census:span_failures:{name}:{e.type}",
        where=f"exists(spans, s -> s.name = {quote(name)} AND s.status_code = 'ERROR'{cond})",
        title=(f"{_span_label(span.span_type)} '{name}' fails with {mechanism}: "
               f"{e.count} of {span.count} calls, {e.traces} traces"),
        description=(f"The {span.span_type or 'untyped'} span '{name}' failed with {e.type} "
                     f"{e.count} times in {span.count} calls ({rate:.1%}), in {e.traces} "
                     f"traces; {_outcomes(e.traces, e.failed_traces)}. "
                     + (f"Message: \"{msg}\". " if msg else "")
                     + "This issue was identified from census data."),
        severity="HIGH" if rate >= 0.20 else "MEDIUM",
        evidence=_span_evidence(toolkit, name, cond),
        metrics={"count": span.count, "error_count": e.count, "error_rate": round(rate, 4),
                 "traces_with_error": e.traces, "failed_traces": e.failed_traces,
                 "error_type": e.type},
    )


def _span_issue(span, toolkit, typed: bool) -> IssueDraft:
    """All of a span's failures as one issue (no single error type clears the thresholds)."""
    name, rate = span.name, span.error_rate
    kinds = (" Error types: " + ", ".join(f"{e.type} ({e.count})" for e in span.error_types[:5])
             + "." if span.error_types else "")
    outcome = f"; {_outcomes(span.traces_with_error, span.failed_traces)}" if typed else ""
    return IssueDraft(
        key=f"census:span_failures:{name}",
        where=f"exists(spans, s -> s.name = {quote(name)} AND s.status_code = 'ERROR')",
        title=f"{_span_label(span.span_type)} '{name}' fails in {rate:.0%} of calls",
        description=(f"The {span.span_type or 'untyped'} span '{name}' failed "
                     f"{span.error_count} times in {span.count} calls ({rate:.1%}), in "
                     f"{span.traces_with_error} traces{outcome}.{kinds} Impact: "
                     "those requests fail or degrade. This issue was identified from census data."),
        severity="HIGH" if rate >= 0.20 else "MEDIUM", evidence=_span_evidence(toolkit, name, ""),
        metrics=span.model_dump(include={"count", "error_count", "error_rate",
                                         "traces_with_error", "failed_traces"}),
    )


def _assessment_issues(census, toolkit) -> list[IssueDraft]:
    drafts = []
    for a in census.assessments:
        failing = a.failing_traces if a.failing_traces is not None else a.failing
        assessed = a.traces if a.failing_traces is not None else a.count
        rate = failing / assessed if assessed else 0.0
        if failing < ASSESSMENT_MIN_FAILURES or rate < ASSESSMENT_FAILURE_ISSUE:
            continue
        scale = a.scale.scale(a.name) if a.scale else None
        pred = scale.failing_sql("a.value") if scale else failing_predicate("a.value")
        cond = f"a.name = {quote(a.name)} AND {pred}"
        rows = toolkit.sql(densest_first(
            ["trace_id AS trace_id", "a.value AS value", "a.rationale AS rationale"],
            f"FROM traces LATERAL VIEW explode(assessments) y AS a WHERE {cond}",
            EVIDENCE_PER_ISSUE * 3)).rows
        evidence = _one_per_trace(rows, lambda value, why, name=a.name: (
            (why or "").strip()[:RATIONALE_CHARS] or f"'{name}' assessed {value}"))
        quoted = "; ".join(f"\"{r.rationale}\" ({r.count}x)" for r in a.failing_rationales[:3])
        rule = f" ({scale.rule})" if scale and scale.rule else ""
        drafts.append(IssueDraft(
            key=f"census:assessment:{a.name}",
            where=f"exists(assessments, a -> {cond})",
            title=(f"'{a.name}' assessment fails on {rate:.0%} of assessed traces "
                   f"({failing} of {assessed})"),
            description=(f"The '{a.name}' assessment{rule} fails on {failing} of the {assessed} "
                         f"traces it was logged on ({rate:.1%}). "
                         + (f"Most frequent rationales of failing ones: {quoted}. "
                            if quoted else "")
                         + "This issue was identified from census data."),
            severity="CRITICAL" if rate >= 0.60 else "HIGH" if rate >= 0.35 else "MEDIUM",
            evidence=evidence,
            metrics={"assessment": a.name, "assessed_traces": assessed,
                     "failing_traces": failing, "failing_rate": round(rate, 4),
                     "scale": a.scale.model_dump(mode="json") if a.scale else None},
        ))
    return drafts


def _latency_outlier_issue(census, toolkit) -> list[IssueDraft]:
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
        key="census:latency_outliers", where=f"execution_time_ms >= {int(p99)}",
        title=f"Slowest traces take {top / 1000:.0f}s, {p99 / p50:.0f}x the median",
        description=(f"Latency p50 {p50 / 1000:.1f} s, p99 {p99 / 1000:.1f} s, max {top / 1000:.1f} s. "
                     "The slowest 1% of requests wait far longer than typical ones. This issue was "
                     "identified from census data."),
        severity="HIGH" if top >= 60_000 else "MEDIUM", evidence=evidence,
        metrics=lat.model_dump(mode="json"),
    )]


def error_text(errors: Any) -> str:
    """The last failed span of a trace, as evidence text."""
    errors = [e for e in (errors or []) if e]
    return f"failed span {errors[-1][:160]}" if errors else ""
