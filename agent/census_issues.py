"""Issues the census proves by itself: operational facts with their evidence traces.

Thresholds (module constants):
- trace error rate >= 5%  (severity CRITICAL >= 25%, HIGH >= 10%, else MEDIUM);
- an operation span (TOOL, RETRIEVER, LLM, CHAT_MODEL, EMBEDDING, RERANKER, PARSER) failing in
  >= 5% of its calls with >= 5 failures (HIGH >= 20%, else MEDIUM);
- latency outliers: p99 >= 5x the median and max >= 10 s (MEDIUM; HIGH if max >= 60 s).
Each draft carries ``where``, the SQL predicate of every trace it concerns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.drafts import EvidenceDraft, IssueDraft
from agent.frame import quote

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


def census_issues(census: Census, toolkit) -> list[IssueDraft]:
    """Issues that the census figures prove by themselves, with evidence traces."""
    drafts = []
    if not census.total_traces:
        return drafts
    drafts += _error_rate_issue(census, toolkit)
    drafts += _span_failure_issues(census, toolkit)
    drafts += _latency_outlier_issue(census, toolkit)
    return drafts


def _error_rate_issue(census, toolkit) -> list[IssueDraft]:
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
    evidence = [EvidenceDraft(trace_id=r[0], rationale=error_text(r[1]) or "trace status ERROR")
                for r in rows]
    return [IssueDraft(
        key="census:error_rate", where="state = 'ERROR'",
        title=f"{rate:.0%} of traces end in an error",
        description=(f"{census.error_traces} of {total} traces ({rate:.1%}) have ERROR status. "
                     f"Most frequent error: {top.message if top else 'n/a'} "
                     f"({top.count if top else 0} times). "
                     f"Impact: {census.error_traces} traces affected. This issue was identified "
                     "from census data."),
        severity=severity, evidence=evidence,
        metrics={"error_traces": census.error_traces, "total_traces": total, "error_rate": rate},
    )]


def _span_failure_issues(census, toolkit) -> list[IssueDraft]:
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
            where=f"exists(spans, s -> s.name = {quote(name)} AND s.status_code = 'ERROR')",
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
